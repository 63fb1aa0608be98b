"""scripts/benchmark.py and hf_vision.benchmark on tiny models: every contender, variant, mode, ratio, FLOP count
and utilisation is reported, in the table, the JSON and the Markdown.

Timings are never asserted (the machine is shared); only structure, self-consistency and FLOP counts are.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import hf_vision.optimize
from hf_vision import benchmark

ROOT = Path(__file__).resolve().parents[1]
TINY = "image_size=32,patch_size=8,hidden_size=32,num_hidden_layers=2,num_attention_heads=4,intermediate_size=64,num_labels=5"
OVERRIDES = benchmark.parse_overrides([TINY])


def _tiny(**kwargs) -> benchmark.Settings:
    # one thread: on a busy machine two threads wait on each other for whole time slices in small products,
    # which would make the tiny GEMM peak (and so the utilisation) meaningless
    base = dict(preset="vit-base-patch16-224", batch_size=2, repeats=1, warmup=0, memory=False, peak_size=128, threads=1,
                config_overrides=OVERRIDES)
    return benchmark.Settings(**{**base, **kwargs})


@pytest.fixture
def optimizer_for_cpu(monkeypatch):
    """`hf_vision.optimize_for_cpu` where the tree has it; until then a stand-in with its contract (in place,
    exact nn.Linear -> the oneDNN Linear subclass), so the optimized rows are exercised either way."""
    if not hasattr(hf_vision.optimize, "optimize_for_cpu"):
        from hf_vision.optimize.onednn_linear import Linear

        def stand_in(model: nn.Module, *, enable: bool = True) -> nn.Module:
            for module in model.modules():
                if type(module) is (nn.Linear if enable else Linear):
                    module.__class__ = Linear if enable else nn.Linear
            return model

        monkeypatch.setattr(hf_vision.optimize, "optimize_for_cpu", stand_in, raising=False)
    return hf_vision.optimize.optimize_for_cpu


def _vit_flops(*, tokens: int, dim: int, mlp: int, depth: int, labels: int, patch_pixels: int, last_queries: int,
               train: bool) -> float:
    """FLOPs (2 x multiply-adds) of one image through a pre-norm ViT, by hand. The last block computes
    `last_queries` query tokens (keys/values for all). Backward, as flop_counter counts it: every Linear twice
    its forward (input and weight gradients), the patch convolution once (weight gradient only: the pixels need
    none), attention 5 products of the forward's size (the fused kernel recomputes the scores, then dV, dP, dQ,
    dK) against the forward's 2."""
    patches = tokens - 1
    conv = 2 * patches * patch_pixels * dim
    linear = attention = 0
    for block in range(depth):
        q = last_queries if block == depth - 1 else tokens
        linear += 2 * tokens * dim * 3 * dim  # qkv for every token
        linear += 2 * q * dim * dim + 2 * q * dim * mlp * 2  # proj, fc1 + fc2
        attention += 2 * q * tokens * dim  # one (q x tokens x dim) product: Q K^T or A V
    linear += 2 * dim * labels  # classifier on the class token
    if not train:
        return conv + linear + 2 * attention
    return 2 * conv + 3 * linear + (2 + 5) * attention


def test_flops_match_a_hand_count_for_a_tiny_vit():
    built = benchmark.SUITES["vit-base-patch16-224"](OVERRIDES, {"timm", "transformers"})
    config = dict(tokens=17, dim=32, mlp=64, depth=2, labels=5, patch_pixels=3 * 8 * 8)
    batch = {"pixel_values": torch.randn(2, 3, 32, 32), "labels": torch.tensor([0, 3])}
    for name, last_queries in (("ours", 1), ("timm", 17), ("transformers", 17)):  # ours: class token only at the end
        for mode in benchmark.MODES:
            counted = benchmark.count_flops(built[name], mode, batch)
            expected = _vit_flops(**config, last_queries=last_queries, train=mode == "train")
            assert counted == expected, (name, mode, counted, expected)
        assert all(p.grad is None for p in built[name].model.parameters())  # counting leaves no gradients


def test_gemm_peak_measures_torch_mm_and_onednn():
    peak = benchmark.gemm_peak(torch.device("cpu"), torch.float32, size=128, repeats=2)
    assert "torch.mm" in peak["kernels"] and peak["gflops"] == max(peak["kernels"].values()) > 0
    if torch.backends.mkldnn.is_available():
        assert "onednn" in peak["kernels"]
    assert benchmark.gemm_peak(torch.device("cpu"), torch.bfloat16, size=64, repeats=1)["dtype"] == "bfloat16"


def test_plain_and_optimized_rows(optimizer_for_cpu):
    report = benchmark.run_benchmark(_tiny())
    results = report["results"]
    assert list(results) == ["ours", "ours opt", "timm", "transformers"] and report["unavailable"] == {}
    assert report["settings"]["variants"] == ["plain", "optimized"]
    for mode in benchmark.MODES:
        # the optimized copy is the same model: same parameters, same products
        assert results["ours opt"]["params_m"] == results["ours"]["params_m"]
        assert results["ours opt"]["gflops_per_img"][mode] == pytest.approx(results["ours"]["gflops_per_img"][mode])
        for name, res in results.items():
            assert 0 < res[mode]["mfu"] <= 1.5, (name, mode)
            expected = res["gflops_per_img"][mode] * res[mode]["img_s"]["median"] / report["peak"]["gflops"]
            assert res[mode]["mfu"] == pytest.approx(expected)
    assert set(report["ratios"]) == {"ours/timm", "ours/transformers", "ours opt/timm", "ours opt/transformers"}
    for key, per_mode in report["ratios"].items():
        ours, ref = key.split("/")
        for mode, ratio in per_mode.items():
            assert ratio == pytest.approx(results[ours][mode]["img_s"]["median"] / results[ref][mode]["img_s"]["median"])
    table = benchmark.format_table(report)
    assert "\nours opt " in table and "ours opt/timm:" in table and "GEMM peak" in table and "MFU" in table
    # the model given to the suite is not the one optimized: the plain row stays plain
    with_opt = [type(m).__name__ for m in benchmark.with_variants(
        benchmark.SUITES["vit-base-patch16-224"](OVERRIDES, set()), ("plain", "optimized"))["ours"].model.modules()]
    assert "Linear" in with_opt


def test_optimized_row_is_na_without_optimize_for_cpu(monkeypatch):
    monkeypatch.delattr(hf_vision.optimize, "optimize_for_cpu", raising=False)
    report = benchmark.run_benchmark(_tiny(modes=("inference",), references=(), flops=False))
    assert list(report["results"]) == ["ours"] and "optimize_for_cpu" in report["unavailable"]["ours opt"]
    assert report["peak"] is None and report["results"]["ours"]["inference"]["mfu"] is None


def test_bf16_and_autocast_rows():
    for settings in (_tiny(dtype="bf16", modes=("inference",), variants=("plain",)),
                     _tiny(autocast=True, modes=("inference",), variants=("plain",))):
        report = benchmark.run_benchmark(settings)
        assert list(report["results"]) == ["ours", "timm", "transformers"]
        assert report["peak"]["dtype"] == "bfloat16"
        assert all(r["inference"]["img_s"]["median"] > 0 and r["inference"]["mfu"] > 0
                   for r in report["results"].values())
        assert all(v["inference"] > 0 for v in report["ratios"].values())
    assert "bf16 autocast" in benchmark.format_markdown([report])
    with pytest.raises(ValueError, match="autocast"):
        benchmark.run_benchmark(_tiny(dtype="bf16", autocast=True))


def test_compiled_and_eager_through_one_call():
    """The GPU script's path (run_many over eager and compiled runs, Markdown + JSON-ready reports), on CPU with
    a compile backend that skips code generation to stay fast."""
    seen = []
    reports = benchmark.run_many(_tiny(references=("timm",), variants=("plain",), warmup=1, compile_backend="aot_eager"),
                                 ["vit-base-patch16-224"], compile_modes=(False, True),
                                 on_report=lambda so_far: seen.append(len(so_far)))
    assert seen == [1, 2] and [r["settings"]["compile"] for r in reports] == [False, True]
    for report in reports:
        assert all(report["results"][n][m]["img_s"]["median"] > 0 for n in ("ours", "timm") for m in benchmark.MODES)
    # FLOPs are counted eagerly before compiling: the same in both runs
    assert reports[0]["results"]["ours"]["gflops_per_img"] == reports[1]["results"]["ours"]["gflops_per_img"]
    markdown = benchmark.format_markdown(reports)
    rows = [line for line in markdown.splitlines() if line.startswith("| vit-base-patch16-224")]
    assert len(rows) == 4 and {row.split(" | ")[2] for row in rows} == {"yes", "no"}
    assert "ours/timm inf / train" in markdown and "GEMM peak" in markdown
    json.dumps(reports)
    with pytest.raises(ValueError, match="warmup"):
        benchmark.run_benchmark(_tiny(compile=True, warmup=0))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on machines without CUDA")
def test_cuda_without_a_gpu_fails_clearly(tmp_path):
    with pytest.raises(benchmark.DeviceUnavailable, match=r"torch.cuda.is_available\(\) is False"):
        benchmark.run_benchmark(_tiny(device="cuda", variants=("plain",)))
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "benchmark_gpu.sh"), str(tmp_path / "out")], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    assert proc.returncode != 0 and "torch.cuda.is_available() is False" in proc.stdout + proc.stderr
    assert "is_available() is False" in (tmp_path / "out.log").read_text()


def test_variants_and_presets_are_checked():
    assert benchmark.resolve_variants(_tiny()) == ("plain", "optimized")
    assert benchmark.resolve_variants(_tiny(device="cuda")) == ("plain",)
    with pytest.raises(ValueError, match="optimize_for_cpu"):
        benchmark.resolve_variants(_tiny(device="cuda", variants=("optimized",)))
    with pytest.raises(ValueError, match="plain, optimized"):
        benchmark.resolve_variants(_tiny(variants=("fast",)))
    assert benchmark.resolve_presets("all") == list(benchmark.SUITE_ORDER)
    assert set(benchmark.SUITE_ORDER) <= set(benchmark.SUITES)
    with pytest.raises(ValueError, match="choose 'all'"):
        benchmark.resolve_presets("vit-base-patch16-224,nope")


def test_script_end_to_end(tmp_path):
    out, md = tmp_path / "report.json", tmp_path / "report.md"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--preset", "vit-base-patch16-224",
         "--config", TINY, "--batch_size", "2", "--threads", "1", "--repeats", "2", "--warmup", "1",
         "--peak_size", "128", "--json", str(out), "--markdown", str(md)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    table = proc.stdout
    for name in ("ours", "timm", "transformers"):
        assert f"\n{name} " in table
    assert "ours/timm:" in table and "ours/transformers:" in table

    (report,) = json.loads(out.read_text())["runs"]
    assert report["settings"]["threads"] == 1 and report["settings"]["batch_size"] == 2
    assert report["peak"]["threads"] == 1 and report["peak"]["size"] == 128
    # the default on CPU is both variants; the optimized row runs wherever optimize_for_cpu exists
    if report["settings"]["optimize_for_cpu"]:
        assert set(report["results"]) == {"ours", "ours opt", "timm", "transformers"}
    else:
        assert set(report["results"]) == {"ours", "timm", "transformers"} and "ours opt" in report["unavailable"]
    params = {name: res["params_m"] for name, res in report["results"].items()}
    assert params["ours"] == pytest.approx(params["timm"]) == pytest.approx(params["transformers"])  # same config
    for res in report["results"].values():
        for mode in ("inference", "train"):
            img_s = res[mode]["img_s"]
            assert len(img_s["all"]) == 2 and all(v > 0 for v in img_s["all"])
            assert img_s["min"] <= img_s["median"] <= img_s["max"]
            assert len(res[mode]["img_per_cpu_s"]["all"]) == 2
            assert res[mode]["peak_mem_mb"] is None or res[mode]["peak_mem_mb"] >= 0
            assert res["gflops_per_img"][mode] > 0 and 0 < res[mode]["mfu"] <= 1.5
    for ref in ("timm", "transformers"):
        for mode in ("inference", "train"):
            expected = report["results"]["ours"][mode]["img_s"]["median"] / report["results"][ref][mode]["img_s"]["median"]
            assert report["ratios"][f"ours/{ref}"][mode] == pytest.approx(expected)
            cpu = (report["results"]["ours"][mode]["img_per_cpu_s"]["median"]
                   / report["results"][ref][mode]["img_per_cpu_s"]["median"])
            assert report["cpu_ratios"][f"ours/{ref}"][mode] == pytest.approx(cpu)
    assert "| vit-base-patch16-224 | fp32 | no | ours |" in md.read_text()


def test_single_mode_no_references_in_process():
    report = benchmark.run_benchmark(_tiny(modes=("inference",), references=(), variants=("plain",), flops=False))
    assert list(report["results"]) == ["ours"] and report["ratios"] == {}
    assert "train" not in report["results"]["ours"]
    assert "ours" in benchmark.format_table(report)


def test_threads_apply_to_the_run_only():
    before = torch.get_num_threads()
    report = benchmark.run_benchmark(_tiny(batch_size=1, modes=("inference",), references=(), variants=("plain",),
                                           flops=False, threads=before + 1))
    assert report["settings"]["threads"] == before + 1
    assert torch.get_num_threads() == before


def test_plain_only_flags():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from benchmark import parse_args  # scripts/benchmark.py
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    assert parse_args(["--sgemm_linear"]).variants == "plain" == parse_args(["--no_optimize_for_cpu"]).variants
    assert parse_args([]).variants is None


def test_unavailable_reference_reported_as_na():
    report = benchmark.run_benchmark(_tiny(modes=("inference",), references=("transformers",), variants=("plain",),
                                           flops=False, config_overrides=benchmark.parse_overrides([TINY, "pooling=gap"])))
    assert report["ratios"]["ours/transformers"]["inference"] is None
    assert "N/A" in benchmark.format_table(report)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="available"):
        benchmark.run_benchmark(benchmark.Settings(preset="nope"))
    with pytest.raises(ValueError, match="dtype"):
        benchmark.run_benchmark(benchmark.Settings(preset="vit-base-patch16-224", dtype="fp8"))
    with pytest.raises(ValueError, match="key=value"):
        benchmark.parse_overrides(["hidden_size"])


def test_parse_overrides_types():
    assert benchmark.parse_overrides(["hidden_size=32,pooling=gap", "qkv_bias=false"]) == {
        "hidden_size": 32, "pooling": "gap", "qkv_bias": False}


def test_parse_overrides_takes_python_and_json_literals():
    """One parser for every script's overrides: Python or JSON literals, commas inside brackets kept."""
    assert benchmark.parse_overrides(["depths=[1,2],image_mean=(0.5, 0.5),pooling=gap", "qkv_bias=True,x=null",
                                      "pooling=cls"]) == {
        "depths": [1, 2], "image_mean": (0.5, 0.5), "pooling": "cls", "qkv_bias": True, "x": None}


# ---------------------------------------------------------------------------------- ceilings and revisions
def test_paired_ratios_are_taken_within_each_repeat():
    """Beside the ratio of medians: the ratio within each repeat (same round), summarised over repeats, for the
    references and for the step-time ratio of two of ours."""
    report = benchmark.run_benchmark(_tiny(repeats=3, references=("timm",), variants=("plain",), flops=False))
    results = report["results"]
    for mode in benchmark.MODES:
        paired = report["paired_ratios"]["ours/timm"][mode]
        rounds = [x / y for x, y in zip(results["ours"][mode]["img_s"]["all"], results["timm"][mode]["img_s"]["all"])]
        assert paired["all"] == pytest.approx(rounds) and len(rounds) == 3
        assert paired["min"] <= paired["median"] <= paired["max"]
    assert "within each repeat: inference" in benchmark.format_table(report)
    assert "ours/timm within each repeat" in benchmark.format_markdown([report])
    mae = benchmark.run_benchmark(_tiny(preset="mae-vit-base-patch16", repeats=2, references=(), variants=("plain",),
                                        flops=False, modes=("train",)))
    rounds = [y / x for x, y in zip(mae["results"]["ours"]["train"]["img_s"]["all"],
                                    mae["results"]["ours ViT"]["train"]["img_s"]["all"])]
    assert mae["paired_step_time_ratios"]["ours/ours ViT"]["train"]["all"] == pytest.approx(rounds)


def test_ceiling_is_the_ratio_at_the_gemm_peak():
    """ours/<reference> at most: our FLOPs at the measured peak against the reference's measured time."""
    report = benchmark.run_benchmark(_tiny(variants=("plain",)))
    results, peak = report["results"], report["peak"]["gflops"]
    assert set(report["ceilings"]) == set(report["ratios"]) == {"ours/timm", "ours/transformers"}
    for key, per_mode in report["ceilings"].items():
        ref = key.split("/")[1]
        for mode, ceiling in per_mode.items():
            expected = peak / results["ours"]["gflops_per_img"][mode] / results[ref][mode]["img_s"]["median"]
            assert ceiling == pytest.approx(expected)
            # the ratio reached is the ceiling times our MFU: above the ceiling means above the peak
            assert report["ratios"][key][mode] == pytest.approx(ceiling * results["ours"][mode]["mfu"])
    assert "at the GEMM peak" in benchmark.format_table(report)
    assert "(every FLOP of ours at the GEMM peak)" in benchmark.format_markdown([report])
    assert benchmark.run_benchmark(_tiny(variants=("plain",), flops=False, modes=("inference",)))["ceilings"] == {}


def _git_clone_or_skip() -> None:
    try:
        benchmark.resolve_revision("HEAD")
    except ValueError as error:  # an installed copy without its repository: the feature says why (tested below)
        pytest.skip(f"not a git clone: {error}")


# the commit before issue #11 moved the oneDNN Linear out of the models: its Swin head was `head`, its Linear
# computed on oneDNN inside the model; a clone without that much history skips it
PRE_ISSUE_11 = "15de5a3"
TINY_FAMILIES = {
    "vit-base-patch16-224": ("ViTForImageClassification", TINY),
    "vit-base-r50-s16-224": ("HybridForImageClassification",
                             "image_size=32,patch_size=1,backbone_layers=[1,1,1],backbone_width=8,backbone_norm_groups=4,"
                             "hidden_size=32,num_hidden_layers=1,num_attention_heads=4,intermediate_size=64,num_labels=5"),
    "swin-tiny-patch4-window7-224": ("SwinForImageClassification",
                                     "image_size=56,embed_dim=24,depths=[1,1],num_heads=[1,2],num_labels=5"),
    "mae-vit-base-patch16": ("MAEForPreTraining", TINY + ",decoder_hidden_size=16,decoder_num_hidden_layers=1,"
                             "decoder_num_attention_heads=2,decoder_intermediate_size=32"),
}


@pytest.mark.parametrize("revision", ["HEAD", PRE_ISSUE_11])
@pytest.mark.parametrize("preset", list(TINY_FAMILIES))
def test_a_revision_rebuilds_our_model_with_our_weights(preset, revision):
    """The revision's class of the same name, from the same config, with our weights: the same function (so a
    speed comparison compares kernels and code, not models), imported under a package name of its own."""
    _git_clone_or_skip()
    try:
        sha = benchmark.resolve_revision(revision)
    except ValueError:
        pytest.skip(f"{revision} is not in this clone's history")
    import hf_vision

    name, overrides = TINY_FAMILIES[preset]
    config = hf_vision.get_config(preset, **benchmark.parse_overrides([overrides]))
    ours = getattr(hf_vision, name)(config).eval()
    theirs = benchmark.revision_model(ours, revision).eval()
    assert type(theirs).__name__ == name and type(theirs).__module__.startswith(f"hf_vision_rev_{sha[:12]}.")
    assert type(theirs) is not type(ours)
    size = config.image_size if isinstance(config.image_size, int) else config.image_size[0]
    pixels = torch.randn(2, 3, size, size)
    inputs = {"pixel_values": pixels}
    if name == "MAEForPreTraining":
        inputs["noise"] = torch.rand(2, (size // config.patch_size) ** 2)
    with torch.no_grad():
        a, b = ours(**inputs), theirs(**inputs)
    key = "loss" if name == "MAEForPreTraining" else "logits"
    torch.testing.assert_close(getattr(b, key), getattr(a, key), rtol=1e-4, atol=1e-5)
    assert benchmark.revision_model(ours, revision).__class__ is type(theirs)  # imported once per process


def test_against_a_revision_in_the_report():
    _git_clone_or_skip()
    sha = benchmark.resolve_revision("HEAD")
    report = benchmark.run_benchmark(_tiny(variants=("plain",), references=("timm",), against=("HEAD",)))
    name = benchmark.REVISION_PREFIX + sha[:7]
    assert list(report["results"]) == ["ours", "timm", name]
    assert report["results"][name]["params_m"] == report["results"]["ours"]["params_m"]
    assert set(report["ratios"]) == {"ours/timm", f"ours/{name}"}
    assert f"ours/{name}:" in benchmark.format_table(report)
    assert f"ours/{name} inf / train" in benchmark.format_markdown([report])


def test_against_refuses_what_is_not_a_revision(tmp_path, monkeypatch):
    _git_clone_or_skip()
    with pytest.raises(ValueError, match="'no-such-rev' is not a commit"):
        benchmark.resolve_revision("no-such-rev")
    with pytest.raises(ValueError, match="against="):
        benchmark.run_benchmark(_tiny(against=("",)))
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--against", "no-such-rev"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode != 0 and "--against:" in proc.stderr and "no-such-rev" in proc.stderr
    # a copy of the package outside any git clone says what it needs
    from hf_vision.benchmark import revisions

    monkeypatch.setattr(revisions, "__file__", str(tmp_path / "a" / "b" / "revisions.py"))
    with pytest.raises(ValueError, match="needs hf_vision imported from a git clone"):
        revisions.repository_root()

"""scripts/benchmark.py end to end on a tiny ViT: the table and JSON carry every contender, mode and ratio.

Timings are never asserted (the machine is shared); only structure and self-consistency are.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hf_vision import benchmark

ROOT = Path(__file__).resolve().parents[1]
TINY = "image_size=32,patch_size=8,hidden_size=32,num_hidden_layers=2,num_attention_heads=4,intermediate_size=64,num_labels=5"


def test_script_end_to_end(tmp_path):
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--preset", "vit-base-patch16-224",
         "--config", TINY, "--batch_size", "2", "--threads", "1", "--repeats", "2", "--warmup", "1",
         "--json", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    table = proc.stdout
    for name in ("ours", "timm", "transformers"):
        assert f"\n{name} " in table
    assert "ours/timm:" in table and "ours/transformers:" in table

    report = json.loads(out.read_text())
    assert report["settings"]["threads"] == 1 and report["settings"]["batch_size"] == 2
    assert set(report["results"]) == {"ours", "timm", "transformers"}
    params = {name: res["params_m"] for name, res in report["results"].items()}
    assert params["ours"] == pytest.approx(params["timm"]) == pytest.approx(params["transformers"])  # same config
    for res in report["results"].values():
        for mode in ("inference", "train"):
            img_s = res[mode]["img_s"]
            assert len(img_s["all"]) == 2 and all(v > 0 for v in img_s["all"])
            assert img_s["min"] <= img_s["median"] <= img_s["max"]
            assert len(res[mode]["img_per_cpu_s"]["all"]) == 2
            assert res[mode]["peak_mem_mb"] is None or res[mode]["peak_mem_mb"] >= 0
    for ref in ("timm", "transformers"):
        for mode in ("inference", "train"):
            expected = report["results"]["ours"][mode]["img_s"]["median"] / report["results"][ref][mode]["img_s"]["median"]
            assert report["ratios"][ref][mode] == pytest.approx(expected)
            cpu = (report["results"]["ours"][mode]["img_per_cpu_s"]["median"]
                   / report["results"][ref][mode]["img_per_cpu_s"]["median"])
            assert report["cpu_ratios"][ref][mode] == pytest.approx(cpu)


def test_single_mode_no_references_in_process():
    settings = benchmark.Settings(
        preset="vit-base-patch16-224", batch_size=2, repeats=1, warmup=0, modes=("inference",), references=(),
        config_overrides=benchmark.parse_overrides([TINY]), memory=False,
    )
    report = benchmark.run_benchmark(settings)
    assert list(report["results"]) == ["ours"] and report["ratios"] == {}
    assert "train" not in report["results"]["ours"]
    assert "ours" in benchmark.format_table(report)


def test_threads_apply_to_the_run_only():
    import torch

    before = torch.get_num_threads()
    settings = benchmark.Settings(
        preset="vit-base-patch16-224", batch_size=1, repeats=1, warmup=0, modes=("inference",), references=(),
        config_overrides=benchmark.parse_overrides([TINY]), memory=False, threads=before + 1,
    )
    report = benchmark.run_benchmark(settings)
    assert report["settings"]["threads"] == before + 1
    assert torch.get_num_threads() == before


def test_sgemm_linear_applies_to_the_run_only(monkeypatch):
    """--sgemm_linear turns our oneDNN Linear off while the suite is built and timed, and back on afterwards."""
    from hf_vision.optimize import onednn_linear as linear_module

    seen = []
    build = benchmark.SUITES["vit-base-patch16-224"]

    def probe(config_overrides, references):
        seen.append(linear_module.ENABLED)
        return build(config_overrides, references)

    monkeypatch.setitem(benchmark.SUITES, "vit-base-patch16-224", probe)
    settings = benchmark.Settings(
        preset="vit-base-patch16-224", batch_size=1, repeats=1, warmup=0, modes=("inference",), references=(),
        config_overrides=benchmark.parse_overrides([TINY]), memory=False, onednn_linear=False,
    )
    report = benchmark.run_benchmark(settings)
    assert seen == [False] and linear_module.ENABLED is True
    assert "our linear=sgemm" in benchmark.format_table(report)


def test_unavailable_reference_reported_as_na():
    settings = benchmark.Settings(
        preset="vit-base-patch16-224", batch_size=2, repeats=1, warmup=0, modes=("inference",),
        references=("transformers",), memory=False,
        config_overrides=benchmark.parse_overrides([TINY, "pooling=gap"]),
    )
    report = benchmark.run_benchmark(settings)
    assert report["ratios"]["transformers"]["inference"] is None
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

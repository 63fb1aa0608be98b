"""The oneDNN-backed Linear: same results and gradients as F.linear, and oneDNN really runs (profiler)."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import ProfilerActivity, profile

from hf_vision.optimize import onednn_linear as linear_module
from hf_vision.optimize.onednn_linear import Linear, _images, _split, linear


@pytest.fixture(autouse=True)
def always_onednn(monkeypatch):
    """These tests are about the oneDNN product itself: `Linear` takes it wherever it applies, untimed (the
    per-machine choice has its own tests below, which turn measuring back on)."""
    monkeypatch.setattr(linear_module, "MEASURE", False)
    monkeypatch.setattr(linear_module, "_choices", {})
    monkeypatch.setattr(linear_module, "_merged_from", set())
    monkeypatch.setenv("HF_VISION_KERNEL_CHOICES", "off")  # the persistence tests below name their own file


@pytest.fixture
def threads():
    previous = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(previous)


def _count_ops(fn) -> dict[str, int]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {event.key: event.count for event in prof.key_averages()}


def _ops(fn) -> set[str]:
    return set(_count_ops(fn))


@pytest.mark.parametrize("num_threads", [1, 2])
@pytest.mark.parametrize("shape", [(2, 197, 64), (8, 7, 7, 96), (3, 50, 40)], ids=str)
def test_matches_f_linear_forward_and_backward(shape, num_threads, threads):
    threads(num_threads)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=gen, requires_grad=True)
    w = torch.randn(48, shape[-1], generator=gen, requires_grad=True)
    b = torch.randn(48, generator=gen, requires_grad=True)
    grad = torch.randn(*shape[:-1], 48, generator=gen)

    ref = F.linear(x, w, b)
    ref_grads = torch.autograd.grad(ref, (x, w, b), grad)
    out = linear(x, w, b)
    grads = torch.autograd.grad(out, (x, w, b), grad)
    assert out.shape == ref.shape and out.is_contiguous()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-4)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("num_threads", [1, 2])
@pytest.mark.parametrize("batch", [4, 8])
def test_onednn_kernel_runs_forward_and_backward(batch, num_threads, threads):
    """The point of the layer: PyTorch's conv heuristics must send our layouts to oneDNN, in both passes, and no
    sgemm runs. 4 x 196 rows with two threads: the weight gradient is a second oneDNN forward convolution."""
    threads(num_threads)
    x = torch.randn(batch, 196, 96, requires_grad=True)
    layer = Linear(96, 288)
    ops = _count_ops(lambda: layer(x).sum().backward())
    few_rows = num_threads > 1 and batch * 196 < linear_module.FEW_ROWS
    assert ops.get("aten::mkldnn_convolution") == (2 if few_rows else 1)
    assert ops.get("aten::convolution_backward") == 1
    assert "aten::addmm" not in ops and "aten::mm" not in ops
    assert not any("slow_conv" in op or "thnn" in op for op in ops)


def test_few_rows_gradients_without_input_gradient(threads):
    """The few-rows backward with a frozen input (first layer), with and without bias, matches F.linear's."""
    threads(2)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(600, 64, generator=gen)
    w = torch.randn(40, 64, generator=gen, requires_grad=True)
    b = torch.randn(40, generator=gen, requires_grad=True)
    grad = torch.randn(600, 40, generator=gen)
    want = torch.autograd.grad(F.linear(x, w, b), (w, b), grad)
    got = torch.autograd.grad(linear(x, w, b), (w, b), grad)
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-3)
    (got_w,) = torch.autograd.grad(linear(x, w, None), (w,), grad)
    torch.testing.assert_close(got_w, want[0], rtol=1e-5, atol=1e-3)


def test_small_or_unsupported_inputs_use_f_linear(threads):
    threads(2)
    layer = Linear(16, 8)
    assert "aten::mkldnn_convolution" not in _ops(lambda: layer(torch.randn(4, 16)))  # below PyTorch's size cut
    big = torch.randn(64, 512)
    assert "aten::mkldnn_convolution" not in _ops(lambda: Linear(512, 8).double()(big.double()))  # fp64
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert "aten::mkldnn_convolution" not in _ops(lambda: Linear(512, 8)(big))
    torch.backends.mkldnn.enabled = False
    try:
        assert "aten::mkldnn_convolution" not in _ops(lambda: Linear(512, 8)(big))
    finally:
        torch.backends.mkldnn.enabled = True


def test_single_thread_layout_needs_sixteen_images(threads):
    threads(1)
    assert _split(8 * 197) == 197 and _split(25088) == 16
    assert _split(1021) is None  # a prime: no layout qualifies, F.linear runs
    assert _images(1021, 64) is None
    assert "aten::mkldnn_convolution" not in _ops(lambda: Linear(64, 32)(torch.randn(1021, 64)))
    assert Linear(64, 32)(torch.randn(1021, 64)).shape == (1021, 32)


def test_state_dict_is_nn_linears():
    torch.manual_seed(0)
    ours = Linear(12, 5)
    plain = nn.Linear(12, 5)
    plain.load_state_dict(ours.state_dict())
    assert list(ours.state_dict()) == ["weight", "bias"] and isinstance(ours, nn.Linear)
    x = torch.randn(3, 12)
    torch.testing.assert_close(ours(x), plain(x))


def test_compiles_without_graph_breaks():
    """Under torch.compile the layer is plain F.linear (the compiler picks its kernels); fullgraph must trace."""
    torch.manual_seed(0)
    model = nn.Sequential(Linear(64, 128), nn.GELU(), Linear(128, 64))
    x = torch.randn(4, 200, 64)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("onednn_faster", [True, False])
def test_measured_choice_picks_the_faster_kernel_once_per_problem(onednn_faster, monkeypatch, threads):
    """With MEASURE, `Linear` runs whichever kernel was timed faster for the problem, timing each problem (shape,
    gradient needs) once; a tie keeps F.linear."""
    threads(2)
    timed = []

    def fake_timing(rows, features, out_features, **flags):
        timed.append((rows, features, out_features, flags))
        return (1.0, 0.5) if onednn_faster else (1.0, 0.99)  # (F.linear, oneDNN) seconds; 0.99 is within MARGIN

    monkeypatch.setattr(linear_module, "MEASURE", True)
    monkeypatch.setattr(linear_module, "_time_kernels", fake_timing)
    layer = Linear(96, 288)
    x = torch.randn(4, 196, 96)
    for _ in range(2):
        with torch.no_grad():
            ops = _ops(lambda: layer(x))
        assert ("aten::mkldnn_convolution" in ops) is onednn_faster
        assert ("aten::addmm" in ops) is not onednn_faster
    ops = _ops(lambda: layer(x).sum().backward())  # needs the weight's gradient: another problem, timed once
    assert ("aten::mkldnn_convolution" in ops) is onednn_faster
    assert [t[3] for t in timed] == [dict(bias=True, grad_input=False, grad_weight=False),
                                     dict(bias=True, grad_input=False, grad_weight=True)]
    assert {t[:3] for t in timed} == {(784, 96, 288)}
    assert set(linear_module.measured_choices().values()) == {onednn_faster}


def _timing_that_prefers(onednn_faster: bool, timed: list):
    def fake_timing(rows, features, out_features, **flags):
        timed.append((rows, features, out_features, flags))
        return (1.0, 0.5) if onednn_faster else (1.0, 1.0)  # (F.linear, oneDNN) seconds

    return fake_timing


def _new_process(monkeypatch):
    """What a fresh interpreter starts with: no choice made, no file read."""
    monkeypatch.setattr(linear_module, "_choices", {})
    monkeypatch.setattr(linear_module, "_merged_from", set())


@pytest.mark.parametrize("onednn_faster", [True, False])
def test_choices_persist_per_machine_and_later_processes_do_not_retime(onednn_faster, monkeypatch, threads,
                                                                        tmp_path):
    """A problem is timed once per machine: the next process reads the stored choice (same kernel, so the same
    rounding) instead of timing again, whatever a new timing would say."""
    threads(2)
    path = tmp_path / "choices.json"
    monkeypatch.setenv("HF_VISION_KERNEL_CHOICES", str(path))
    monkeypatch.setattr(linear_module, "MEASURE", True)
    timed = []
    monkeypatch.setattr(linear_module, "_time_kernels", _timing_that_prefers(onednn_faster, timed))
    layer = Linear(96, 288)
    x = torch.randn(4, 196, 96)
    with torch.no_grad():
        first = layer(x)
    assert len(timed) == 1
    stored = json.loads(path.read_text())
    assert stored["format"] == linear_module.CHOICES_FORMAT
    assert stored["fingerprint"] == linear_module.machine_fingerprint()
    assert stored["choices"] == {"784,96,288,1,0,0,2": onednn_faster}

    _new_process(monkeypatch)  # a later process; a new timing would now say the opposite
    monkeypatch.setattr(linear_module, "_time_kernels", _timing_that_prefers(not onednn_faster, timed))
    with torch.no_grad():
        ops = _ops(lambda: layer(x))
        again = layer(x)
    assert len(timed) == 1, "the stored choice was timed again"
    assert ("aten::mkldnn_convolution" in ops) is onednn_faster
    assert torch.equal(again, first)
    assert linear_module.measured_choices() == {(784, 96, 288, True, False, False, 2): onednn_faster}

    linear_module.forget_choices()  # re-time on demand
    assert not path.exists()
    with torch.no_grad():
        layer(x)
    assert len(timed) == 2 and json.loads(path.read_text())["choices"] == {"784,96,288,1,0,0,2": not onednn_faster}


def test_a_choice_stored_first_by_another_process_wins(monkeypatch, threads, tmp_path):
    """Two processes timing the same problem at once may disagree; the one that stored first is what both use."""
    threads(2)
    path = tmp_path / "choices.json"
    monkeypatch.setenv("HF_VISION_KERNEL_CHOICES", str(path))
    monkeypatch.setattr(linear_module, "MEASURE", True)
    layer = Linear(96, 288)
    x = torch.randn(4, 196, 96)

    def other_process_stores_first(*args, **kwargs):  # while this process times, another one stores its choice
        linear_module._store_choice(path, (784, 96, 288, True, False, False, 2), True)
        return (1.0, 1.0)  # this process's own timing: F.linear

    monkeypatch.setattr(linear_module, "_time_kernels", other_process_stores_first)
    with torch.no_grad():
        ops = _ops(lambda: layer(x))
    assert "aten::mkldnn_convolution" in ops
    assert linear_module.measured_choices() == {(784, 96, 288, True, False, False, 2): True}


@pytest.mark.parametrize("content", [
    "{not json", '{"format": 999, "choices": {"784,96,288,1,0,0,2": true}}',
    '{"format": 1, "choices": {"a,b": true, "1,2,3": false, "784,96,288,1,0,0,2": 1}}'])
def test_a_damaged_or_foreign_choice_file_is_ignored_and_rewritten(content, monkeypatch, threads, tmp_path):
    threads(2)
    path = tmp_path / "choices.json"
    path.write_text(content)
    monkeypatch.setenv("HF_VISION_KERNEL_CHOICES", str(path))
    monkeypatch.setattr(linear_module, "MEASURE", True)
    timed = []
    monkeypatch.setattr(linear_module, "_time_kernels", _timing_that_prefers(False, timed))
    with torch.no_grad():
        Linear(96, 288)(torch.randn(4, 196, 96))
    assert len(timed) == 1
    assert json.loads(path.read_text())["choices"] == {"784,96,288,1,0,0,2": False}


def test_persistence_off_and_an_unwritable_file(monkeypatch, threads, tmp_path):
    """`off` keeps choices in the process only; a file that cannot be written warns (naming the variable) and the
    process goes on with its own choice."""
    threads(2)
    monkeypatch.setattr(linear_module, "MEASURE", True)
    timed = []
    monkeypatch.setattr(linear_module, "_time_kernels", _timing_that_prefers(True, timed))
    x = torch.randn(4, 196, 96)
    monkeypatch.setenv("HF_VISION_KERNEL_CHOICES", "off")
    assert linear_module.choices_path() is None
    with torch.no_grad():
        Linear(96, 288)(x)
    assert len(timed) == 1 and not list(tmp_path.iterdir())

    _new_process(monkeypatch)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("HF_VISION_KERNEL_CHOICES", str(blocker / "choices.json"))  # its parent is a file
    with torch.no_grad(), pytest.warns(UserWarning, match="HF_VISION_KERNEL_CHOICES"):
        ops = _ops(lambda: Linear(96, 288)(x))
    assert "aten::mkldnn_convolution" in ops and len(timed) == 2


def test_default_choice_file_is_per_machine_under_the_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_VISION_KERNEL_CHOICES")
    monkeypatch.setenv("HF_VISION_CACHE", str(tmp_path))
    path = linear_module.choices_path()
    assert path.parent == tmp_path / "cpu_kernels" and path.suffix == ".json"
    fingerprint = linear_module.machine_fingerprint()
    assert fingerprint["torch"] == torch.__version__ and fingerprint["cpu"]
    monkeypatch.setattr(torch, "__version__", "0.0.0")  # another torch build: another file
    assert linear_module.choices_path() != path


def test_seeded_training_repeats_exactly_across_processes_with_the_opt_in(tmp_path):
    """The point of persisting: two processes that train the same seeded model after `optimize_for_cpu` get
    bitwise the same weights, the second one reading every kernel choice the first one timed (8 x 65 tokens x 96
    features: large enough for oneDNN to apply, so every Linear's problem is timed in the first process)."""
    script = textwrap.dedent("""
        import json, sys
        import torch
        import hf_vision
        from hf_vision.optimize import onednn_linear
        torch.set_num_threads(2)
        calls = []
        timer = onednn_linear._time_kernels
        onednn_linear._time_kernels = lambda *a, **k: calls.append(a) or timer(*a, **k)
        config = hf_vision.get_config("vit-base-patch16-224", hidden_size=96, num_hidden_layers=2,
                                      num_attention_heads=2, intermediate_size=192, image_size=128, num_labels=3)
        torch.manual_seed(0)
        model = hf_vision.optimize_for_cpu(hf_vision.ViTForImageClassification(config))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        pixels, labels = torch.randn(8, 3, 128, 128), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
        for _ in range(3):
            optimizer.zero_grad()
            model(pixel_values=pixels, labels=labels).loss.backward()
            optimizer.step()
        torch.save(model.state_dict(), sys.argv[1])
        print(json.dumps({"timed": len(calls), "choices": len(onednn_linear.measured_choices())}))
    """)
    env = {**os.environ, "HF_VISION_KERNEL_CHOICES": str(tmp_path / "choices.json")}
    runs = []
    for i in range(2):
        done = subprocess.run([sys.executable, "-c", script, str(tmp_path / f"w{i}.pt")], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert runs[0]["timed"] > 0 and runs[0]["choices"] == runs[0]["timed"]
    assert runs[1] == {"timed": 0, "choices": runs[0]["choices"]}
    first, second = (torch.load(tmp_path / f"w{i}.pt") for i in range(2))
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_timing_runs_both_kernels_on_fresh_tensors(threads):
    """The real timer: both kernels, forward and backward, finite times, nothing of the caller's touched."""
    threads(1)
    for grads in (False, True):
        with torch.enable_grad() if grads else torch.no_grad():
            ops = _count_ops(lambda: linear_module._time_kernels(256, 96, 64, bias=True, grad_input=grads,
                                                                 grad_weight=grads))
        assert ops.get("aten::mkldnn_convolution", 0) >= 1 + linear_module.TIMED_CALLS
        assert ops.get("aten::addmm", 0) >= 1 + linear_module.TIMED_CALLS
        assert (ops.get("aten::convolution_backward", 0) > 0) is grads
    seconds = linear_module._time_kernels(256, 96, 64, bias=False, grad_input=False, grad_weight=True)
    assert all(0 < t < 10 for t in seconds)


def test_adamw_is_fused_where_torch_has_the_kernel_and_matches_the_loop():
    """The training loops and the benchmark build AdamW with `adamw`: fused on CPU fp32 (one pass per tensor),
    the caller's own choice kept, and the same update as torch's for-loop AdamW up to rounding."""
    from hf_vision.optimize import adamw

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4))
    groups = [{"params": [model[0].weight, model[2].weight], "weight_decay": 0.05},
              {"params": [model[0].bias, model[2].bias], "weight_decay": 0.0}]
    fused = adamw(groups, lr=1e-2, betas=(0.9, 0.95))
    assert all(g["fused"] for g in fused.param_groups)
    assert not adamw(model.parameters(), lr=1e-2, foreach=False).param_groups[0]["fused"]  # caller's choice
    # groups whose params are generators keep every parameter (they are read once for the check)
    from_generators = adamw([{"params": model[0].parameters()}, {"params": model[2].parameters()}], lr=1e-2)
    assert [len(g["params"]) for g in from_generators.param_groups] == [2, 2]
    twin, start = copy.deepcopy(model), copy.deepcopy(model)
    loop = torch.optim.AdamW([{"params": [twin[0].weight, twin[2].weight], "weight_decay": 0.05},
                              {"params": [twin[0].bias, twin[2].bias], "weight_decay": 0.0}],
                             lr=1e-2, betas=(0.9, 0.95), foreach=False)
    x = torch.randn(32, 8)
    for _ in range(5):
        for net, opt in ((model, fused), (twin, loop)):
            net(x).square().mean().backward()
            opt.step()
            opt.zero_grad()
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert all((a - b).abs().max() > 1e-3 for a, b in zip(model.parameters(), start.parameters()))  # it trained

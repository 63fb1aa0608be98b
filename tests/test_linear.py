"""The oneDNN-backed Linear: same results and gradients as F.linear, and oneDNN really runs (profiler)."""
from __future__ import annotations

import copy

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

"""How the benchmark measures: peak memory of one step, FLOPs per image, the GEMM peak, and timed steps."""
from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, flop_registry, sdpa_backward_flop_count, sdpa_flop_count

from hf_vision.modeling.config_checks import pair

from ..optimize import adamw
from .settings import Settings
from .suites import STEP_KINDS, Contender


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _release_heap() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def peak_memory(step: Callable[[], None], device: torch.device) -> float | None:
    """Bytes allocated at the peak of one call of `step` above what was allocated before it (None if unknown)."""
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        _sync(device)
        return float(torch.cuda.max_memory_allocated(device) - before)
    if not os.path.exists("/proc/self/statm"):
        return None
    _release_heap()
    before = _rss_bytes()
    peak, done = [before], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        step()
    finally:
        done.set()
        sampler.join()
    peak[0] = max(peak[0], _rss_bytes())
    return float(peak[0] - before)


# ----------------------------------------------------------------------------------------------- FLOPs, peak
def _flop_formulas() -> dict[Any, Callable[..., int]]:
    """torch's own attention formulas for the CPU flash-attention kernels, which `flop_counter` (torch 2.14) does
    not register: without them `F.scaled_dot_product_attention` on CPU counts 0 FLOPs."""
    aten = torch.ops.aten
    formulas: dict[Any, Callable[..., int]] = {}
    forward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    backward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    if forward is not None and forward not in flop_registry:
        formulas[forward] = lambda query, key, value, *args, out_shape=None, **kwargs: sdpa_flop_count(
            query, key, value)
    if backward is not None and backward not in flop_registry:
        formulas[backward] = lambda grad_out, query, key, value, *args, out_shape=None, **kwargs: (
            sdpa_backward_flop_count(grad_out, query, key, value))
    return formulas


def _precision(device: torch.device, autocast: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if autocast else contextlib.nullcontext()


def count_flops(contender: Contender, mode: str, batch: dict[str, torch.Tensor], *, autocast: bool = False) -> float:
    """FLOPs per image of one step as `torch.utils.flop_counter.FlopCounterMode` counts them (matrix products,
    convolutions, attention): the forward pass for "inference", forward + backward for "train" (the optimizer's
    elementwise update is not counted). Gradients it leaves are cleared."""
    kind, model = STEP_KINDS[contender.kind], contender.model
    device = batch["pixel_values"].device
    counter = FlopCounterMode(display=False, custom_mapping=_flop_formulas())
    if mode == "inference":
        model.eval()
        with torch.inference_mode(), _precision(device, autocast), counter:
            kind.infer(model, batch)
    else:
        model.train()
        with counter:
            with _precision(device, autocast):
                loss = kind.loss(model, batch)
            loss.backward()
        model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch["pixel_values"].shape[0]


def gemm_peak(device: torch.device, dtype: torch.dtype, *, size: int, repeats: int = 5) -> dict[str, Any]:
    """Best GFLOP/s of an (n, n) @ (n, n) product in `dtype` over `repeats` timed calls: `torch.mm`, and for fp32
    on CPU also the oneDNN product that `optimize_for_cpu` uses (on CPUs where MKL's sgemm picks slow kernels it
    is faster). The higher one is the peak, so plain and optimized models read against the same best GEMM."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(device, dtype)
    b = torch.randn(size, size, generator=gen).to(device, dtype)

    def best(fn: Callable[[], Any]) -> float:
        fn()
        _sync(device)
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            _sync(device)
            seconds.append(time.perf_counter() - start)
        return 2 * size**3 / min(seconds) / 1e9

    kernels = {"torch.mm": best(lambda: torch.mm(a, b))}
    if device.type == "cpu" and dtype == torch.float32:
        from hf_vision.optimize import onednn_linear

        if onednn_linear.onednn_applies(a, b):
            kernels["onednn"] = best(lambda: onednn_linear.linear(a, b))
    source = max(kernels, key=kernels.get)
    return {"gflops": kernels[source], "kernel": source, "kernels": kernels, "size": size,
            "dtype": str(dtype).removeprefix("torch."), "threads": torch.get_num_threads()}


# ----------------------------------------------------------------------------------------------- timing
class _Runner:
    """One contender in one mode: a zero-argument `step()` plus what it needs (optimizer, inputs)."""

    def __init__(self, contender: Contender, mode: str, batch: dict[str, torch.Tensor], *, autocast: bool) -> None:
        self.model, self.kind, self.mode, self.batch = contender.model, STEP_KINDS[contender.kind], mode, batch
        self.precision = lambda: _precision(batch["pixel_values"].device, autocast)
        self.optimizer = adamw(self.model.parameters(), lr=1e-4) if mode == "train" else None

    def step(self) -> None:
        if self.mode == "inference":
            self.model.eval()
            with torch.inference_mode(), self.precision():
                self.kind.infer(self.model, self.batch)
        else:
            self.model.train()
            with self.precision():
                loss = self.kind.loss(self.model, self.batch)
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)


def _make_batch(config, settings: Settings, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(settings.seed)
    height, width = pair(config.image_size)
    b = settings.batch_size
    batch = {
        "pixel_values": torch.randn(b, config.num_channels, height, width, generator=gen).to(device, dtype),
        "labels": torch.randint(0, max(config.num_labels, 1), (b,), generator=gen).to(device),
    }
    patch = getattr(config, "patch_size", 16)
    # MAE's masking noise stays fp32 in every dtype: bf16 would tie many scores, and only its order matters
    batch["noise"] = torch.rand(b, (height // patch) * (width // patch), generator=gen).to(device)
    return batch


def _summary(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "all": values}

"""`nn.Linear` whose fp32 CPU products run on oneDNN.

PyTorch computes an fp32 `F.linear` on CPU with MKL's sgemm, which picks its kernels by CPU vendor: on a
2-core AMD EPYC (Zen 5, AVX-512) it reaches 100-215 GFLOP/s on the layer shapes of ViT-B and Swin-T, the same
with MKL_ENABLE_INSTRUCTIONS=AVX512 or SSE4_2. oneDNN JIT-compiles for the instruction set the core actually
has (its verbose log says AVX-512 there), and a linear layer over rows is exactly a 1x1 convolution over a
channels-last map: a row-major (T, K) matrix *is* the channels-last image (n, K, T/n, 1), no copy. Through
`F.conv2d` the forward and both gradients run on oneDNN: 430-490 GFLOP/s on the same shapes. One exception:
oneDNN's weight gradient of that convolution is slow for few rows (100-160 GFLOP/s under ~1,000 rows; MAE's
encoder sees 8 x 50 of them), so there `_FewRowsLinear` computes it as a second forward convolution with the
rows as input channels (x^T g, 170-330 GFLOP/s; MAE's training step 3% faster). The arithmetic is the same
fp32 product; results differ from sgemm only in summation order (~1e-7 relative). Where MKL already runs
AVX-512 kernels (Intel CPUs) sgemm can win: on a 2-core Intel Xeon (AVX-512) the optimized ViT-B/16 training
step was ~25% slower than the plain one. So the swapped `Linear` does not assume: for each problem (rows, sizes,
bias, whether gradients are needed, threads) it times both kernels once per process on random data of that
shape (`prefers_onednn`) and keeps oneDNN only where it is clearly faster (`MARGIN`). `ENABLED = False`
turns oneDNN off; `MEASURE = False` uses it wherever it applies without timing (tests, `linear` itself always does).

The two kernels round differently, and under load a timing can come out either way, so a choice timed afresh in
every process made seeded training unrepeatable (one ablation table re-run moved 12 of 18 accuracies). The
choices are therefore kept per machine in a JSON file (`choices_path`: `$HF_VISION_CACHE/cpu_kernels/`, one file
per CPU and torch build; `HF_VISION_KERNEL_CHOICES` names another file, or `off`): a problem is timed once on a
machine, and every later process reads its choice. `forget_choices()` drops them to re-time.

PyTorch sends a 1x1 convolution to oneDNN only for "large" problems (several threads, or a batch of at
least 16 images, and more than 20480 input elements); `_images` picks a layout that qualifies, and small or
indivisible problems stay on `F.linear`. `tests/test_linear.py` checks with the profiler that the oneDNN
kernel is what actually runs, so a change of that heuristic in a later torch shows up as a failing test.
The state dict is `nn.Linear`'s (weight (out, in), bias (out,)); only the kernel differs.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import time
import warnings
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..paths import cache_dir

ENABLED = True  # False: every Linear computes with F.linear (e.g. to reproduce sgemm's rounding exactly)
MEASURE = True  # False: `Linear` uses oneDNN wherever it applies, without timing it against F.linear first
MARGIN = 0.05  # oneDNN must be this much faster (fraction of F.linear's time) to be chosen: ties keep F.linear
TIMED_CALLS = 3  # per kernel, interleaved, after one untimed call each; the best is compared
MIN_ELEMENTS = 20480  # PyTorch sends 1x1 convolutions with fewer input elements to its own (slower) kernel
MIN_IMAGES = 16  # ... and, with one thread, 1x1 convolutions over fewer images
MIN_ROWS_PER_IMAGE = 4  # (n, K, 1, 1) layouts are slow in oneDNN: keep a few rows per image
FEW_ROWS = 1024  # below this many rows (and with several threads) the weight gradient takes `_FewRowsLinear`


@lru_cache(maxsize=256)
def _split(rows: int) -> int | None:
    """Smallest n >= MIN_IMAGES that divides `rows` into images of >= MIN_ROWS_PER_IMAGE rows, or None."""
    for n in range(MIN_IMAGES, min(rows // MIN_ROWS_PER_IMAGE, 4096) + 1):
        if rows % n == 0:
            return n
    return None


def _images(rows: int, features: int) -> int | None:
    """How many channels-last images to fold `rows` into so that oneDNN runs the product; None: use F.linear."""
    if rows * features <= MIN_ELEMENTS:
        return None
    if torch.get_num_threads() > 1:
        return 1
    return _split(rows)


def onednn_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """fp32 on CPU, oneDNN built and enabled, no CPU autocast (which would pick its own dtype), not being
    compiled (torch.compile lowers F.linear itself, with its own choice of kernel)."""
    return (
        ENABLED
        and not torch.compiler.is_compiling()
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and weight.dim() == 2
        and x.layout == torch.strided
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
        and not torch.is_autocast_enabled("cpu")
    )


class _FewRowsLinear(torch.autograd.Function):
    """The 1x1 convolution image (1, K, T, 1) -> (1, N, T, 1) for T < FEW_ROWS, whose weight gradient
    g^T x is computed as a forward convolution over the rows: input x (1, T, K, 1), weight g^T (N, T, 1, 1)."""

    @staticmethod
    def forward(ctx, image: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(image, weight)
        return F.conv2d(image, weight.view(*weight.shape, 1, 1), bias)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        image, weight = ctx.saved_tensors
        need_input, need_weight, need_bias = ctx.needs_input_grad
        out_features, in_features = weight.shape
        grad_input = grad_weight = grad_bias = None
        if need_input:
            grad_input = torch.ops.aten.convolution_backward(
                grad, image, weight.view(out_features, in_features, 1, 1), None, [1, 1], [0, 0], [1, 1], False,
                [0, 0], 1, [True, False, False])[0]
        rows = image.shape[2]
        # (1, N, T, 1) -> (1, T, 1, N) -> (T, N); (1, K, T, 1) -> (T, K): views when channels-last (the usual case)
        grad_rows = grad.permute(0, 2, 3, 1).reshape(rows, out_features)
        if need_weight:
            image_rows = image.permute(0, 2, 3, 1).reshape(rows, in_features)
            # (T, K) -> (1, T, K, 1): T input channels over K pixels; (T, N) -> (N, T, 1, 1) filters
            grad_weight = F.conv2d(image_rows.view(1, rows, in_features, 1),
                                   grad_rows.t().contiguous().view(out_features, rows, 1, 1))
            grad_weight = grad_weight.view(out_features, in_features)  # (1, N, K, 1) -> (N, K)
        if need_bias:
            grad_bias = grad_rows.sum(0)
        return grad_input, grad_weight, grad_bias


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear(x, weight, bias)`: (..., in) -> (..., out), through oneDNN where that applies (see module doc)."""
    images = _onednn_images(x, weight)
    if images is None:
        return F.linear(x, weight, bias)
    return _onednn_product(x, weight, bias, images)


def _onednn_images(x: torch.Tensor, weight: torch.Tensor) -> int | None:
    """The image count of `_images` for this call, or None where oneDNN does not apply (F.linear runs)."""
    features = x.shape[-1]
    rows = x.numel() // features if features else 0
    return _images(rows, features) if rows and onednn_applies(x, weight) else None


def _onednn_product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, images: int) -> torch.Tensor:
    """`linear`'s oneDNN path with the layout already chosen."""
    features = x.shape[-1]
    rows = x.numel() // features
    # (..., K) -> (T, K) -> (n, T/n, 1, K) -> (n, K, T/n, 1): a channels-last view of the same memory
    image = x.reshape(rows, features).view(images, rows // images, 1, features).permute(0, 3, 1, 2)
    if images == 1 and rows < FEW_ROWS and torch.is_grad_enabled() and (
            weight.requires_grad or (bias is not None and bias.requires_grad)):
        out = _FewRowsLinear.apply(image, weight, bias)
    else:
        # (N, K) -> (N, K, 1, 1)
        out = F.conv2d(image, weight.view(*weight.shape, 1, 1), bias)
    # (n, N, T/n, 1) channels-last -> (n, T/n, 1, N) -> (..., N); a view whenever oneDNN kept channels-last
    return out.permute(0, 2, 3, 1).reshape(*x.shape[:-1], weight.shape[0])


_choices: dict[tuple, bool] = {}  # problem key -> oneDNN measured faster (see `prefers_onednn`)
_merged_from: set[Path] = set()  # the choice files already read into `_choices` by this process
CHOICES_FORMAT = 1  # version of the choice file's layout; a file of another version is ignored (re-timed)
OFF = ("", "0", "off", "none", "false")


def machine_fingerprint() -> dict[str, str]:
    """What a kernel choice depends on besides the problem: the CPU (vendor, model, instruction-set flags) and the
    torch build (which bundles oneDNN and MKL)."""
    cpu = {"model name": platform.processor()}
    try:
        first = Path("/proc/cpuinfo").read_text().split("\n\n")[0]  # the first logical CPU's block
        for line in first.splitlines():
            name, _, value = line.partition(":")
            cpu[name.strip()] = value.strip()
    except OSError:  # not Linux: the processor string is what there is
        pass
    return {"machine": platform.machine(), "torch": torch.__version__,
            "cpu": " / ".join(cpu.get(k, "") for k in ("vendor_id", "cpu family", "model", "model name")),
            "cpu_flags_sha1": hashlib.sha1(cpu.get("flags", "").encode()).hexdigest()[:12]}


def choices_path() -> Path | None:
    """The file this machine's choices persist in, or None where `HF_VISION_KERNEL_CHOICES` turns that off."""
    value = os.environ.get("HF_VISION_KERNEL_CHOICES")
    if value is not None:
        return None if value.strip().lower() in OFF else Path(value)
    digest = hashlib.sha1(json.dumps(machine_fingerprint(), sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / "cpu_kernels" / f"{digest}.json"


def _key_text(key: tuple) -> str:
    return ",".join(str(int(v)) for v in key)  # (rows, in, out, bias, grad_input, grad_weight, threads)


def _read_choices(path: Path) -> dict[tuple, bool]:
    """The choices stored in `path` ({} when it is missing, unreadable or of another format)."""
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(stored, dict) or stored.get("format") != CHOICES_FORMAT:
        return {}
    choices = {}
    for text, value in stored.get("choices", {}).items():
        try:
            key = tuple(int(v) for v in text.split(","))
        except ValueError:
            continue
        if len(key) == 7 and isinstance(value, bool):
            choices[key[:3] + tuple(bool(v) for v in key[3:6]) + key[6:]] = value
    return choices


def _merge_stored_choices() -> Path | None:
    """Read this machine's stored choices into `_choices` once per file; returns the file (None: not persisted).
    A choice this process already made is kept: it is the one its results were computed with."""
    path = choices_path()
    if path is not None and path not in _merged_from:
        _merged_from.add(path)
        for key, value in _read_choices(path).items():
            _choices.setdefault(key, value)
    return path


def _store_choice(path: Path, key: tuple, value: bool) -> None:
    """Add one choice to the file (read, merge, write to a temporary file, rename: concurrent processes never see
    half a file; a choice another process stored first wins, so every process agrees from then on)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        stored = _read_choices(path)
        if key in stored:
            _choices[key] = stored[key]
            return
        stored[key] = value
        record = {"format": CHOICES_FORMAT, "fingerprint": machine_fingerprint(),
                  "key": "rows,in_features,out_features,bias,grad_input,grad_weight,threads -> oneDNN chosen",
                  "choices": {_key_text(k): v for k, v in sorted(stored.items())}}
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(record, indent=1))
        os.replace(temporary, path)
    except OSError as error:
        warnings.warn(f"could not store the CPU kernel choice in {path} ({error}); it holds for this process only "
                      "(set HF_VISION_KERNEL_CHOICES to a writable file, or to 'off')", stacklevel=3)


def forget_choices() -> None:
    """Drop the choices of this process and of this machine's file, so the next call of each problem re-times."""
    path = choices_path()
    _choices.clear()
    _merged_from.clear()
    if path is not None:
        path.unlink(missing_ok=True)


def _time_kernels(rows: int, features: int, out_features: int, *, bias: bool, grad_input: bool,
                  grad_weight: bool) -> tuple[float, float]:
    """Best seconds of (F.linear, `linear`) on random data of this shape: forward, plus backward when gradients
    are needed (oneDNN's gradients are other kernels too). Fresh tensors only: nothing of the caller's is touched."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(rows, features, generator=gen).requires_grad_(grad_input)
    w = (torch.randn(out_features, features, generator=gen) * features**-0.5).requires_grad_(grad_weight)
    b = torch.zeros(out_features).requires_grad_(grad_weight) if bias else None
    inputs = [t for t in (x, w, b) if t is not None and t.requires_grad]
    grad = torch.randn(rows, out_features, generator=gen)

    def call(fn) -> float:
        start = time.perf_counter()
        out = fn(x, w, b)
        if inputs:
            torch.autograd.grad(out, inputs, grad)
        return time.perf_counter() - start

    best = [float("inf"), float("inf")]
    for i in range(TIMED_CALLS + 1):
        for k, fn in enumerate((F.linear, linear)):
            seconds = call(fn)
            if i:  # the first call of each warms caches and oneDNN's JIT
                best[k] = min(best[k], seconds)
    return best[0], best[1]


def prefers_onednn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Whether `Linear` should compute this call with oneDNN (see `_prefers_onednn`)."""
    return _prefers_onednn(x, weight, bias, _onednn_images(x, weight))


def _prefers_onednn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, images: int | None) -> bool:
    """Whether `Linear` should compute this call with oneDNN: it applies (see `onednn_applies`, `_images`) and, with
    `MEASURE`, it was measured clearly faster than F.linear for this problem on this machine (timed on the first
    call of each problem on this machine; later calls, and later processes, read the stored choice)."""
    if images is None:
        return False
    if not MEASURE:
        return True
    features = x.shape[-1]
    rows = x.numel() // features
    needs_grad = torch.is_grad_enabled()
    grad_weight = needs_grad and (weight.requires_grad or (bias is not None and bias.requires_grad))
    grad_input = needs_grad and x.requires_grad
    key = (rows, features, weight.shape[0], bias is not None, grad_input, grad_weight, torch.get_num_threads())
    choice = _choices.get(key)
    if choice is None:
        path = _merge_stored_choices()
        choice = _choices.get(key)
        if choice is None:
            with torch.enable_grad() if (grad_input or grad_weight) else torch.no_grad():
                plain, onednn = _time_kernels(rows, features, weight.shape[0], bias=bias is not None,
                                              grad_input=grad_input, grad_weight=grad_weight)
            choice = _choices[key] = onednn < (1.0 - MARGIN) * plain
            if path is not None:
                _store_choice(path, key, choice)
                choice = _choices[key]
    return choice


def measured_choices() -> dict[tuple, bool]:
    """A copy of this process's per-problem decisions so far (timed here or read from the machine's file):
    (rows, in, out, bias, grad_input, grad_weight, threads) -> oneDNN chosen. For reports and tests."""
    return dict(_choices)


class Linear(nn.Linear):
    """`nn.Linear` (same parameters, same state dict) computed by `linear` where that is faster (`prefers_onednn`),
    else by F.linear."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        images = _onednn_images(x, self.weight)
        if _prefers_onednn(x, self.weight, self.bias, images):
            return _onednn_product(x, self.weight, self.bias, images)
        return F.linear(x, self.weight, self.bias)

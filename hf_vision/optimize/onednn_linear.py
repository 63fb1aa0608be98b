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
AVX-512 kernels (Intel CPUs) the gap should be small; we have not measured one. `ENABLED = False` turns it off.

PyTorch sends a 1x1 convolution to oneDNN only for "large" problems (several threads, or a batch of at
least 16 images, and more than 20480 input elements); `_images` picks a layout that qualifies, and small or
indivisible problems stay on `F.linear`. `tests/test_linear.py` checks with the profiler that the oneDNN
kernel is what actually runs, so a change of that heuristic in a later torch shows up as a failing test.
The state dict is `nn.Linear`'s (weight (out, in), bias (out,)); only the kernel differs.
"""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

ENABLED = True  # False: every Linear computes with F.linear (e.g. to reproduce sgemm's rounding exactly)
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
    features = x.shape[-1]
    rows = x.numel() // features if features else 0
    images = _images(rows, features) if rows and onednn_applies(x, weight) else None
    if images is None:
        return F.linear(x, weight, bias)
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


class Linear(nn.Linear):
    """`nn.Linear` (same parameters, same state dict) computed by `linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)

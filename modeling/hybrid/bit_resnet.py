"""The ResNet trunk of the R50+ViT hybrid (Dosovitskiy et al. 2020, sections 3.1 and 4.1).

From BiT (Kolesnikov et al. 2019) it takes weight-standardised convolutions and GroupNorm instead of BatchNorm;
unlike BiT its bottlenecks are post-activation. Padding is TensorFlow's 'SAME', computed from the input size at
every call. That matters for exactness: for a stride-2 layer on an even input TF pads one pixel more at the
bottom/right than at the top/left, which no fixed symmetric PyTorch padding reproduces, so Google's released
checkpoints would drift without it.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

from .configuration_hybrid import STD_STYLES


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF 'SAME': the output has ceil(size / stride) positions; the odd pixel of padding goes after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], *, value: float = 0.0):
    """Pad (B, C, H, W) for a 'SAME' window op; returns (x, symmetric (ph, pw)) so even splits stay in the op."""
    top, bottom = same_padding(x.shape[-2], kernel[0], stride[0])
    left, right = same_padding(x.shape[-1], kernel[1], stride[1])
    if top == bottom and left == right:  # symmetric: let the conv/pool pad (no extra copy)
        return x, (top, left)
    return F.pad(x, (left, right, top, bottom), value=value), (0, 0)


class StdConv2d(nn.Conv2d):
    """Conv2d whose kernel is standardised per output channel on every call (weight standardisation).

    style "google": (w - mean) / (std + eps), as Google's Flax code (eps 1e-5);
    style "timm": (w - mean) / sqrt(var + eps), as timm's and transformers' ports (eps 1e-8).
    The two differ by ~eps/std, so each converted checkpoint keeps the formula it was trained with.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        eps: float = 1e-5,
        style: str = "google",
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, bias=False)
        if style not in STD_STYLES:
            raise ValueError(f"style={style!r} is not supported; accepted values: {', '.join(map(repr, STD_STYLES))}")
        self.eps, self.style = eps, style

    def standardized_weight(self) -> torch.Tensor:
        w = self.weight
        if self.style == "timm":  # one fused kernel: batch-norm statistics over each output channel's fan-in
            # (O, I, kh, kw) -> (1, O, I*kh*kw)
            flat = w.reshape(1, self.out_channels, -1)
            return F.batch_norm(flat, None, None, training=True, momentum=0.0, eps=self.eps).reshape_as(w)
        # (O, I, kh, kw) -> (O, I*kh*kw). Two plain reductions (the mean, then the mean of the centred squares):
        # on CPU `torch.std_mean` (Welford) takes ~5x longer forward and ~2x longer backward over these rows.
        flat = w.reshape(self.out_channels, -1)
        centred = flat - flat.mean(dim=1, keepdim=True)
        scale = 1.0 / (centred.square().mean(dim=1, keepdim=True).sqrt() + self.eps)
        return (centred * scale).reshape_as(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, padding = pad_same(x, self.kernel_size, self.stride)
        # recomputed every call (cheap next to the conv): a cache would go stale under `.data` edits
        return F.conv2d(x, self.standardized_weight(), None, self.stride, padding)


class MaxPoolSame(nn.Module):
    """3x3/2 max pooling with TF 'SAME' padding (pads with -inf, so padding never wins the max)."""

    def __init__(self, kernel_size: int = 3, stride: int = 2) -> None:
        super().__init__()
        self.kernel_size, self.stride = (kernel_size, kernel_size), (stride, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, padding = pad_same(x, self.kernel_size, self.stride, value=float("-inf"))
        return F.max_pool2d(x, self.kernel_size, self.stride, padding)


class ZeroInitGroupNorm(nn.GroupNorm):
    """GroupNorm that closes a residual branch: `_init_weights` starts its scale at zero, as Google's code does,
    so every block begins as the identity."""


class Stem(nn.Module):
    """(B, C_in, H, W) -> (B, width, H/4, W/4): 7x7/2 std-conv, GroupNorm, ReLU, 3x3/2 max-pool."""

    def __init__(self, in_channels: int, width: int, *, groups: int, norm_eps: float, std_eps: float,
                 std_style: str) -> None:
        super().__init__()
        self.conv = StdConv2d(in_channels, width, 7, stride=2, eps=std_eps, style=std_style)
        self.norm = nn.GroupNorm(groups, width, eps=norm_eps)
        self.pool = MaxPoolSame(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.relu(self.norm(self.conv(x)), inplace=True))


class Downsample(nn.Module):
    """Projection shortcut: 1x1 std-conv (strided) + GroupNorm, used when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int, groups: int, norm_eps: float,
                 std_eps: float, std_style: str) -> None:
        super().__init__()
        self.conv = StdConv2d(in_channels, out_channels, 1, stride=stride, eps=std_eps, style=std_style)
        self.norm = nn.GroupNorm(groups, out_channels, eps=norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class Bottleneck(GradientCheckpointingLayer):
    """Post-activation bottleneck (1x1, 3x3 with the stride, 1x1 to 4*mid), GroupNorm after each conv.

    The hybrid uses the ResNet-v1.5 ordering (norm after conv, ReLU after the residual sum), not BiT's
    pre-activation one; this is what Google's R50+ViT code and weights use. A checkpointing layer: with
    gradient checkpointing on, the trunk's large early feature maps are recomputed instead of stored.
    """

    def __init__(self, in_channels: int, mid_channels: int, *, stride: int, groups: int, norm_eps: float,
                 std_eps: float, std_style: str) -> None:
        super().__init__()
        out_channels = 4 * mid_channels
        kw = dict(eps=std_eps, style=std_style)
        self.downsample = (
            Downsample(in_channels, out_channels, stride=stride, groups=groups, norm_eps=norm_eps, std_eps=std_eps,
                       std_style=std_style)
            if stride != 1 or in_channels != out_channels else None
        )
        self.conv1 = StdConv2d(in_channels, mid_channels, 1, **kw)
        self.norm1 = nn.GroupNorm(groups, mid_channels, eps=norm_eps)
        self.conv2 = StdConv2d(mid_channels, mid_channels, 3, stride=stride, **kw)
        self.norm2 = nn.GroupNorm(groups, mid_channels, eps=norm_eps)
        self.conv3 = StdConv2d(mid_channels, out_channels, 1, **kw)
        self.norm3 = ZeroInitGroupNorm(groups, out_channels, eps=norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.downsample(x) if self.downsample is not None else x
        y = F.relu(self.norm1(self.conv1(x)), inplace=True)
        y = F.relu(self.norm2(self.conv2(y)), inplace=True)
        y = self.norm3(self.conv3(y))
        return F.relu(y + shortcut, inplace=True)


class Stage(nn.Module):
    """`depth` bottlenecks; the first one strides and projects."""

    def __init__(self, in_channels: int, mid_channels: int, depth: int, *, stride: int, **kw) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            Bottleneck(in_channels if i == 0 else 4 * mid_channels, mid_channels, stride=stride if i == 0 else 1, **kw)
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class ResNetV2Trunk(nn.Module):
    """(B, C_in, H, W) -> (B, out_channels, ceil(H/stride), ceil(W/stride)).

    Stage i has bottleneck width `width * 2**i` and output `4 * width * 2**i`; every stage after the first
    halves the resolution, so (3, 4, 9) with width 64 gives Google's R50 trunk: 1024 channels at stride 16.
    """

    def __init__(
        self,
        in_channels: int,
        layers: tuple[int, ...],
        width: int = 64,
        *,
        groups: int = 32,
        norm_eps: float = 1e-6,
        std_eps: float = 1e-5,
        std_style: str = "google",
    ) -> None:
        super().__init__()
        kw = dict(groups=groups, norm_eps=norm_eps, std_eps=std_eps, std_style=std_style)
        self.stem = Stem(in_channels, width, **kw)
        self.stages = nn.ModuleList()
        channels = width
        for i, depth in enumerate(layers):
            self.stages.append(Stage(channels, width * 2**i, depth, stride=1 if i == 0 else 2, **kw))
            channels = 4 * width * 2**i
        self.out_channels = channels
        self.stride = 4 * 2 ** max(len(layers) - 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x

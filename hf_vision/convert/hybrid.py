"""The ResNet-trunk half of hybrid conversion: timm's `ResNetV2` and Google's `conv_root`/`blockN/unitM` layout,
and the way back to a timm trunk.

The transformer half is shared with plain ViT (convert/vit.py), which calls into this module when a source has a
CNN trunk. Our trunk's attribute names follow timm's (stem.conv, stages.i.blocks.j.conv1, downsample.conv ...),
so timm keys only move under `embeddings.patch_embed.`; Google's names are mapped explicitly.
"""
from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn

OURS = "embeddings.patch_embed.backbone."


# ---------------------------------------------------------------- timm
def timm_backbone_config(backbone: nn.Module) -> dict[str, Any]:
    """HybridConfig fields reproducing a timm hybrid trunk exactly; ValueError for what we do not implement."""
    stem_only = not hasattr(backbone, "stem")  # e.g. vit_tiny_r_s16_p8: the trunk is the stem alone
    stem = backbone if stem_only else backbone.stem
    conv, norm, pool = getattr(stem, "conv", None), getattr(stem, "norm", None), getattr(stem, "pool", None)
    if conv is None or norm is None or pool is None:
        raise ValueError("timm hybrid: only the 7x7 conv + GroupNorm + max-pool stem (non pre-activation) is supported")
    if type(conv).__name__ != "StdConv2dSame" or type(pool).__name__ != "MaxPool2dSame":
        raise ValueError(
            "timm hybrid: only TF 'SAME' padding (StdConv2dSame + MaxPool2dSame, timm's default padding_same=True) "
            f"is supported, got {type(conv).__name__} + {type(pool).__name__}"
        )
    if not isinstance(norm, nn.GroupNorm):
        raise ValueError(f"timm hybrid: the trunk must use GroupNorm, got {type(norm).__name__}")
    width = conv.out_channels
    layers = [] if stem_only else [len(stage.blocks) for stage in backbone.stages]
    for i, stage in enumerate([] if stem_only else backbone.stages):
        for block in stage.blocks:
            if type(block).__name__ != "Bottleneck":
                raise ValueError(f"timm hybrid: only post-activation Bottleneck blocks, got {type(block).__name__}")
            if block.conv1.out_channels != width * 2**i or block.conv3.out_channels != 4 * width * 2**i:
                raise ValueError(
                    f"timm hybrid: stage {i} widths ({block.conv1.out_channels}, {block.conv3.out_channels}) are not "
                    f"({width * 2**i}, {4 * width * 2**i}) as in Google's ResNet-v2 (stem width x 2**i, 4x out)"
                )
            if block.downsample is not None and type(block.downsample).__name__ != "DownsampleConv":
                raise ValueError("timm hybrid: only 1x1-conv projection shortcuts (no avg_down) are supported")
            if block.conv2.dilation != (1, 1):
                raise ValueError("timm hybrid: dilated trunks (output_stride < 16) are not supported")
    if not stem_only and not isinstance(getattr(backbone, "norm", nn.Identity()), nn.Identity):
        raise ValueError("timm hybrid: a pre-activation trunk (final norm) is not supported")
    return dict(
        backbone_layers=layers,
        backbone_width=width,
        backbone_norm_groups=norm.num_groups,
        backbone_norm_eps=norm.eps,
        backbone_std_style="timm",
        backbone_std_eps=conv.eps,
    )


def timm_backbone_key(key: str, *, stem_only: bool) -> str | None:
    """timm `patch_embed.backbone.*` key -> ours (None for anything else)."""
    prefix = "patch_embed.backbone."
    if not key.startswith(prefix):
        return None
    rest = key[len(prefix):]
    return OURS + ("stem." + rest if stem_only else rest)


def timm_backbone(config) -> nn.Module:
    """A timm ResNetV2 trunk (or its stem alone) with our HybridConfig's layout, as `vit_*_r*_s*` builds it."""
    from timm.layers import GroupNormAct, StdConv2dSame
    from timm.models.resnetv2 import ResNetV2, create_resnetv2_stem

    # Google's (w - mean) / (std + eps) kernels are exported pre-folded for timm's formula (timm_std_conv_weight)
    eps = config.backbone_std_eps if config.backbone_std_style == "timm" else 1e-8
    layers = dict(conv_layer=partial(StdConv2dSame, eps=eps),
                  norm_layer=partial(GroupNormAct, num_groups=config.backbone_norm_groups, eps=config.backbone_norm_eps))
    width = config.backbone_width
    if not config.backbone_layers:
        return create_resnetv2_stem(config.num_channels, width, stem_type="same", preact=False, **layers)
    return ResNetV2(layers=list(config.backbone_layers), channels=[4 * width * 2**i for i in range(len(config.backbone_layers))],
                    stem_chs=width, in_chans=config.num_channels, num_classes=0, global_pool="", preact=False,
                    stem_type="same", **layers)


def timm_std_conv_weight(conv: nn.Module, *, eps: float) -> torch.Tensor:
    """Our StdConv2d's kernel as timm's StdConv2dSame (w - mean) / sqrt(var + eps) must hold it.

    timm style: the kernel itself. Google style, (w - mean) / (std + eps_g): export k * s, where s is our
    standardised kernel (mean 0, variance v < 1 per output channel) and k^2 = eps / (1 - v); timm then computes
    k * s / sqrt(k^2 v + eps) = k * s / k = s, the kernel our model convolves with.
    """
    if conv.style == "timm" and conv.eps == eps:
        return conv.weight
    s = conv.standardized_weight().detach().double()
    # (O, I, kh, kw) -> per output channel variance (O, 1, 1, 1)
    var = s.reshape(s.shape[0], -1).var(dim=1, unbiased=False).view(-1, 1, 1, 1)
    if bool((var >= 1).any()):
        raise ValueError("hybrid to timm: a standardised kernel with variance >= 1 cannot be folded")
    return (s * torch.sqrt(eps / (1 - var))).float()


# ---------------------------------------------------------------- Google .npz
def _conv(kernel: np.ndarray) -> torch.Tensor:
    # HWIO (kh, kw, in, out) -> OIHW (out, in, kh, kw)
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))


def _vec(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).reshape(-1)  # GroupNorm scale/bias (C,) -> (C,)


def official_backbone_layers(weights: dict[str, np.ndarray], prefix: str = "") -> list[int]:
    """Blocks per stage read from `block{i}/unit{j}/...` keys (Google numbers both from 1)."""
    layers = []
    while f"{prefix}block{len(layers) + 1}/unit1/conv1/kernel" in weights:
        i = len(layers) + 1
        units = 0
        while f"{prefix}block{i}/unit{units + 1}/conv1/kernel" in weights:
            units += 1
        layers.append(units)
    return layers


def official_backbone_state_dict(weights: dict[str, np.ndarray], layers: list[int], prefix: str = "") -> dict:
    """Google's trunk arrays -> our state-dict entries (under OURS)."""
    out = {
        OURS + "stem.conv.weight": _conv(weights[f"{prefix}conv_root/kernel"]),
        OURS + "stem.norm.weight": _vec(weights[f"{prefix}gn_root/scale"]),
        OURS + "stem.norm.bias": _vec(weights[f"{prefix}gn_root/bias"]),
    }
    for i, depth in enumerate(layers):
        for j in range(depth):
            src, dst = f"{prefix}block{i + 1}/unit{j + 1}/", f"{OURS}stages.{i}.blocks.{j}."
            for r in (1, 2, 3):
                out[f"{dst}conv{r}.weight"] = _conv(weights[f"{src}conv{r}/kernel"])
                out[f"{dst}norm{r}.weight"] = _vec(weights[f"{src}gn{r}/scale"])
                out[f"{dst}norm{r}.bias"] = _vec(weights[f"{src}gn{r}/bias"])
            if f"{src}conv_proj/kernel" in weights:
                out[f"{dst}downsample.conv.weight"] = _conv(weights[f"{src}conv_proj/kernel"])
                out[f"{dst}downsample.norm.weight"] = _vec(weights[f"{src}gn_proj/scale"])
                out[f"{dst}downsample.norm.bias"] = _vec(weights[f"{src}gn_proj/bias"])
    return out

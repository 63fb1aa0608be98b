"""What the analyses need to know about a model, found from its config and modules, in one place.

Each family exposes the same facts differently (ViT's `embeddings.patch_embed.proj`, the hybrid's ResNet stem,
MAE's fixed sin-cos tables, Swin's windows); the analyses ask here and get either the tensor or an
`AnalysisNotApplicable` error that says why the figure would be meaningless for this model.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn


class AnalysisNotApplicable(ValueError):
    """The analysis makes no sense for this model (the message says why)."""


@dataclass(frozen=True)
class ModelView:
    family: str  # "vit", "hybrid", "mae", "swin" (config.model_type without the "hfv_" namespace)
    backbone: nn.Module  # the module that embeds patches and runs the encoder
    grid_size: tuple[int, int]  # patch tokens per side at the configured image size
    patch_size: int  # pixels per token side
    num_prefix_tokens: int  # class token(s) in front of the patch grid
    pooling: str  # "cls" or "gap": what the head reads, hence where rollout starts
    image_size: tuple[int, int]


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def family_of(model: nn.Module) -> str:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if not model_type:
        raise AnalysisNotApplicable(f"{type(model).__name__} has no config.model_type: not an hf-vision model")
    return model_type.removeprefix("hfv_")


def _vit_backbone(model: nn.Module) -> nn.Module | None:
    """The first module (the model itself included) holding `embeddings.patch_embed` and `encoder`."""
    for module in model.modules():
        if hasattr(module, "embeddings") and hasattr(module.embeddings, "patch_embed") and hasattr(module, "encoder"):
            return module
    return None


def describe(model: nn.Module) -> ModelView:
    """The grid, prefix and pooling facts of a global-attention model (ViT, hybrid, MAE encoder)."""
    family = family_of(model)
    config = model.config
    if family == "swin":
        raise AnalysisNotApplicable(
            "Swin attends inside local windows whose token grid changes per stage; use the Swin window analyses"
        )
    backbone = _vit_backbone(model)
    if backbone is None:
        raise AnalysisNotApplicable(f"{type(model).__name__} has no ViT-style embeddings + encoder to analyse")
    image_size = _pair(config.image_size)
    grid = tuple(getattr(backbone.embeddings, "grid_size", None) or
                 (image_size[0] // config.patch_size, image_size[1] // config.patch_size))
    stride = image_size[0] // grid[0]  # pixels per token: patch_size, or the hybrid's CNN stride x patch_size
    prefix = int(getattr(backbone.embeddings, "num_prefix_tokens", int(getattr(config, "class_token", True))))
    pooling = getattr(config, "pooling", "cls")
    return ModelView(family, backbone, grid, stride, prefix, pooling, image_size)


def patch_projection_weight(model: nn.Module) -> torch.Tensor:
    """(D, C, p, p) weight of the first layer when it is a patch projection applied to raw pixels."""
    family = family_of(model)
    if family == "hybrid":
        raise AnalysisNotApplicable(
            "the hybrid's first layer is a ResNet stem (7x7 conv, stride 2), not a patch projection of pixels: "
            "its patch embedding projects CNN feature maps, so there are no RGB patch filters to show"
        )
    if family == "swin":
        conv = _first_conv(model)
    else:
        backbone = _vit_backbone(model)
        conv = getattr(getattr(backbone.embeddings, "patch_embed", None), "proj", None) if backbone else None
    num_channels = getattr(model.config, "num_channels", 3)
    if not isinstance(conv, nn.Conv2d) or conv.in_channels != num_channels or conv.kernel_size != conv.stride:
        raise AnalysisNotApplicable(
            f"{type(model).__name__}'s first layer is not a non-overlapping patch projection of the "
            f"{num_channels}-channel input, so its filters are not image patches"
        )
    return conv.weight


def _first_conv(model: nn.Module) -> nn.Module | None:
    return next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)


def position_embedding_table(model: nn.Module) -> tuple[torch.Tensor, str, tuple[int, int], int]:
    """(table (prefix + H*W, C), kind, grid_size, num_prefix_tokens) of the absolute position embedding.

    kind is "learned" or "sincos2d" (fixed). Models without an absolute position embedding raise.
    """
    family = family_of(model)
    config = model.config
    if family == "swin":
        swin = getattr(model, "swin", model)
        table = getattr(swin, "absolute_pos_embed", None)
        if table is None:
            raise AnalysisNotApplicable(
                "this Swin model has no absolute position embedding (use_absolute_position_embeddings=False): "
                "position enters only through the relative position bias inside each window"
            )
        return table.detach()[0], "learned", tuple(swin.grid_size), 0
    view = describe(model)
    table = getattr(view.backbone.embeddings, "position_embeddings", None)
    kind = getattr(view.backbone.embeddings, "position_embedding_type",
                   getattr(config, "position_embedding_type", None))
    if family == "mae":
        kind = "sincos2d"  # both MAE tables are fixed 2-D sin-cos, as in the official code
    if table is None or kind == "none":
        raise AnalysisNotApplicable(
            f"{type(model).__name__} has no position embedding (position_embedding_type={kind!r}): "
            "the similarity map would be noise"
        )
    return table.detach()[0], kind or "learned", view.grid_size, view.num_prefix_tokens


def with_mask_ratio(model: nn.Module, mask_ratio: float) -> nn.Module:
    """A view of an MAE that masks `mask_ratio` of the patches at random (`model` itself for models that do not mask).

    MAE models read the ratio from their config at every forward; analyses need other ratios (0 to see the whole
    image, 0.5-0.9 for the reconstruction grids) without a second copy of the weights, and without changing the
    model or its config under anyone else's feet (another thread, a caller that saves it). The view shares every
    parameter, buffer and hook with `model`; only its modules that held the model's config hold a changed copy.
    """
    config = model.config
    if not hasattr(config, "mask_ratio"):
        return model
    changed = copy.deepcopy(config)
    changed.mask_ratio = mask_ratio
    if getattr(config, "mask_strategy", None) is not None:
        changed.mask_strategy = "random"
    return _with_config(model, config, changed)


def _with_config(module: nn.Module, old: Any, new: Any) -> nn.Module:
    view = copy.copy(module)  # a new object whose __dict__ entries are the original's (parameters, buffers, hooks)
    view.__dict__["_modules"] = {name: None if child is None else _with_config(child, old, new)
                                 for name, child in module._modules.items()}
    if module.__dict__.get("config") is old:
        view.__dict__["config"] = new
    return view


def unmasked(model: nn.Module) -> nn.Module:
    """An MAE that sees every patch (the model itself for models that do not mask)."""
    return with_mask_ratio(model, 0.0)


@torch.no_grad()
def encoder_attentions(model: nn.Module, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per-layer (B, heads, N, N) attention weights of the encoder over all patches (nothing masked)."""
    view = describe(unmasked(model))
    out = view.backbone(pixel_values, output_attentions=True, return_dict=True)
    if not out.attentions:
        raise AnalysisNotApplicable(f"{type(view.backbone).__name__} returned no attention weights")
    return tuple(out.attentions)


def image_mean_std(model: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    config = model.config
    mean = np.asarray(getattr(config, "image_mean", (0.5, 0.5, 0.5)), dtype=np.float32)
    std = np.asarray(getattr(config, "image_std", (0.5, 0.5, 0.5)), dtype=np.float32)
    return mean, std


def centre_crop_to_aspect(image: np.ndarray, aspect: float) -> np.ndarray:
    """The largest centred crop of (H, W, C) with height / width == aspect, so resizing does not squash it."""
    h, w = image.shape[:2]
    if h > aspect * w:
        top = int(round((h - aspect * w) / 2))
        return image[top:top + int(round(aspect * w))]
    left = int(round((w - h / aspect) / 2))
    return image[:, left:left + int(round(h / aspect))]


def preprocess(model: nn.Module, images: list[np.ndarray]) -> tuple[torch.Tensor, np.ndarray]:
    """uint8 (H, W, 3) images -> model input (B, 3, h, w) at the configured size and the same pixels in [0, 1]
    as (B, h, w, 3) for drawing: centre-cropped to the model's aspect ratio, then resized and normalised by the
    model's own image processor."""
    processor = model.image_processor()
    height, width = _pair(model.config.image_size)
    cropped = [centre_crop_to_aspect(np.asarray(img), height / width) for img in images]
    # the whole aspect-cropped image at the model size (not the evaluation crop the processor applies by default)
    pixel_values = processor(images=cropped, size={"height": height, "width": width}, do_center_crop=False,
                             return_tensors="pt")["pixel_values"]
    mean, std = image_mean_std(model)
    # (B, 3, h, w) -> (B, h, w, 3)
    display = pixel_values.permute(0, 2, 3, 1).numpy() * std + mean
    return pixel_values, np.clip(display, 0.0, 1.0)

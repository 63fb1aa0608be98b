"""Conversion of foreign checkpoints (timm, transformers, the papers' official releases) into our models.

Each family's converter module registers itself here; the three entry points dispatch on what they are given.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

# (predicate on the source model, converter) pairs, filled by the family modules imported below.
TIMM_CONVERTERS: list[tuple[Callable[[nn.Module], bool], Callable[[nn.Module], nn.Module]]] = []
TRANSFORMERS_CONVERTERS: dict[str, Callable[[nn.Module], nn.Module]] = {}  # transformers model_type -> converter
OFFICIAL_LOADERS: dict[str, Callable[..., nn.Module]] = {}  # preset-name prefix -> loader


def from_timm(model: nn.Module) -> nn.Module:
    """Our model with the same weights and matching config as a timm model, including timm's evaluation
    preprocessing (mean, std, crop_pct, interpolation, crop mode) for the saved image processor."""
    from .preprocessing import apply_preprocessing, timm_preprocessing

    for accepts, convert in TIMM_CONVERTERS:
        if accepts(model):
            return apply_preprocessing(convert(model), timm_preprocessing(model))
    raise ValueError(f"no converter for timm model {type(model).__name__}")


def from_transformers(model: nn.Module, *, preprocessor: dict[str, Any] | None = None) -> nn.Module:
    """Our model with the same weights and matching config as a transformers model; `preprocessor` (the source's
    preprocessor_config.json as a dict) carries its mean, std, resize and crop over to our processor."""
    from .preprocessing import apply_preprocessing, transformers_preprocessing

    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in TRANSFORMERS_CONVERTERS:
        raise ValueError(
            f"no converter for transformers model_type={model_type!r}; supported: {', '.join(sorted(TRANSFORMERS_CONVERTERS))}"
        )
    return apply_preprocessing(TRANSFORMERS_CONVERTERS[model_type](model), transformers_preprocessing(preprocessor))


def load_official(path: str | Path, name: str, **overrides: Any) -> nn.Module:
    """Read a paper's released checkpoint file for the preset `name` (e.g. Google's ViT `.npz`)."""
    for prefix, loader in sorted(OFFICIAL_LOADERS.items(), key=lambda kv: -len(kv[0])):
        if name.startswith(prefix):
            return loader(path, name, **overrides)
    raise ValueError(f"no official-checkpoint loader for {name!r}; supported prefixes: {', '.join(sorted(OFFICIAL_LOADERS))}")


from . import mae  # noqa: E402,F401  (registers the MAE converters)
from . import vit  # noqa: E402,F401  (registers the ViT and R50+ViT hybrid converters)
from . import swin  # noqa: E402,F401  (registers the Swin converters)

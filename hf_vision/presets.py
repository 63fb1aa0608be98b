"""Named configurations of the papers' models: `get_config("vit-base-patch16-224", num_labels=10)`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modeling.vit.configuration_vit import ViTConfig


@dataclass(frozen=True)
class Preset:
    config_class: type
    kwargs: dict[str, Any]
    params_m: float | None = None  # published parameter count (millions, 1000 classes)
    paper: str = ""
    notes: str = ""
    defaults: dict[str, Any] = field(default_factory=lambda: {"num_labels": 1000})


VIT_PAPER = "arXiv:2010.11929"
_VIT_SIZES = {
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
    "huge": dict(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16, intermediate_size=5120),
}


def _vit(size: str, patch: int, image: int) -> dict[str, Any]:
    return dict(**_VIT_SIZES[size], patch_size=patch, image_size=image)


PRESETS: dict[str, Preset] = {
    "vit-base-patch16-224": Preset(ViTConfig, _vit("base", 16, 224), 86.6, VIT_PAPER),
    "vit-base-patch32-224": Preset(ViTConfig, _vit("base", 32, 224), 88.2, VIT_PAPER),
    "vit-large-patch16-224": Preset(ViTConfig, _vit("large", 16, 224), 304.3, VIT_PAPER),
    "vit-large-patch32-224": Preset(ViTConfig, _vit("large", 32, 224), 306.5, VIT_PAPER),
    "vit-huge-patch14-224": Preset(ViTConfig, _vit("huge", 14, 224), 632.0, VIT_PAPER),
    "vit-base-patch16-384": Preset(ViTConfig, _vit("base", 16, 384), 86.9, VIT_PAPER),
}


def preset_names() -> list[str]:
    return sorted(PRESETS)


def get_config(name: str, **overrides: Any):
    """A fresh config for a named preset; keyword overrides win (e.g. num_labels, image_size, drop_path_rate)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid names: {', '.join(preset_names())}")
    preset = PRESETS[name]
    return preset.config_class(**{**preset.defaults, **preset.kwargs, **overrides})

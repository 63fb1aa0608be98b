"""The source's evaluation preprocessing, carried into a converted model's config (and so its saved processor).

Our image processor reads `image_mean`, `image_std`, `crop_pct`, `interpolation` and `crop_mode` from the config
(modeling/pretrained.py `image_processor`). timm keeps them in the model's `pretrained_cfg`; transformers keeps them
in the checkpoint's preprocessor_config.json, read here as a dict.
"""
from __future__ import annotations

import warnings
from typing import Any

from torch import nn

PIL_NAMES = {0: "nearest", 2: "bilinear", 3: "bicubic"}  # PIL resample codes our processor supports
CROP_MODES = ("center", "squash")


def timm_preprocessing(model: nn.Module) -> dict[str, Any]:
    """Config fields from a timm model's pretrained_cfg (empty when it has none)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    fields: dict[str, Any] = {}
    if "mean" in cfg and "std" in cfg:
        fields.update(image_mean=list(cfg["mean"]), image_std=list(cfg["std"]))
    if cfg.get("crop_pct"):
        fields["crop_pct"] = float(cfg["crop_pct"])
    interpolation = cfg.get("interpolation")
    if interpolation in PIL_NAMES.values():
        fields["interpolation"] = interpolation
    elif interpolation:
        warnings.warn(f"timm interpolation={interpolation!r} is not one of {', '.join(PIL_NAMES.values())}: "
                      "the converted model's processor resizes bicubic", stacklevel=2)
    mode = cfg.get("crop_mode") or "center"
    if mode in CROP_MODES:
        fields["crop_mode"] = mode
    else:
        warnings.warn(f"timm crop_mode={mode!r} is not one of {', '.join(CROP_MODES)}: the converted model's "
                      "processor centre-crops", stacklevel=2)
    return fields


def transformers_preprocessing(processor: dict[str, Any] | None) -> dict[str, Any]:
    """Config fields from a transformers preprocessor_config.json (empty when there is none)."""
    if not processor:
        return {}
    fields: dict[str, Any] = {}
    if processor.get("image_mean") is not None and processor.get("image_std") is not None:
        fields.update(image_mean=list(processor["image_mean"]), image_std=list(processor["image_std"]))
    resample = processor.get("resample")
    if resample in PIL_NAMES:
        fields["interpolation"] = PIL_NAMES[resample]
    elif resample is not None:
        warnings.warn(f"processor resample={resample} is not one of {sorted(PIL_NAMES)}: the converted model's "
                      "processor resizes bicubic", stacklevel=2)
    size, crop = processor.get("size") or {}, processor.get("crop_size") or {}
    if processor.get("do_center_crop") and crop.get("height"):
        resized = size.get("shortest_edge") or size.get("height")
        if resized:
            fields.update(crop_mode="center", crop_pct=crop["height"] / resized)
    elif processor.get("do_resize", True):  # resized straight to the model size, aspect ratio not kept
        fields.update(crop_mode="squash", crop_pct=1.0)
    return fields


def apply_preprocessing(model: nn.Module, fields: dict[str, Any]) -> nn.Module:
    """Set the fields on the model's config (in place) and return the model."""
    for key, value in fields.items():
        setattr(model.config, key, value)
    return model

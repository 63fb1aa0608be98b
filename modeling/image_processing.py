"""The evaluation preprocessing a model's config describes, as a transformers image processor."""
from __future__ import annotations

import math

from .config_checks import pair

DEFAULT_CROP_PCT = 0.875
DEFAULT_INTERPOLATION = "bicubic"
CROP_MODES = ("center", "squash")
PIL_RESAMPLE = {"nearest": 0, "bilinear": 2, "bicubic": 3}  # PIL.Image.Resampling values, as processors store them


def eval_image_processor(config):
    """The evaluation preprocessing this model expects: resize the shorter side to size / crop_pct, centre-crop
    to the config's size, normalise with its mean/std (BitImageProcessor is the transformers processor that
    resizes by the shorter side and centre-crops). `crop_pct`, `interpolation` and `crop_mode` are optional
    config fields (default 0.875, bicubic, "center", as timm and the papers evaluate; "squash" resizes straight
    to the model size, as transformers' ViT processor); converters carry the source's values over."""
    from transformers import BitImageProcessor

    height, width = pair(config.image_size)
    crop_pct = float(getattr(config, "crop_pct", None) or DEFAULT_CROP_PCT)
    if not 0 < crop_pct <= 1:
        raise ValueError(f"config.crop_pct={crop_pct} must be in (0, 1]")
    interpolation = getattr(config, "interpolation", None) or DEFAULT_INTERPOLATION
    if interpolation not in PIL_RESAMPLE:
        raise ValueError(f"config.interpolation={interpolation!r} is not one of {', '.join(PIL_RESAMPLE)}")
    crop_mode = getattr(config, "crop_mode", None) or "center"
    if crop_mode not in CROP_MODES:
        raise ValueError(f"config.crop_mode={crop_mode!r} is not one of {', '.join(CROP_MODES)}")
    if crop_mode == "squash":
        resize = {"height": height, "width": width}
    elif height == width:  # the shorter side (the aspect ratio is kept), then the centre crop
        resize = {"shortest_edge": math.floor(height / crop_pct)}
    else:
        resize = {"height": math.floor(height / crop_pct), "width": math.floor(width / crop_pct)}
    return BitImageProcessor(
        do_resize=True,
        size=resize,
        resample=PIL_RESAMPLE[interpolation],
        do_center_crop=crop_mode == "center",
        crop_size={"height": height, "width": width},
        do_rescale=True,
        do_normalize=True,
        image_mean=list(config.image_mean),
        image_std=list(config.image_std),
        do_convert_rgb=True,
    )

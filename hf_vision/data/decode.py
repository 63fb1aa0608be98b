"""Image decoding that never ends a run: we decode ourselves (the column is cast to `Image(decode=False)`),
so one corrupt file becomes a counted, reported skip instead of an exception inside `datasets`' iterator.

Every PIL mode becomes 8-bit RGB. High-bit-depth modes ("I;16", "I", "F") are rescaled to 0..255 first, because
PIL's own `convert("RGB")` clips them (a 16-bit photo turns almost entirely white).
"""
from __future__ import annotations

import io
import math
import os
import warnings
from typing import Any

import numpy as np
from PIL import Image

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


class UndecodableImage(Exception):
    """Raised for a record whose image cannot be read; the message says why."""


def open_image(value: Any) -> Image.Image:
    """A lazily opened PIL image (header parsed, pixels not decoded) from a `datasets` Image value.

    `value` is what `Image(decode=False)` yields (`{"bytes": ..., "path": ...}`), raw bytes, a path, or an
    already decoded PIL image.
    """
    if isinstance(value, Image.Image):
        return value
    try:
        if isinstance(value, dict):
            data, path = value.get("bytes"), value.get("path")
        elif isinstance(value, (bytes, bytearray, memoryview)):
            data, path = bytes(value), None
        elif isinstance(value, (str, os.PathLike)):
            data, path = None, os.fspath(value)
        else:
            raise UndecodableImage(f"unsupported image value of type {type(value).__name__}")
        if data is None:
            if not path:
                raise UndecodableImage("record has neither bytes nor path")
            from datasets.utils.file_utils import xopen  # local paths, hf:// and http(s):// alike

            with xopen(path, "rb") as f:
                data = f.read()
        with warnings.catch_warnings():  # a decompression bomb is skipped like any other undecodable input
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except UndecodableImage:
        raise
    except Exception as err:  # PIL raises several types (UnidentifiedImageError, OSError, SyntaxError...)
        raise UndecodableImage(f"{type(err).__name__}: {err}") from err


def draft_for(image: Image.Image, min_size: tuple[int, int]) -> float:
    """Ask a JPEG decoder for the smallest DCT-scaled size (1/2, 1/4, 1/8) still >= `min_size` (w, h).

    Returns the reduction factor applied (1.0 when none, or for other formats): decoded pixel i covers original
    pixels [i * factor, (i + 1) * factor), also when the size is not a multiple (the last pixel is partial).
    Must be called before the pixels are loaded.
    """
    if image.format != "JPEG":
        return 1.0
    width = image.size[0]
    result = image.draft(None, (max(1, math.ceil(min_size[0])), max(1, math.ceil(min_size[1]))))
    if result is None:
        return 1.0
    _, box = result  # (0, 0, width / scale, height / scale): the exact DCT scale, unlike the rounded-up size
    return width / box[2]


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB; high bit depths rescaled, transparency composited over white."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        array = np.asarray(image)
        if mode in _SIXTEEN_BIT_MODES:
            scale = 65535.0
        elif mode == "I":  # 32-bit ints: 16-bit PNGs open as "I"; larger values mean a wider range
            scale = 65535.0 if array.max(initial=0) <= 65535 and array.min(initial=0) >= 0 else None
        else:
            scale = 1.0 if array.max(initial=0) <= 1.0 and array.min(initial=0) >= 0 else None
        array = array.astype(np.float64)
        if scale is None:  # unknown range: stretch what is there
            low, high = float(array.min(initial=0)), float(array.max(initial=0))
            array = (array - low) / max(high - low, 1e-12)
        else:
            array = array / scale
        gray = np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Fully transparent pixels often hold junk colours; compositing shows what a viewer shows.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


def load_rgb(image: Image.Image, *, min_size: tuple[int, int] | None = None) -> tuple[Image.Image, float]:
    """Decode the pixels (optionally at reduced JPEG size) and convert to RGB.

    Returns (RGB image, reduction factor). Raises `UndecodableImage` for corrupt or truncated data.
    """
    try:
        factor = draft_for(image, min_size) if min_size is not None else 1.0
        image.load()
        if image.size[0] < 1 or image.size[1] < 1:
            raise UndecodableImage(f"empty image of size {image.size}")
        return to_rgb(image), factor
    except UndecodableImage:
        raise
    except Exception as err:
        raise UndecodableImage(f"{type(err).__name__}: {err}") from err


def load_uint8(image: Image.Image, *, min_size: tuple[int, int] | None = None):
    """Like `load_rgb`, but returns a uint8 (3, H, W) tensor (and the reduction factor).

    Full-size JPEGs (no useful DCT reduction) in RGB or grayscale go through torchvision's libjpeg-turbo
    decoder straight into a tensor, skipping the PIL -> array copy; everything else through PIL and `to_rgb`.
    """
    import torch

    factor = 1.0
    if image.format == "JPEG" and image.mode in ("RGB", "L") and isinstance(getattr(image, "fp", None), io.BytesIO):
        width, height = image.size
        reducible = min_size is not None and min(width / max(min_size[0], 1), height / max(min_size[1], 1)) >= 2
        if not reducible:
            from torchvision.io import ImageReadMode, decode_jpeg

            data = torch.frombuffer(bytearray(image.fp.getbuffer()), dtype=torch.uint8)
            try:
                return decode_jpeg(data, mode=ImageReadMode.RGB), factor
            except RuntimeError as err:  # corrupt or truncated
                raise UndecodableImage(f"{type(err).__name__}: {err}") from err
    rgb, factor = load_rgb(image, min_size=min_size)
    # (H, W, 3) -> (3, H, W): one copy, channels-last strides (what the uint8 resize kernels prefer)
    return torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1), factor

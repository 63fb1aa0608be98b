"""Offline round trip of a preset: inference, save_pretrained, AutoModel reload, identical outputs."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForImageClassification

from .auto import model_class
from .presets import PRESETS, get_config


def _sample_image() -> Image.Image:
    try:
        from skimage import data

        return Image.fromarray(data.chelsea())
    except ImportError:
        return Image.fromarray((np.random.default_rng(0).random((224, 224, 3)) * 255).astype("uint8"))


def run(preset: str, output_dir: str | Path) -> dict[str, float]:
    config = get_config(preset)
    model_cls = model_class(type(config), "AutoModelForImageClassification")
    torch.manual_seed(0)
    model = model_cls(config).eval()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"{preset}: {params:.1f}M parameters (published {PRESETS[preset].params_m}M), random weights")
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir)
    processor = AutoImageProcessor.from_pretrained(output_dir)
    pixels = processor(_sample_image(), return_tensors="pt")["pixel_values"]
    start = time.perf_counter()
    with torch.inference_mode():
        logits = model(pixels).logits
    elapsed = time.perf_counter() - start
    reloaded = AutoModelForImageClassification.from_pretrained(output_dir).eval()
    with torch.inference_mode():
        diff = (reloaded(pixels).logits - logits).abs().max().item()
    print(f"inference on {tuple(pixels.shape)} in {elapsed * 1000:.0f} ms; saved to {output_dir}; "
          f"AutoModel reload max |diff| = {diff:.1e}")
    if diff != 0.0:
        raise SystemExit("reloaded model differs from the saved one")
    return {"params_m": params, "max_abs_diff": diff, "seconds": elapsed}

"""hf-vision: ViT, R50+ViT hybrid, MAE and Swin as first-class Hugging Face models.

Importing the package registers every family with transformers' Auto classes.
"""
from __future__ import annotations

from modeling.vit.configuration_vit import ViTConfig
from modeling.vit.modeling_vit import ViTForImageClassification, ViTModel

from . import convert
from .auto import register_family
from .presets import PRESETS, get_config, preset_names

register_family(ViTConfig, {"AutoModel": ViTModel, "AutoModelForImageClassification": ViTForImageClassification})

__version__ = "0.1.0"
__all__ = [
    "ViTConfig", "ViTModel", "ViTForImageClassification",
    "get_config", "preset_names", "PRESETS", "convert",
]

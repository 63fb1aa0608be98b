"""hf-vision: ViT, R50+ViT hybrid, MAE and Swin as first-class Hugging Face models.

Importing the package registers every family with transformers' Auto classes.
"""
from __future__ import annotations

from hf_vision.modeling.config_checks import CheckpointRefusedError
from hf_vision.modeling.hybrid.configuration_hybrid import HybridConfig
from hf_vision.modeling.hybrid.modeling_hybrid import HybridForImageClassification, HybridModel
from hf_vision.modeling.mae.configuration_mae import MAEConfig
from hf_vision.modeling.mae.modeling_mae import MAEForPreTraining, MAEModel
from hf_vision.modeling.swin.configuration_swin import SwinConfig
from hf_vision.modeling.swin.modeling_swin import SwinBackbone, SwinForImageClassification, SwinModel
from hf_vision.modeling.vit.configuration_vit import ViTConfig
from hf_vision.modeling.vit.modeling_vit import ViTForImageClassification, ViTModel

from . import convert
from .auto import register_family
from .presets import PRESETS, get_config, preset_names
from .hub import from_pretrained, push_folder, push_to_hub
from .optimize import optimize_for_cpu
from . import analysis  # noqa: E402  (the papers' figures; matplotlib is imported only when drawing)

register_family(ViTConfig, {"AutoModel": ViTModel, "AutoModelForImageClassification": ViTForImageClassification})
register_family(SwinConfig, {"AutoModel": SwinModel, "AutoModelForImageClassification": SwinForImageClassification,
                             "AutoBackbone": SwinBackbone})
register_family(HybridConfig, {"AutoModel": HybridModel, "AutoModelForImageClassification": HybridForImageClassification})
register_family(MAEConfig, {"AutoModel": MAEModel, "AutoModelForPreTraining": MAEForPreTraining})

__version__ = "0.1.0"
__all__ = [
    "ViTConfig", "ViTModel", "ViTForImageClassification",
    "SwinConfig", "SwinModel", "SwinForImageClassification", "SwinBackbone",
    "HybridConfig", "HybridModel", "HybridForImageClassification",
    "MAEConfig", "MAEModel", "MAEForPreTraining",
    "get_config", "preset_names", "PRESETS", "convert",
    "from_pretrained", "push_to_hub", "push_folder", "optimize_for_cpu",
    "analysis", "CheckpointRefusedError",
]

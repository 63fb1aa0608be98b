"""hf-vision: ViT, R50+ViT hybrid, MAE and Swin as first-class Hugging Face models.

Importing the package registers every family with transformers' Auto classes (hf_vision.auto) and routes our
models' pushes through hf_vision.hub; nothing else is imported eagerly. The layer order inside the package is
declared in tests/test_layout.py (LAYERS) and drawn in the README: this root re-exports the public API and nothing
inside hf_vision imports it. The rest of the API (conversion, analysis, the CPU opt-in) loads on first use
through `__getattr__`, so `from hf_vision import X`, `hf_vision.X` and `dir(hf_vision)` work for every name.
"""
from __future__ import annotations

import importlib
from typing import Any

from hf_vision.modeling.hybrid.configuration_hybrid import HybridConfig
from hf_vision.modeling.hybrid.modeling_hybrid import HybridForImageClassification, HybridModel
from hf_vision.modeling.mae.configuration_mae import MAEConfig
from hf_vision.modeling.mae.modeling_mae import MAEForPreTraining, MAEModel
from hf_vision.modeling.swin.configuration_swin import SwinConfig
from hf_vision.modeling.swin.modeling_swin import SwinBackbone, SwinForImageClassification, SwinModel
from hf_vision.modeling.vit.configuration_vit import ViTConfig
from hf_vision.modeling.vit.modeling_vit import ViTForImageClassification, ViTModel

from .auto import register_families, register_family
from .presets import PRESETS, get_config, preset_names
from . import hub  # noqa: F401  (registers our publisher: model.push_to_hub goes through hf_vision's card)

register_families()

# public name -> (module, attribute or None for the module itself), imported on first access
_LAZY: dict[str, tuple[str, str | None]] = {
    "convert": ("hf_vision.convert", None),
    "analysis": ("hf_vision.analysis", None),
    "from_pretrained": ("hf_vision.hub", "from_pretrained"),
    "push_folder": ("hf_vision.hub", "push_folder"),
    "push_to_hub": ("hf_vision.hub", "push_to_hub"),
    "optimize_for_cpu": ("hf_vision.optimize", "optimize_for_cpu"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'hf_vision' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"
__all__ = [
    "ViTConfig", "ViTModel", "ViTForImageClassification",
    "SwinConfig", "SwinModel", "SwinForImageClassification", "SwinBackbone",
    "HybridConfig", "HybridModel", "HybridForImageClassification",
    "MAEConfig", "MAEModel", "MAEForPreTraining",
    "get_config", "preset_names", "PRESETS", "convert",
    "from_pretrained", "push_to_hub", "push_folder", "optimize_for_cpu",
    "analysis",
]

"""Registration of every family with transformers' Auto classes (`register_families`, run by `import hf_vision`)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    BitImageProcessor,
    BitImageProcessorPil,
)
from transformers import models as _hf_models

# (config class, {Auto class name: model class}) for every family; a new family adds one entry.
FAMILIES: list[tuple[type, dict[str, type]]] = []


def _auto_class(name: str):
    import transformers

    return getattr(transformers, name)


# model_type of every family registered for AutoBackbone: the only configs our AutoBackbone fix applies to
BACKBONE_MODEL_TYPES: set[str] = set()


def _is_our_local_backbone(path: Any) -> bool:
    """A local folder whose config.json names one of our backbone model types."""
    config = Path(path) / "config.json" if isinstance(path, (str, os.PathLike)) else None
    if config is None or not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") in BACKBONE_MODEL_TYPES
    except (OSError, ValueError):
        return False


def _allow_local_dirs_in_auto_backbone() -> None:
    """Work around a transformers 5.24 bug in `AutoBackbone.from_pretrained`, for OUR configs only.

    transformers 5.24's `AutoBackbone.from_pretrained` asks the Hub whether the name is a repo before anything else,
    so a local folder (a `str` or a `Path`) fails validation. The method is a class attribute, so the fix has to be
    installed on transformers' AutoBackbone for the whole process; it lives here (hf_vision/auto.py, installed when
    a family with an AutoBackbone registers) and only ever changes the path for a local folder whose config.json
    names one of our backbone model types (BACKBONE_MODEL_TYPES): those go to the generic Auto loader, everything
    else (other libraries' backbones, Hub names) reaches transformers' own method unchanged. Idempotent; the one
    place where we touch a private transformers class (`_BaseAutoModelClass`). Remove it once transformers loads
    local backbone folders itself.
    """
    from transformers import AutoBackbone
    from transformers.models.auto.auto_factory import _BaseAutoModelClass

    original = AutoBackbone.from_pretrained.__func__  # defined on a private base class; bound, then unwrapped
    if getattr(original, "_hf_vision_local_dirs", False):
        return

    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        if _is_our_local_backbone(pretrained_model_name_or_path):
            return _BaseAutoModelClass.from_pretrained.__func__(cls, pretrained_model_name_or_path, *model_args,
                                                                **kwargs)
        return original(cls, pretrained_model_name_or_path, *model_args, **kwargs)

    from_pretrained._hf_vision_local_dirs = True
    from_pretrained._hf_vision_original = original
    from_pretrained.__doc__ = original.__doc__
    AutoBackbone.from_pretrained = classmethod(from_pretrained)


def register_family(config_cls: type, models: dict[str, type]) -> None:
    """Register a config, its models and the image processor with the Auto classes (idempotent: registering a
    config again replaces its FAMILIES entry instead of adding a second one)."""
    if "AutoBackbone" in models:
        BACKBONE_MODEL_TYPES.add(config_cls.model_type)
        _allow_local_dirs_in_auto_backbone()
    AutoConfig.register(config_cls.model_type, config_cls, exist_ok=True)
    for auto_name, model_cls in models.items():
        _auto_class(auto_name).register(config_cls, model_cls, exist_ok=True)
    AutoImageProcessor.register(
        config_cls, image_processor_classes={"pil": BitImageProcessorPil, "torchvision": BitImageProcessor},
        exist_ok=True,
    )
    FAMILIES[:] = [entry for entry in FAMILIES if entry[0] is not config_cls] + [(config_cls, dict(models))]


def register_families() -> None:
    """Register our four families (what `import hf_vision` runs; calling it again changes nothing)."""
    from hf_vision.modeling.hybrid.configuration_hybrid import HybridConfig
    from hf_vision.modeling.hybrid.modeling_hybrid import HybridForImageClassification, HybridModel
    from hf_vision.modeling.mae.configuration_mae import MAEConfig
    from hf_vision.modeling.mae.modeling_mae import MAEForPreTraining, MAEModel
    from hf_vision.modeling.swin.configuration_swin import SwinConfig
    from hf_vision.modeling.swin.modeling_swin import SwinBackbone, SwinForImageClassification, SwinModel
    from hf_vision.modeling.vit.configuration_vit import ViTConfig
    from hf_vision.modeling.vit.modeling_vit import ViTForImageClassification, ViTModel

    register_family(ViTConfig, {"AutoModel": ViTModel, "AutoModelForImageClassification": ViTForImageClassification})
    register_family(SwinConfig, {"AutoModel": SwinModel, "AutoModelForImageClassification": SwinForImageClassification,
                                 "AutoBackbone": SwinBackbone})
    register_family(HybridConfig, {"AutoModel": HybridModel,
                                   "AutoModelForImageClassification": HybridForImageClassification})
    register_family(MAEConfig, {"AutoModel": MAEModel, "AutoModelForPreTraining": MAEForPreTraining})


def model_class(config_cls: type, auto_name: str) -> type:
    """The model class registered for `config_cls` under `auto_name` (e.g. "AutoModelForImageClassification")."""
    for registered, models in FAMILIES:
        if registered is config_cls and auto_name in models:
            return models[auto_name]
    raise ValueError(f"no {auto_name} registered for {config_cls.__name__}; registered: "
                     f"{', '.join(f'{c.__name__}: {sorted(m)}' for c, m in FAMILIES)}")


def model_classes() -> list[type]:
    """Every registered model class (for tests and tooling)."""
    return [cls for _, models in FAMILIES for cls in models.values()]


__all__ = ["AutoModel", "AutoModelForImageClassification", "FAMILIES", "register_family", "register_families",
           "model_class", "model_classes"]
del _hf_models

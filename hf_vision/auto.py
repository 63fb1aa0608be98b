"""Registration of every family with transformers' Auto classes (runs on `import hf_vision`)."""
from __future__ import annotations

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


def _allow_local_dirs_in_auto_backbone() -> None:
    """transformers 5.24's `AutoBackbone.from_pretrained` asks the Hub whether the name is a repo before anything
    else, so a local folder (a `str` or a `Path`) fails validation; send local folders to the generic Auto loader.

    Idempotent; the one place where we touch a private transformers class (`_BaseAutoModelClass`).
    """
    import os

    from transformers import AutoBackbone
    from transformers.models.auto.auto_factory import _BaseAutoModelClass

    original = AutoBackbone.from_pretrained.__func__  # defined on a private base class; bound, then unwrapped
    if getattr(original, "_hf_vision_local_dirs", False):
        return

    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        if os.path.isdir(pretrained_model_name_or_path):
            return _BaseAutoModelClass.from_pretrained.__func__(cls, pretrained_model_name_or_path, *model_args,
                                                                **kwargs)
        return original(cls, pretrained_model_name_or_path, *model_args, **kwargs)

    from_pretrained._hf_vision_local_dirs = True
    from_pretrained.__doc__ = original.__doc__
    AutoBackbone.from_pretrained = classmethod(from_pretrained)


def register_family(config_cls: type, models: dict[str, type]) -> None:
    """Register a config, its models and the image processor with the Auto classes (idempotent)."""
    if "AutoBackbone" in models:
        _allow_local_dirs_in_auto_backbone()
    AutoConfig.register(config_cls.model_type, config_cls, exist_ok=True)
    for auto_name, model_cls in models.items():
        _auto_class(auto_name).register(config_cls, model_cls, exist_ok=True)
    AutoImageProcessor.register(
        config_cls, image_processor_classes={"pil": BitImageProcessorPil, "torchvision": BitImageProcessor},
        exist_ok=True,
    )
    FAMILIES.append((config_cls, models))


def model_classes() -> list[type]:
    """Every registered model class (for tests and tooling)."""
    return [cls for _, models in FAMILIES for cls in models.values()]


__all__ = ["AutoModel", "AutoModelForImageClassification", "FAMILIES", "register_family", "model_classes"]
del _hf_models

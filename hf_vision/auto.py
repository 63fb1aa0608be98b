"""Registration of every family with transformers' Auto classes (runs on `import hf_vision`)."""
from __future__ import annotations

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    ViTImageProcessor,
    ViTImageProcessorPil,
)
from transformers import models as _hf_models

# (config class, {Auto class name: model class}) for every family; a new family adds one entry.
FAMILIES: list[tuple[type, dict[str, type]]] = []


def _auto_class(name: str):
    import transformers

    return getattr(transformers, name)


def register_family(config_cls: type, models: dict[str, type]) -> None:
    """Register a config, its models and the image processor with the Auto classes (idempotent)."""
    AutoConfig.register(config_cls.model_type, config_cls, exist_ok=True)
    for auto_name, model_cls in models.items():
        _auto_class(auto_name).register(config_cls, model_cls, exist_ok=True)
    AutoImageProcessor.register(
        config_cls, image_processor_classes={"pil": ViTImageProcessorPil, "torchvision": ViTImageProcessor},
        exist_ok=True,
    )
    FAMILIES.append((config_cls, models))


def model_classes() -> list[type]:
    """Every registered model class (for tests and tooling)."""
    return [cls for _, models in FAMILIES for cls in models.values()]


__all__ = ["AutoModel", "AutoModelForImageClassification", "FAMILIES", "register_family", "model_classes"]
del _hf_models

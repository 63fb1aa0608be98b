"""Config validation that names the field and the accepted values, shared by every family's config."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .requirements import require_transformers

require_transformers()  # every config and model file imports this module: fail early and clearly on an old transformers

# torchvision's ImageNet statistics: the default image_mean/image_std of the families trained on ImageNet (MAE, Swin)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class CheckpointRefusedError(Exception):
    """A checkpoint that would load silently wrong (damaged weights, a head that does not fit, preprocessing that can
    only yield NaN). Deliberately neither ValueError nor RuntimeError: transformers' `pipeline()` catches those and
    retries with the next candidate class, which for our class names is transformers' own model, every weight random."""


def check_choice(field: str, value: Any, choices: Iterable[Any]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{field}={value!r} is not supported; accepted values: {', '.join(map(repr, choices))}")


def check_positive(**fields: float) -> None:
    for field, value in fields.items():
        if value is None or value <= 0:
            raise ValueError(f"{field}={value!r} must be a positive number")


def check_probability(**fields: float) -> None:
    for field, value in fields.items():
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{field}={value!r} must be in [0, 1)")


def check_divisible(field: str, value: int, by_field: str, by: int) -> None:
    if value % by:
        raise ValueError(f"{field}={value} must be divisible by {by_field}={by}")


def pair(size: int | Iterable[int], field: str = "image_size") -> tuple[int, int]:
    """An int or a (height, width) pair -> (height, width)."""
    if isinstance(size, int):
        return size, size
    size = tuple(size)
    if len(size) != 2 or not all(isinstance(s, int) for s in size):
        raise ValueError(f"{field}={size!r} must be an int or a (height, width) pair")
    return size


def check_common(config, architectures: Iterable[str]) -> None:
    """Fields every family shares that can only produce NaN or a silent mismatch (issue #16)."""
    check_positive(layer_norm_eps=config.layer_norm_eps)
    check_finite_positive("image_std", config.image_std)
    for name in config.architectures or ():
        check_choice(f"architectures entry ({config.model_type})", name, architectures)


def check_finite_positive(field: str, values: Iterable[float]) -> None:
    for value in values:
        if not 0.0 < value < float("inf"):
            raise ValueError(f"{field}={list(values)!r} must hold finite positive numbers (it divides the pixels)")


def check_saved_labels(config_dict: dict, *, overrides: dict | None = None) -> dict:
    """A config (saved or constructed) whose `num_labels` and `id2label` disagree is refused rather than silently
    resolved: transformers keeps the count and renames the labels LABEL_i, dropping the caller's names."""
    count, id2label = config_dict.get("num_labels"), config_dict.get("id2label")
    if count is not None and id2label and count != len(id2label):
        raise ValueError(f"num_labels={count} disagrees with id2label ({len(id2label)} entries); accepted: "
                         "num_labels equal to the number of id2label entries, or only one of the two")
    new_count = (overrides or {}).get("num_labels")
    if new_count is not None and "id2label" not in overrides and id2label and new_count != len(id2label):
        # from_pretrained(..., num_labels=N): a new label set, which the saved names cannot describe
        config_dict = {k: v for k, v in config_dict.items() if k not in ("id2label", "label2id")}
    return config_dict


def check_preprocessor(processor: dict, source: str) -> None:
    """A preprocessor_config.json shipped with the weights is part of the checkpoint: a zero, negative or non-finite
    std (or a non-finite mean) can only turn every input into inf/NaN, so loading the model refuses it."""
    for field in ("image_std", "image_mean"):
        values = processor.get(field)
        if values is None:
            continue
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        finite = all(isinstance(v, (int, float)) and abs(v) < float("inf") for v in values)
        if field == "image_std" and not (finite and all(v > 0 for v in values)):
            raise CheckpointRefusedError(
                f"{field}={values!r} in {source} must hold finite positive numbers (it divides the pixels)")
        if not finite:
            raise CheckpointRefusedError(f"{field}={values!r} in {source} must hold finite numbers")

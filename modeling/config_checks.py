"""Config validation that names the field and the accepted values, shared by every family's config."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .requirements import require_transformers

require_transformers()  # every config and model file imports this module: fail early and clearly on an old transformers


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

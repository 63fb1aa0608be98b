"""The oldest transformers this code runs on, checked when a shipped file is imported.

A checkpoint's remote code runs in whatever transformers the user has; on one too old it would fail deep inside
loading with an unrelated AttributeError. `MIN_TRANSFORMERS` is the floor found by loading saved checkpoints of
every family in that version (tests/test_floor.py); pyproject's `transformers>=` and the `hf_vision_min_transformers`
field of every saved config.json repeat it.
"""
from __future__ import annotations

import re

import transformers

MIN_TRANSFORMERS = "5.10.1"


def release(version: str) -> tuple[int, ...]:
    """The release numbers only, "5.10.1.dev0" -> (5, 10, 1): modeling/ imports torch and transformers alone (no
    `packaging`), so a pre-release of the floor version itself passes the check."""
    match = re.match(r"\d+(\.\d+)*", version)
    if match is None:
        raise ValueError(f"cannot read the version {version!r}")
    return tuple(int(part) for part in match.group(0).split("."))


def require_transformers(minimum: str | None = None) -> None:
    """Raise ImportError naming the installed and required versions when transformers is older than the floor."""
    minimum = minimum or MIN_TRANSFORMERS
    installed = transformers.__version__
    if release(installed) < release(minimum):
        raise ImportError(
            f"this hf-vision model code needs transformers>={minimum}, but transformers=={installed} is installed; "
            f"upgrade with: pip install 'transformers>={minimum},<6'"
        )

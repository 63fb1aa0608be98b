"""Where hf_vision keeps what it computes once per machine (the embedded dataset, measured kernel choices)."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """`$HF_VISION_CACHE`, default ~/.cache/hf_vision."""
    return Path(os.environ.get("HF_VISION_CACHE", Path.home() / ".cache" / "hf_vision"))

"""Local `evaluate` metric modules (loadable offline: `evaluate.load(TOP_K_ACCURACY)`)."""
from __future__ import annotations

from pathlib import Path

TOP_K_ACCURACY = str(Path(__file__).with_name("top_k_accuracy.py"))

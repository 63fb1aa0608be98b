"""Checks and parsing that both training entry points share (pretrain.py and finetune.py import them from here,
not from each other: tests/test_layout.py keeps the two entry modules apart)."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Any


def parse_overrides(text: str | None) -> dict[str, Any]:
    """'a=1,b=x,c=(1,2)' -> {"a": 1, "b": "x", "c": (1, 2)} (Python literals, else strings)."""
    out: dict[str, Any] = {}
    if not text:
        return out
    for part in _split_top_level(text):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"config_overrides entry {part!r} is not key=value")
        try:
            out[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = value.strip()
    return out


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return [p for p in parts + [current] if p.strip()]


def check_output_dir(output_dir: str | Path, *, overwrite: bool, resuming: bool) -> None:
    """A non-empty output folder is written into only when resuming or with --overwrite_output_dir."""
    folder = Path(output_dir)
    if resuming or overwrite or not folder.is_dir() or not any(folder.iterdir()):
        return
    raise FileExistsError(f"--output_dir {folder} is not empty: pass --overwrite_output_dir to write into it, "
                          "--resume_from_checkpoint latest to continue the run there, or another --output_dir")


def check_same_max_steps(saved: int | None, requested: int, checkpoint: str | Path) -> None:
    """The learning-rate schedule spans the run's max_steps; resuming with another would bend it silently."""
    if saved is not None and saved != requested:
        raise ValueError(
            f"--max_steps {requested}: {checkpoint} belongs to a run of max_steps={saved}, and its learning-rate "
            f"schedule (warm-up and decay) spans those {saved} steps; resume with --max_steps {saved} (or the same "
            "--num_train_epochs), or start a new run from its weights (--model <checkpoint folder>)")

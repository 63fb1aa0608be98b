"""`key=value` overrides from the command line (`--config`, `--config_overrides`) -> a dict of typed values.

One parser for every script: values are Python literals (`(0.5, 0.5, 0.5)`, `True`, `'x'`) or JSON ones (`false`,
`null`, `{"a": true}`), else kept as strings; commas inside brackets do not split entries, so
`depths=[2,2,6,2],pooling=gap` is two overrides. It sits at the bottom of hf_vision's layers (it imports nothing
of ours), so the training scripts and the benchmark can both use it.
"""
from __future__ import annotations

import ast
import json
from collections.abc import Iterable
from typing import Any


def parse_overrides(items: str | Iterable[str] | None) -> dict[str, Any]:
    """'a=1,b=x,c=(1,2)' (or a list of such strings, later ones winning) -> {"a": 1, "b": "x", "c": (1, 2)}."""
    if not items:
        return {}
    out: dict[str, Any] = {}
    for text in [items] if isinstance(items, str) else items:
        for part in _split_top_level(text):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"config override {part.strip()!r} is not key=value (e.g. hidden_size=32)")
            out[key.strip()] = _value(value.strip())
    return out


def _value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _split_top_level(text: str) -> list[str]:
    """Split on the commas outside brackets; empty entries are dropped."""
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

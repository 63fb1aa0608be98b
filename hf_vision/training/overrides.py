"""`--config_overrides 'k=v,k=v'`: the one parser of config overrides (the training scripts and the benchmark CLI).

Values are Python literals (`384`, `0.2`, `(0.5, 0.5, 0.5)`, `True`), else JSON (`true`, `null`), else strings.
Commas inside brackets do not split entries.
"""
from __future__ import annotations

import ast
import json
from typing import Any


def parse_overrides(text: str | list[str] | None) -> dict[str, Any]:
    """'a=1,b=x,c=(1,2)' -> {"a": 1, "b": "x", "c": (1, 2)}; a list of such strings merges left to right."""
    out: dict[str, Any] = {}
    for item in [text] if isinstance(text, str) else (text or []):
        for part in _split_top_level(item):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"config_overrides entry {part!r} is not key=value")
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

"""The remote-code packager: a model's source, flattened into one folder, so that a checkpoint loads anywhere.

The Hub's remote-code loader only follows single-dot relative imports in one folder, so every file a model
reaches through relative imports is copied beside the weights with `from ..layers.x import` rewritten to
`from .x import` (basenames are unique across modeling/, which tests/test_layout.py checks).
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import sys
from pathlib import Path

from .save_safety import replace_file

_RELATIVE_IMPORT = re.compile(r"^(\s*from\s+)(\.+)([\w.]*)(\s+import\b)", re.MULTILINE)


def _module_source_files(module_name: str) -> dict[str, Path]:
    """Every file reachable from `module_name` through relative imports, keyed by its (unique) basename."""
    found: dict[str, Path] = {}
    pending = [module_name]
    while pending:
        name = pending.pop()
        module = sys.modules.get(name) or importlib.import_module(name)
        path = Path(inspect.getsourcefile(module))
        if path.name in found:
            if found[path.name] != path:
                raise RuntimeError(f"two source files share the basename {path.name}: {found[path.name]}, {path}")
            continue
        found[path.name] = path
        package = module.__package__ or name.rpartition(".")[0]
        for _, dots, target, _ in _RELATIVE_IMPORT.findall(path.read_text()):
            pending.append(importlib.util.resolve_name(dots + target, package))
    return found


def _flatten_imports(source: str) -> str:
    """`from ..layers.attention import X` -> `from .attention import X` (all files land in one folder)."""
    return _RELATIVE_IMPORT.sub(lambda m: f"{m.group(1)}.{m.group(3).rpartition('.')[2]}{m.group(4)}", source)


def remote_code_sources(model_cls: type, config_cls: type) -> dict[str, str]:
    """File name -> flattened source of `model_cls`, `config_cls` and everything they import relatively."""
    files = _module_source_files(model_cls.__module__)
    files.update(_module_source_files(config_cls.__module__))
    return {name: _flatten_imports(path.read_text()) for name, path in sorted(files.items())}


def write_remote_code(model_cls: type, config_cls: type, save_directory: str | os.PathLike) -> list[str]:
    """Copy the flattened source of `model_cls` and `config_cls` (and what they import) into the folder."""
    sources = remote_code_sources(model_cls, config_cls)
    for name, text in sources.items():
        replace_file(Path(save_directory) / name, text.encode())
    return list(sources)


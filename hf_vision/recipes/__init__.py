"""Training recipes as files: `pretrain_<name>.py` for scripts/pretrain_mae.py, `finetune_<name>.py` for
scripts/finetune.py, chosen with `--recipe <name>`; any flag given on the command line overrides the recipe.

Each file opens with the command that runs it and the result it gave (or "not yet measured here"), then holds
plain dicts: MODEL (a preset name plus config fields; None: the script's default model) and ARGS (defaults of the
script's arguments). A fine-tuning recipe also has SETTINGS (augmentation and regularisation; `linear_probe`).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TASKS = ("pretrain", "finetune")


@dataclass(frozen=True)
class Recipe:
    name: str
    task: str
    model: dict[str, Any] | None
    args: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)


def recipe_names(task: str) -> list[str]:
    if task not in TASKS:
        raise ValueError(f"task={task!r} is not one of {', '.join(TASKS)}")
    return sorted(p.stem[len(task) + 1:] for p in Path(__file__).parent.glob(f"{task}_*.py"))


def load_recipe(task: str, name: str) -> Recipe:
    """The recipe `name` of `task` ("pretrain" or "finetune")."""
    names = recipe_names(task)
    if name not in names:
        raise ValueError(f"recipe={name!r} is not a {task} recipe; choose one of {', '.join(names)}")
    module = importlib.import_module(f"{__name__}.{task}_{name}")
    return Recipe(name=name, task=task, model=getattr(module, "MODEL", None), args=dict(module.ARGS),
                  settings=dict(getattr(module, "SETTINGS", {})))

"""What both training scripts compute the same way: the batch / learning-rate / steps arithmetic, the launch
check, the model card, and the run's resolved arguments."""
from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger("hf_vision.training")


@dataclass(frozen=True)
class Schedule:
    """Steps and learning rate of a run, from its batch settings and the data size."""

    effective_batch_size: int
    max_steps: int
    learning_rate: float
    warmup_steps: int | float


def plan_schedule(*, per_device_batch_size: int, gradient_accumulation_steps: int, world_size: int,
                  max_steps: int | None, num_train_epochs: float, num_examples: int | None, dataset_name: str,
                  learning_rate: float | None, base_learning_rate: float | None,
                  warmup_steps: float = 0) -> Schedule:
    """MAE's rule lr = base_lr * effective batch / 256 (when base_learning_rate is set and learning_rate is not);
    max_steps from epochs when not given; warm-up as steps, or a fraction (< 1) of max_steps."""
    effective = per_device_batch_size * gradient_accumulation_steps * world_size
    if not max_steps or max_steps <= 0:
        if not num_examples:
            raise ValueError(f"{dataset_name!r} does not say how many examples it has: pass --max_steps")
        max_steps = max(1, math.ceil(num_train_epochs * num_examples / effective))
    lr = learning_rate or (base_learning_rate * effective / 256 if base_learning_rate is not None else None)
    if lr is None:
        raise ValueError("learning_rate and base_learning_rate are both unset: set one of them")
    warmup = int(warmup_steps * max_steps) if 0 < warmup_steps < 1 else int(warmup_steps)
    return Schedule(effective, max_steps, lr, warmup)


def check_launch(world_size: int, *, flag: str) -> None:
    """Several launched processes that do not form one group would each train alone on the same --output_dir."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and world_size != launched:
        raise RuntimeError(
            f"launched as {launched} processes, but the training library formed a group of {world_size} (world_size="
            f"{world_size}): each would train alone and all would write the same --output_dir. On a machine without "
            f"a GPU pass {flag} so that the processes train together on CPU (gloo), or launch them where every "
            "process sees its own accelerator")


def write_run_args(folder: Path, resolved: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run_args.json").write_text(json.dumps(resolved, indent=2, default=str) + "\n")


def write_card(folder: Path, dataset_name: str, *, fallback_title: str, **card_kwargs: Any) -> None:
    """The model card README.md of a finished run; documentation only, so a failure never loses the run."""
    try:
        from ..model_card import card_for_folder, data_statement

        datasets, local_data = data_statement(dataset_name)
        card_for_folder(folder, datasets=datasets, local_data=local_data, **card_kwargs).save(folder / "README.md")
    except Exception as err:
        logger.warning("could not write the model card: %s", err)
        (folder / "README.md").write_text(f"# {fallback_title}\n\nSee all_results.json.\n")

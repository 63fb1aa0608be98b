"""Run a table's rows through the package's own training entry points, one (row, seed) at a time, resumably.

A classifier row is one `finetune` run of a model trained from scratch; an MAE row is one `pretrain` run followed
by two `finetune` runs from its checkpoint (end-to-end fine-tuning, and the linear probe). There is no training
loop here. Every (row, seed) writes `result.json` into its own folder last; a repeated command reuses it when its
plan (steps, batch, learning rates, config, dataset) is unchanged and re-runs it otherwise.

Every run uses finetune's light "demo" recipe whatever the dataset (the rows must differ only in their switch, and
MAE's ImageNet recipe is made for hundreds of epochs), and evaluates on the dataset's validation or test split.
Cost per row: FLOPs per image of one training step (forward + backward, `torch.utils.flop_counter`) per phase,
total training FLOPs (per-image FLOPs x steps x batch), and the wall and CPU (process) time of the whole run.
"""
from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from .tables import Row, Table

logger = logging.getLogger("hf_vision.ablation")

BATCH_SIZE = 64
QUICK_STEPS = {"train": 2, "pretrain": 2, "finetune": 2, "probe": 2}
QUICK_BATCH_SIZE = 16
QUICK_EVAL_SAMPLES = 32
QUICK_SHUFFLE_BUFFER = 64  # a full-dataset buffer would read a whole epoch before the first of 2 steps
PRETRAIN_LR = 1e-3  # AdamW (0.9, 0.95) as the package's MAE recipe; the base-lr rule gives 4e-5 at batch 64: too slow
FINETUNE_LR = 1e-3
PROBE_LR = 1e-2  # BatchNorm + Linear head on a frozen encoder (AdamW)
RESULT = "result.json"


@dataclass
class RunOptions:
    """What the command line chooses. budget scales every phase's default steps (1 = the tables' defaults)."""

    output_dir: str = "outputs/ablate"
    dataset: str | None = None  # None: the embedded digits
    seeds: int = 3
    budget: float = 1.0
    quick: bool = False
    rows: list[str] | None = None  # only these rows (default: all)
    progress: bool = True

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise ValueError(f"seeds={self.seeds} must be >= 1")
        if not self.budget > 0:
            raise ValueError(f"budget={self.budget} must be > 0 (a multiple of the default steps)")


def slug(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-." else "-" for c in name.lower())
    return "-".join(p for p in keep.split("-") if p) or "row"


def overrides_text(config: dict[str, Any]) -> str:
    """{"a": 1, "b": (2, 3)} -> "a=1,b=(2, 3)" for `config_overrides` (read back with ast.literal_eval)."""
    return ",".join(f"{k}={v!r}" for k, v in config.items())


def plan_for(table: Table, row: Row, options: RunOptions) -> dict[str, Any]:
    """Everything that decides a (row, seed)'s result; a stored result is reused only under the same plan."""
    if options.quick:
        steps = {phase: QUICK_STEPS[phase] for phase in table.steps}
    else:
        steps = {phase: max(1, round(n * options.budget * row.steps_scale)) for phase, n in table.steps.items()}
    plan: dict[str, Any] = {
        "kind": row.kind, "preset": row.preset, "config": {k: list(v) if isinstance(v, tuple) else v
                                                            for k, v in row.config.items()},
        "steps": steps, "batch_size": QUICK_BATCH_SIZE if options.quick else BATCH_SIZE,
        "dataset": options.dataset or "digits", "max_eval_samples": QUICK_EVAL_SAMPLES if options.quick else None,
        "shuffle_buffer": QUICK_SHUFFLE_BUFFER if options.quick else 2048,
    }
    if row.kind == "mae":
        plan.update(augmentation=row.augmentation, pretrain_lr=PRETRAIN_LR, finetune_lr=FINETUNE_LR, probe_lr=PROBE_LR)
    else:
        plan.update(learning_rate=row.learning_rate or table.learning_rate)
    return plan


def plan_key(plan: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------------- measuring
def train_flops_per_image(model: torch.nn.Module, loss_fn: Callable[[torch.nn.Module], torch.Tensor],
                          batch: int) -> float:
    """FLOPs of one training step's forward + backward, per image, as torch's FLOP counter measures them."""
    from torch.utils.flop_counter import FlopCounterMode

    model.train()
    with FlopCounterMode(display=False) as counter:
        loss_fn(model).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch


def _labels(num_labels: int) -> dict[str, Any]:
    names = [str(i) for i in range(num_labels)]
    return dict(num_labels=num_labels, id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)},
                problem_type="single_label_classification")


def classifier_flops(name: str, config: dict[str, Any], *, num_labels: int, linear_probe: bool = False,
                     batch: int = 8) -> float:
    from ..training.finetune import build_classifier, configure_trainable

    overrides = dict(config)
    if linear_probe:
        overrides.setdefault("classifier_norm", "batchnorm")
    model = build_classifier(name, labels=_labels(num_labels), overrides=overrides)
    configure_trainable(model, linear_probe=linear_probe, train_last_blocks=None)
    size = model.config.image_size
    height, width = (size, size) if isinstance(size, int) else size
    pixels = torch.randn(batch, model.config.num_channels, height, width)
    labels = torch.arange(batch) % num_labels
    return train_flops_per_image(model, lambda m: m(pixel_values=pixels, labels=labels).loss, batch)


def mae_flops(config: dict[str, Any], *, batch: int = 8) -> float:
    from ..training.pretrain import build_mae

    model = build_mae(None, dict(config))
    height, width = model.config.grid_size
    pixels = torch.randn(batch, model.config.num_channels, height * model.config.patch_size,
                         width * model.config.patch_size)
    noise = torch.rand(batch, height * width, generator=torch.Generator().manual_seed(0))
    return train_flops_per_image(model, lambda m: m(pixels, noise=noise).loss, batch)


# ------------------------------------------------------------------------------------------------- running
@contextlib.contextmanager
def _quiet(log_path: Path) -> Iterator[None]:
    """The inner runs' prints and progress bars go to the run's log file (our own bar stays on the terminal), and
    transformers' load reports (a fresh head is "MISSING" by design here) are not shown."""
    from transformers.utils import logging as hf_logging

    log_path.parent.mkdir(parents=True, exist_ok=True)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with log_path.open("a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            yield
    finally:
        hf_logging.set_verbosity(verbosity)


def _training_args(output_dir: Path, *, steps: int, batch: int, lr: float, seed: int):
    from transformers import TrainingArguments

    from ..training.finetune import cli_defaults

    return TrainingArguments(**{
        **cli_defaults(), "output_dir": str(output_dir), "max_steps": steps, "per_device_train_batch_size": batch,
        "learning_rate": lr, "seed": seed, "logging_steps": max(steps, 1), "disable_tqdm": True,
        "save_strategy": "no", "report_to": "none",
    })


def _finetune(model: str, plan: dict[str, Any], run_dir: Path, *, seed: int, steps: int, lr: float,
              config: dict[str, Any] | None = None, linear_probe: bool = False) -> dict[str, float]:
    from ..training.finetune import DataArguments, ModelArguments, finetune

    model_args = ModelArguments(model=model, config_overrides=overrides_text(config) if config else None,
                                linear_probe=linear_probe, recipe="demo")
    data_args = DataArguments(dataset=plan["dataset"], max_eval_samples=plan["max_eval_samples"],
                              shuffle_buffer=plan["shuffle_buffer"], overwrite_output_dir=True)
    metrics = finetune(model_args, data_args, _training_args(run_dir, steps=steps, batch=plan["batch_size"], lr=lr,
                                                             seed=seed))
    if "eval_top1_accuracy" not in metrics:
        raise RuntimeError(f"{run_dir}: the run reported no eval_top1_accuracy (metrics: {sorted(metrics)})")
    return metrics


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - wall, time.process_time() - cpu


def run_classifier(row: Row, plan: dict[str, Any], run_dir: Path, *, seed: int, num_labels: int) -> dict[str, Any]:
    steps = plan["steps"]["train"]
    metrics, wall, cpu = _timed(lambda: _finetune(row.preset, plan, run_dir / "train", seed=seed, steps=steps,
                                                  lr=plan["learning_rate"], config=row.config))
    flops = classifier_flops(row.preset, row.config, num_labels=num_labels)
    return {"metrics": {"top1": metrics["eval_top1_accuracy"]},
            "flops_per_image": {"train": flops}, "train_flops": flops * steps * plan["batch_size"],
            "wall_s": {"train": wall}, "cpu_s": {"train": cpu}}


def run_mae(row: Row, plan: dict[str, Any], run_dir: Path, *, seed: int, num_labels: int) -> dict[str, Any]:
    from ..training.pretrain import PretrainArguments, pretrain

    steps, batch = plan["steps"], plan["batch_size"]
    pretrain_dir = run_dir / "pretrain"
    args = PretrainArguments(
        config_overrides=overrides_text(row.config), dataset=plan["dataset"], output_dir=str(pretrain_dir),
        max_steps=steps["pretrain"], per_device_batch_size=batch, learning_rate=PRETRAIN_LR, seed=seed,
        report_to="none", overwrite_output_dir=True, num_reconstructions=4, shuffle_buffer=plan["shuffle_buffer"],
        logging_steps=max(steps["pretrain"], 1), augmentation=row.augmentation,
    )
    summary, pre_wall, pre_cpu = _timed(lambda: pretrain(args))
    encoder = str(pretrain_dir)
    ft, ft_wall, ft_cpu = _timed(lambda: _finetune(encoder, plan, run_dir / "finetune", seed=seed,
                                                   steps=steps["finetune"], lr=FINETUNE_LR))
    lin, lin_wall, lin_cpu = _timed(lambda: _finetune(encoder, plan, run_dir / "probe", seed=seed,
                                                      steps=steps["probe"], lr=PROBE_LR, linear_probe=True))
    flops = {"pretrain": mae_flops(row.config),
             "finetune": classifier_flops(encoder, {}, num_labels=num_labels),
             "probe": classifier_flops(encoder, {}, num_labels=num_labels, linear_probe=True)}
    return {"metrics": {"finetune_top1": ft["eval_top1_accuracy"], "probe_top1": lin["eval_top1_accuracy"]},
            "pretrain_loss": summary.get("final_loss"),
            "flops_per_image": flops,
            "train_flops": sum(flops[phase] * steps[phase] * batch for phase in flops),
            "wall_s": {"pretrain": pre_wall, "finetune": ft_wall, "probe": lin_wall},
            "cpu_s": {"pretrain": pre_cpu, "finetune": ft_cpu, "probe": lin_cpu}}


def _num_labels(dataset: str | None) -> int:
    from ..data import available_splits, load_image_source

    splits = available_splits(dataset)
    if not any(s in splits for s in ("validation", "test")):
        raise ValueError(f"dataset={dataset!r} has splits {splits}: the ablations evaluate on a 'validation' or "
                         "'test' split (for an image folder: train/ and test/ subfolders, one folder per class)")
    source = load_image_source(dataset, "train")
    if not source.class_names:
        raise ValueError(f"dataset={dataset!r}: the labels are not a ClassLabel feature (class names unknown)")
    return len(source.class_names)


def run_one(table: Table, row: Row, seed: int, options: RunOptions, num_labels: int) -> tuple[dict[str, Any], bool]:
    """(result, reused): a stored result under the same plan, else a fresh run (its folder is cleared first)."""
    plan = plan_for(table, row, options)
    run_dir = Path(options.output_dir) / table.name / "runs" / slug(row.name) / f"seed{seed}"
    stored = run_dir / RESULT
    if stored.is_file():
        result = json.loads(stored.read_text())
        if result.get("plan_key") == plan_key(plan):
            return result, True
        logger.warning("%s: the plan changed since it ran (steps, batch, data or config); running it again", run_dir)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    runner = run_mae if row.kind == "mae" else run_classifier
    wall, cpu = time.perf_counter(), time.process_time()
    with _quiet(run_dir / "log.txt"):
        result = runner(row, plan, run_dir, seed=seed, num_labels=num_labels)
    result.update(row=row.name, seed=seed, plan=plan, plan_key=plan_key(plan),
                  total_wall_s=time.perf_counter() - wall, total_cpu_s=time.process_time() - cpu,
                  torch_threads=torch.get_num_threads(), cpu_count=os.cpu_count())
    tmp = stored.with_name(f".{RESULT}.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, stored)  # written last and atomically: only a finished (row, seed) counts
    return result, False


def run_table(table: Table, options: RunOptions) -> dict[str, Any]:
    """Run (or resume) every selected (row, seed); returns the table's results (see report.table_results)."""
    rows = [table.row(name) for name in options.rows] if options.rows else list(table.rows)
    if options.rows and table.reference not in options.rows:
        rows.insert(0, table.row(table.reference))  # verdicts compare with the reference row
    seeds = 1 if options.quick else options.seeds
    with _long_lived_objects_frozen():
        return _run_table(table, options, rows, seeds)


@contextlib.contextmanager
def _long_lived_objects_frozen() -> Iterator[None]:
    """The Trainer and Accelerate call gc.collect() several times per run; with the long-lived objects of torch,
    transformers and datasets tracked, each call costs about a second. Frozen for the table's runs, those calls are
    cheap; objects created later are collected as usual. Afterwards they are tracked again (unless the caller had
    frozen objects itself: then everything stays frozen, as the caller chose)."""
    caller_froze = gc.get_freeze_count() > 0
    gc.freeze()
    try:
        yield
    finally:
        if not caller_froze:
            gc.unfreeze()


def _run_table(table: Table, options: RunOptions, rows: list[Row], seeds: int) -> dict[str, Any]:
    from tqdm.auto import tqdm

    from .report import table_results, write_table

    num_labels = _num_labels(options.dataset)
    jobs = [(row, seed) for row in rows for seed in range(seeds)]
    runs, reused = [], 0
    wall, cpu = time.perf_counter(), time.process_time()
    bar = tqdm(jobs, desc=table.name, unit="run", disable=not options.progress)
    for row, seed in bar:
        bar.set_postfix_str(f"{row.name} seed {seed}")
        result, was_stored = run_one(table, row, seed, options, num_labels)
        runs.append(result)
        reused += was_stored
    bar.close()
    results = table_results(table, rows, runs, options=asdict(options), seeds=seeds,
                            session={"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
                                     "runs": len(jobs), "reused": reused})
    write_table(Path(options.output_dir), table, results)
    return results

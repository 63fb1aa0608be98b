"""MAE pre-training with Accelerate: one loop from a laptop core to many GPUs.

Reads as build -> loop -> finish: `build_run` makes the accelerator, model, data stream, optimizer and schedule
(and restores a checkpoint); `train_one_step` is one optimizer step over gradient-accumulation micro-batches;
`finish` saves the model, the reconstruction grid, the results and the card. Settings left unset come from a
recipe file (hf_vision/recipes/pretrain_<name>.py; `--recipe demo` by default, `--recipe mae` for the paper's).

Recipe (He et al. 2021): AdamW betas (0.9, 0.95), weight decay 0.05 except norms, biases, tokens and position
tables; lr = base_lr * effective batch / 256; linear warm-up then cosine; RandomResizedCrop(0.2, 1) + flip.

Exact resume. A checkpoint is written only after an optimizer step (a gradient-accumulation boundary) with
`Accelerator.save_state` (model, optimizer, per-process RNG), plus the scheduler and the run state of
hf_vision.training.run_state (every rank's data position, the completion mark). The masking noise comes from a
generator seeded by (seed, step, micro-step, rank), augmentations are seeded per record, and the stream re-reads to
its saved position, so an interrupted-then-resumed run computes the same losses as an uninterrupted one.

Safe checkpoints. Each is written to a hidden temporary folder and renamed into place (a rename is atomic), so
a crash mid-write never damages the previous one; old checkpoints are rotated out only after the new one
exists (Accelerate's `total_limit` deletes first), each renamed aside before it is deleted. `latest` with no
checkpoint yet starts from step 0. A non-finite loss stops the run before the bad update,
naming the last good checkpoint (without a GradScaler, as on CPU or in bf16, nothing else would notice).

Several processes: without an accelerator the run is in CPU mode, where Accelerate joins torchrun's (or accelerate
launch --multi_gpu's) processes into one gloo group; a launch whose processes would each train alone is refused.
Only the main process writes shared files and the summary.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ..data import Collate, ImageStream, PreprocessSpec, StreamLoader, available_splits, eval_transform, \
    load_image_source, pretrain_transform
from ..data.transforms import PRETRAIN_AUGMENTATIONS
from ..optimize import adamw, optimize_for_cpu
from ..recipes import load_recipe
from . import run_state
from .core import Schedule, check_launch, plan_schedule, write_card, write_run_args
from ..overrides import parse_overrides
from .run_state import PRETRAIN, check_output_dir, check_same_max_steps

logger = logging.getLogger("hf_vision.training")

CHECKPOINT_PREFIX = PRETRAIN.prefix


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the last good checkpoint."""


@dataclass
class PretrainArguments:
    recipe: str = field(default="demo", metadata={
        "help": "Training recipe (hf_vision/recipes/pretrain_<name>.py): demo (a small MAE on the embedded digits) "
                "or mae (the paper's ViT-B/16); the options below that are left unset come from it."})
    model: str | None = field(default=None, metadata={
        "help": "MAE preset (e.g. mae-vit-base-patch16) or checkpoint folder/Hub name. Default: the recipe's "
                "model (demo: a small MAE for the embedded digits)."})
    config_overrides: str | None = field(default=None, metadata={"help": "'k=v,k=v' config overrides."})
    dataset: str | None = field(default=None, metadata={
        "help": "Hub name (streamed), local folder/file (imagefolder, parquet, webdataset), or 'digits'."})
    dataset_config: str | None = None
    train_split: str = "train"
    eval_split: str | None = field(default=None, metadata={
        "help": "Held-out split for the reconstruction grid (default: validation, else test, else train)."})
    image_column: str | None = None
    output_dir: str = "outputs/pretrain_mae"
    max_steps: int | None = field(default=None, metadata={"help": "Optimizer steps (overrides epochs)."})
    num_train_epochs: float | None = field(default=None, metadata={"help": "(recipe; demo: 30)"})
    per_device_batch_size: int | None = field(default=None, metadata={"help": "(recipe; demo: 128)"})
    gradient_accumulation_steps: int = 1
    base_learning_rate: float | None = field(default=None, metadata={"help": "(recipe; demo: 1.5e-4)"})
    learning_rate: float | None = field(default=None, metadata={"help": "Absolute lr (overrides the base rule)."})
    weight_decay: float | None = field(default=None, metadata={"help": "(recipe; demo: 0.05)"})
    warmup_steps: float | None = field(default=None, metadata={
        "help": "Steps, or a fraction (< 1) of max_steps (recipe; demo: 0.05)."})
    max_grad_norm: float | None = field(default=None, metadata={"help": "Clip the gradient norm (off: MAE)."})
    mixed_precision: str | None = field(default=None, metadata={
        "help": "no, bf16 or fp16 (default: accelerate launch's --mixed_precision, else no)."})
    checkpointing_steps: int = field(default=0, metadata={"help": "Save every N steps (0: only at the end)."})
    checkpoints_total_limit: int = 2
    resume_from_checkpoint: str | None = field(default=None, metadata={"help": "A checkpoint path, or 'latest'."})
    stop_after_steps: int | None = field(default=None, metadata={
        "help": "End this run after N total steps (schedule still spans max_steps), e.g. for a wall-clock-limited "
                "job slot; continue later with --resume_from_checkpoint latest."})
    seed: int = 0
    logging_steps: int = 10
    shuffle_buffer: int = 2048
    dataloader_num_workers: int = 0
    report_to: str = field(default="auto", metadata={"help": "auto (tensorboard if installed), none, or a tracker."})
    mask_ratio: float | None = None
    augmentation: str = field(default="crop-random", metadata={
        "help": "Pre-training augmentation (MAE Table 1e): crop-random (the paper's: random-size crop + flip), "
                "crop-fixed, crop-color (+ colour jitter) or none."})
    norm_pix_loss: bool | None = None
    num_reconstructions: int = 8
    log_example_keys: bool = field(default=False, metadata={
        "help": "Write the ids of the examples each rank consumed to example_keys_rank<r>.txt (audits)."})
    cpu: bool = field(default=False, metadata={
        "help": "Run on CPU even when an accelerator is present (without one, CPU is the default: several CPU "
                "processes then form one gloo group)."})
    overwrite_output_dir: bool = field(default=False, metadata={
        "help": "Write into a non-empty --output_dir (its old checkpoints are removed); not needed to resume."})
    optimize_for_cpu: bool = field(default=True, metadata={
        "help": "On CPU, train with hf_vision.optimize_for_cpu (oneDNN Linear); --no_optimize_for_cpu turns it "
                "off. The saved model is the same either way."})
    push_to_hub: bool = False
    hub_model_id: str | None = None




def resolve_args(args: PretrainArguments) -> PretrainArguments:
    """The arguments with every option left unset (None) taken from the recipe file."""
    if args.augmentation not in PRETRAIN_AUGMENTATIONS:
        raise ValueError(f"--augmentation {args.augmentation!r} is not one of {', '.join(PRETRAIN_AUGMENTATIONS)}")
    recipe = load_recipe("pretrain", args.recipe)
    unset = {k: v for k, v in recipe.args.items() if getattr(args, k) is None}
    return replace(args, **unset)


# --------------------------------------------------------------------------------------------------- building
def build_mae(name: str | None, overrides: dict[str, Any], default: dict[str, Any] | None = None):
    """A preset, a checkpoint folder or Hub name, or (name None) the recipe's `default` model."""
    from ..presets import PRESETS, get_config, preset_names
    from hf_vision.modeling.mae.configuration_mae import MAEConfig
    from hf_vision.modeling.mae.modeling_mae import MAEForPreTraining

    if name is None:
        fields_ = dict(default or load_recipe("pretrain", "demo").model)
        return MAEForPreTraining(get_config(fields_.pop("preset"), **{**fields_, **overrides}))
    if name in PRESETS:
        config = get_config(name, **overrides)
        if not isinstance(config, MAEConfig):
            raise ValueError(f"--model {name!r} is not an MAE preset; choose one of "
                             f"{', '.join(n for n in preset_names() if n.startswith('mae'))}")
        return MAEForPreTraining(config)
    return MAEForPreTraining.from_pretrained(name, **overrides)


def no_decay_param_groups(model, weight_decay: float) -> list[dict[str, Any]]:
    """MAE's two groups: decay on weights, none on norms, biases, tokens and position tables."""
    from .param_groups import param_groups

    return [{k: v for k, v in g.items() if k not in ("names", "layer_id", "lr_scale")}
            for g in param_groups(model, weight_decay=weight_decay, layer_decay=1.0)]


def cosine_with_warmup(optimizer, warmup: int, total: int):
    from transformers import get_cosine_schedule_with_warmup

    return get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=warmup, num_training_steps=total)


def _trackers(report_to: str) -> list[str]:
    if report_to == "none":
        return []
    if report_to == "auto":
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            return []
        return ["tensorboard"]
    return [t.strip() for t in report_to.split(",") if t.strip()]


def make_accelerator(args: PretrainArguments, output_dir: Path, trackers: list[str]):
    """The Accelerator, after the launch and --output_dir checks; the output folder cleaned of debris."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    # Accelerate keeps one process-wide state; a second run in the same process (a notebook, a test after a
    # Trainer) with other settings would be refused. The only private call here: forget the old settings,
    # keep the process group.
    AcceleratorState._reset_state(reset_partial_state=False)
    resuming = bool(args.resume_from_checkpoint)
    check_output_dir(output_dir, overwrite=args.overwrite_output_dir, resuming=resuming)
    # Without an accelerator, CPU mode: only then does Accelerate join torchrun's (or accelerate launch
    # --multi_gpu's) processes into one gloo group; otherwise each would train alone with world size 1.
    cpu = args.cpu or not torch.accelerator.is_available()
    accelerator = Accelerator(mixed_precision=args.mixed_precision, log_with=trackers or None,
                              project_dir=str(output_dir), cpu=cpu)
    check_launch(accelerator.num_processes, flag="--cpu")
    launcher_precision = os.environ.get("ACCELERATE_MIXED_PRECISION")
    if accelerator.is_main_process and args.mixed_precision and launcher_precision not in (None, args.mixed_precision):
        logger.warning("mixed precision: %s (--mixed_precision), not accelerate launch's %r (its banner reports the "
                       "launcher's setting)", accelerator.mixed_precision, launcher_precision)
    accelerator.wait_for_everyone()  # every rank has looked at --output_dir before the main process writes
    if accelerator.is_main_process:
        run_state.clean_output_dir(output_dir, PRETRAIN, overwrite=args.overwrite_output_dir, resuming=resuming)
    accelerator.wait_for_everyone()
    return accelerator


@dataclass
class Run:
    """Everything the loop touches."""

    args: PretrainArguments
    accelerator: Any
    model: Any  # prepared (wrapped) for the accelerator
    raw_model: Any
    optimizer: Any
    scheduler: Any
    loader: StreamLoader
    source: Any
    spec: PreprocessSpec
    schedule: Schedule
    output_dir: Path
    trackers: list[str]
    step: int = 0
    last_checkpoint: Path | None = None

    @property
    def rank(self) -> int:
        return self.accelerator.process_index


def build_run(args: PretrainArguments) -> Run:
    """Accelerator, model, data stream, optimizer and schedule; the checkpoint to continue from is restored."""
    from accelerate.utils import set_seed

    output_dir, trackers = Path(args.output_dir), _trackers(args.report_to)
    accelerator = make_accelerator(args, output_dir, trackers)
    set_seed(args.seed)
    overrides = parse_overrides(args.config_overrides)
    overrides.update({n: getattr(args, n) for n in ("mask_ratio", "norm_pix_loss") if getattr(args, n) is not None})
    model = build_mae(args.model, overrides, load_recipe("pretrain", args.recipe).model)
    if args.optimize_for_cpu and accelerator.device.type == "cpu":
        optimize_for_cpu(model)
    spec = PreprocessSpec.from_model(model)
    source = load_image_source(args.dataset, args.train_split, config_name=args.dataset_config,
                               image_column=args.image_column, with_labels=False)
    world, rank = accelerator.num_processes, accelerator.process_index
    schedule = plan_schedule(
        per_device_batch_size=args.per_device_batch_size, gradient_accumulation_steps=args.gradient_accumulation_steps,
        world_size=world, max_steps=args.max_steps, num_train_epochs=args.num_train_epochs,
        num_examples=source.num_examples, dataset_name=source.name, learning_rate=args.learning_rate,
        base_learning_rate=args.base_learning_rate, warmup_steps=args.warmup_steps)
    transform = pretrain_transform(spec, augmentation=args.augmentation)
    stream = ImageStream(source, transform, batch_size=args.per_device_batch_size,
                         collate=Collate(spec.mean, spec.std), shuffle_buffer=args.shuffle_buffer, seed=args.seed,
                         rank=rank, world_size=world, infinite=True, with_labels=False)
    loader = StreamLoader(stream, num_workers=args.dataloader_num_workers, pin_memory=accelerator.device.type == "cuda")
    optimizer = adamw(no_decay_param_groups(model, args.weight_decay), lr=schedule.learning_rate, betas=(0.9, 0.95))
    scheduler = cosine_with_warmup(optimizer, schedule.warmup_steps, schedule.max_steps)
    # The scheduler is stepped by us once per optimizer step (a prepared one steps once per process).
    prepared, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    run = Run(args, accelerator, prepared, model, optimizer, scheduler, loader, source, spec, schedule, output_dir,
              trackers)
    resume(run)
    return run


def resume(run: Run) -> None:
    """Restore model, optimizer, RNG, scheduler and this rank's data position from --resume_from_checkpoint."""
    path = run_state.resolve_checkpoint(run.args.resume_from_checkpoint, run.output_dir, PRETRAIN)
    found = list_checkpoints(run.output_dir)
    run.last_checkpoint = found[-1] if found else None
    if path is None:
        return
    state = run_state.read_run_state(path)
    check_same_max_steps(state.max_steps, run.schedule.max_steps, path)
    if state.world_size != run.accelerator.num_processes:
        raise ValueError(f"{path} was written by {state.world_size} processes, this run has "
                         f"{run.accelerator.num_processes}: resume with the same number of processes to continue the "
                         "data streams exactly")
    run.accelerator.load_state(str(path))
    run.loader.load_state_dict(run_state.read_data_state(path, rank=run.rank, world_size=state.world_size))
    run.step = state.step
    logger.info("resumed from %s at step %d (run-state version %d)", path, run.step, state.version)


def resolved_args(run: Run) -> dict[str, Any]:
    s = run.schedule
    return {**asdict(run.args), "mixed_precision": run.accelerator.mixed_precision, "max_steps": s.max_steps,
            "learning_rate": s.learning_rate, "effective_batch_size": s.effective_batch_size,
            "warmup_steps": s.warmup_steps, "world_size": run.accelerator.num_processes,
            "model_config": run.raw_model.config.to_diff_dict()}


def start_logs(run: Run) -> None:
    """run_args.json; train_log.jsonl cut back to the resumed step (or emptied); trackers; the example-id file."""
    resolved, log_path = resolved_args(run), run.output_dir / "train_log.jsonl"
    if run.accelerator.is_main_process:
        write_run_args(run.output_dir, resolved)
        if run.step and log_path.exists():  # drop lines logged after the checkpoint we resumed from
            kept = [line for line in log_path.read_text().splitlines() if line and json.loads(line)["step"] <= run.step]
            log_path.write_text("".join(line + "\n" for line in kept))
        elif not run.step:
            log_path.write_text("")
    if run.trackers:
        run.accelerator.init_trackers("pretrain_mae", config={k: v for k, v in resolved.items()
                                                              if isinstance(v, (int, float, str, bool))})
    if run.args.log_example_keys and not run.step:
        run.output_dir.mkdir(parents=True, exist_ok=True)
        _keys_file(run).write_text("")


def _keys_file(run: Run) -> Path:
    return run.output_dir / f"example_keys_rank{run.rank}.txt"


# ------------------------------------------------------------------------------------------------------ loop
def _noise(seed: int, step: int, micro: int, rank: int, batch: int, num_patches: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(hash((seed, step, micro, rank)) & 0x7FFF_FFFF_FFFF_FFFF)
    return torch.rand(batch, num_patches, generator=generator)


def _num_patches(model) -> int:
    size = model.config.image_size
    height, width = (size, size) if isinstance(size, int) else size
    return (height // model.config.patch_size) * (width // model.config.patch_size)


def train_one_step(run: Run, batches) -> tuple[float, float]:
    """One optimizer step over the gradient-accumulation micro-batches; returns (mean loss, lr used)."""
    args, accelerator, model = run.args, run.accelerator, run.model
    total = torch.zeros((), device=accelerator.device)
    num_patches = _num_patches(run.raw_model)
    for micro in range(args.gradient_accumulation_steps):
        batch = next(batches)
        if args.log_example_keys:
            with _keys_file(run).open("a") as f:
                f.write("".join(k + "\n" for k in run.loader.last_keys))
        pixels = batch["pixel_values"].to(accelerator.device, non_blocking=True)
        noise = _noise(args.seed, run.step, micro, run.rank, pixels.shape[0], num_patches).to(accelerator.device)
        last_micro = micro == args.gradient_accumulation_steps - 1
        with accelerator.no_sync(model) if not last_micro else contextlib.nullcontext():
            loss = model(pixels, noise=noise).loss
            accelerator.backward(loss / args.gradient_accumulation_steps)
        total += loss.detach().float() / args.gradient_accumulation_steps
    mean_loss = accelerator.reduce(total, reduction="mean")  # every rank sees the same value
    if not torch.isfinite(mean_loss):
        last = run.last_checkpoint
        where = f"the last good checkpoint is {last}" if last else "no checkpoint was saved"
        raise NonFiniteLossError(
            f"non-finite loss ({mean_loss.item()}) at step {run.step + 1}: stopping before the update; {where}. "
            "Try a lower --base_learning_rate, --max_grad_norm, or fp32/bf16 instead of fp16.")
    if args.max_grad_norm:
        accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
    lr = run.scheduler.get_last_lr()[0]
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.step += 1
    return mean_loss.item(), lr


def log_step(run: Run, loss: float, lr: float, seconds: float, stop_at: int) -> None:
    record = {"step": run.step, "loss": loss, "lr": lr,
              "img_per_s": run.schedule.effective_batch_size / max(seconds, 1e-9)}
    if run.source.num_examples:  # epochs of data consumed (the stream is endless)
        record["epoch"] = run.step * run.schedule.effective_batch_size / run.source.num_examples
    if run.accelerator.is_main_process:
        with (run.output_dir / "train_log.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
    if run.trackers and (run.step % max(1, run.args.logging_steps) == 0 or run.step == stop_at):
        run.accelerator.log({k: v for k, v in record.items() if k != "step"}, step=run.step)


def train(run: Run, stop_at: int) -> list[float]:
    """Steps until `stop_at`, logging each and saving checkpoints; returns this run's losses."""
    from tqdm.auto import tqdm

    args, losses, batches = run.args, [], iter(run.loader)
    run.model.train()
    bar = tqdm(total=stop_at, initial=run.step, desc="MAE pre-training", unit="step",
               disable=not run.accelerator.is_local_main_process)
    with contextlib.closing(bar):
        while run.step < stop_at:
            tick = time.perf_counter()
            loss, lr = train_one_step(run, batches)
            losses.append(loss)
            log_step(run, loss, lr, time.perf_counter() - tick, stop_at)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
            if (args.checkpointing_steps and run.step % args.checkpointing_steps == 0) or run.step == stop_at:
                run.last_checkpoint = run_state.save_accelerate_checkpoint(
                    run.accelerator, run.output_dir, run.step, run.loader.state_dict(), args.checkpoints_total_limit,
                    {"loss": loss, "max_steps": run.schedule.max_steps})
    return losses


def pretrain(args: PretrainArguments) -> dict[str, Any]:
    """Run (or resume) pre-training; returns a summary (first/last loss, steps, images/s)."""
    args = resolve_args(args)
    run = build_run(args)  # build
    start_logs(run)
    start_step, start_time = run.step, time.perf_counter()
    stop_at = min(run.schedule.max_steps, args.stop_after_steps or run.schedule.max_steps)
    losses = train(run, stop_at)  # loop
    summary = summarize(run, losses, start_step, time.perf_counter() - start_time)
    accelerator = run.accelerator
    if run.step < run.schedule.max_steps:  # stopped early on purpose: checkpoint written, no final model yet
        accelerator.end_training()
        return summary
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:  # finish
        finish(accelerator.unwrap_model(run.model), args, run.spec, run.output_dir, summary, run.source.name)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return summary


def summarize(run: Run, losses: list[float], start_step: int, elapsed: float) -> dict[str, Any]:
    effective, examples = run.schedule.effective_batch_size, run.source.num_examples
    return {"first_loss": losses[0] if losses else None, "final_loss": losses[-1] if losses else None,
            "steps": run.step, "max_steps": run.schedule.max_steps, "steps_this_run": run.step - start_step,
            "images_per_second": (run.step - start_step) * effective / max(elapsed, 1e-9),
            "epochs": run.step * effective / examples if examples else None,
            "bad_images": run.loader.bad_images, "bad_image_files": len(run.loader.bad_files),
            "data_report": run.loader.report()}


# ---------------------------------------------------------------------------------------------- checkpoints
def checkpoint_dir(output_dir: str | Path) -> Path:
    return PRETRAIN.root(output_dir)


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary folders start with '.' and are never listed)."""
    return run_state.list_checkpoints(output_dir, PRETRAIN)


def resolve_checkpoint(spec: str, output_dir: str | Path) -> Path:
    """A checkpoint folder, or 'latest' (FileNotFoundError when there is none)."""
    return run_state.resolve_checkpoint(spec, output_dir, PRETRAIN, latest_may_be_missing=False)


# ---------------------------------------------------------------------------------------------------- finish
def _eval_split(args: PretrainArguments) -> str:
    if args.eval_split:
        return args.eval_split
    splits = available_splits(args.dataset, args.dataset_config)
    return next((s for s in ("validation", "test") if s in splits), args.train_split)


def save_reconstructions(model, args: PretrainArguments, spec: PreprocessSpec, path: Path) -> Path:
    """original / masked / reconstruction / reconstruction + visible on held-out images, as a PNG grid."""
    from ..analysis.mae import reconstruction_panels
    from ..analysis.plots import plot_mae_reconstruction, save_figure

    source = load_image_source(args.dataset, _eval_split(args), config_name=args.dataset_config,
                               image_column=args.image_column, with_labels=False)
    stream = ImageStream(source, eval_transform(spec), batch_size=args.num_reconstructions,
                         collate=Collate(spec.mean, spec.std), infinite=False, with_labels=False)
    batch = next(iter(StreamLoader(stream)))
    pixels = batch["pixel_values"].to(next(model.parameters()).device)
    model.eval()
    noise = _noise(args.seed, -1, 0, 0, pixels.shape[0], _num_patches(model)).to(pixels.device)
    panels = reconstruction_panels(model, pixels, model.config.mask_ratio, noise=noise)
    figure = plot_mae_reconstruction(panels, [f"held-out {i}" for i in range(len(panels))],
                                     mask_ratio=model.config.mask_ratio,
                                     title=f"MAE reconstructions ({source.name}, {source.split})")
    return save_figure(figure, path)


def finish(model, args: PretrainArguments, spec: PreprocessSpec, output_dir: Path, summary: dict[str, Any],
           dataset_name: str) -> None:
    """save_pretrained, reconstruction grid, results, model card, optional push."""
    model = model.float()
    model.save_pretrained(output_dir)
    summary["reconstructions"] = str(save_reconstructions(model, args, spec, output_dir / "reconstructions.png"))
    (output_dir / "all_results.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_card(output_dir, dataset_name, fallback_title="MAE pre-training",
               metrics={"train_loss": summary["final_loss"]})
    if args.push_to_hub:  # the finished folder (checkpoint, results, reconstructions, card) in one commit
        from ..hub import push_folder

        push_folder(output_dir, args.hub_model_id or output_dir.name)

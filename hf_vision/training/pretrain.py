"""MAE pre-training with Accelerate: one loop from a laptop core to many GPUs.

Recipe (He et al. 2021): AdamW betas (0.9, 0.95), weight decay 0.05 except norms, biases, tokens and position
tables; lr = base_lr * effective batch / 256; linear warm-up then cosine; RandomResizedCrop(0.2, 1) + flip.

Exact resume. A checkpoint is written only after an optimizer step (a gradient-accumulation boundary) with
`Accelerator.save_state` (model, optimizer, per-process RNG), plus the scheduler, the step, and every rank's
data position. The masking noise comes from a generator seeded by (seed, step, micro-step, rank), augmentations
are seeded per record, and the stream re-reads to its saved position, so an interrupted-then-resumed run
computes the same losses as an uninterrupted one.

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
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..data import Collate, ImageStream, PreprocessSpec, StreamLoader, available_splits, eval_transform, \
    load_image_source, pretrain_transform
from ..optimize import optimize_for_cpu
from .checks import check_output_dir, check_same_max_steps, parse_overrides

logger = logging.getLogger("hf_vision.training")

# A small MAE for the embedded 32x32 digits: 8x8 grid of 4-px patches, 4 encoder blocks of width 128.
DEMO_MAE = dict(image_size=32, patch_size=4, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                intermediate_size=512, decoder_hidden_size=96, decoder_num_hidden_layers=2,
                decoder_num_attention_heads=4, decoder_intermediate_size=384)
CHECKPOINT_PREFIX = "step_"


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the last good checkpoint."""


@dataclass
class PretrainArguments:
    model: str | None = field(default=None, metadata={
        "help": "MAE preset (e.g. mae-vit-base-patch16) or checkpoint folder/Hub name. Default: a small MAE "
                "for the embedded digits."})
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
    num_train_epochs: float = 30.0
    per_device_batch_size: int = 128
    gradient_accumulation_steps: int = 1
    base_learning_rate: float = 1.5e-4
    learning_rate: float | None = field(default=None, metadata={"help": "Absolute lr (overrides the base rule)."})
    weight_decay: float = 0.05
    warmup_steps: float = field(default=0.05, metadata={"help": "Steps, or a fraction (< 1) of max_steps."})
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


# --------------------------------------------------------------------------------------------------- building
def build_mae(name: str | None, overrides: dict[str, Any]):
    from hf_vision.modeling.mae.configuration_mae import MAEConfig
    from hf_vision.modeling.mae.modeling_mae import MAEForPreTraining

    from ..presets import PRESETS, get_config, preset_names

    if name is None:
        return MAEForPreTraining(get_config("mae-vit-base-patch16", **{**DEMO_MAE, **overrides}))
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


# ---------------------------------------------------------------------------------------------- checkpoints
def checkpoint_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary folders start with '.' and are never listed)."""
    folder = checkpoint_dir(output_dir)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX)]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


def resolve_checkpoint(spec: str, output_dir: str | Path) -> Path:
    if spec == "latest":
        found = list_checkpoints(output_dir)
        if not found:
            raise FileNotFoundError(f"--resume_from_checkpoint latest: no checkpoint under {checkpoint_dir(output_dir)}")
        return found[-1]
    path = Path(spec)
    if not (path / "trainer_state.json").exists():
        raise FileNotFoundError(f"{path} is not a checkpoint folder (no trainer_state.json)")
    return path


def remove_checkpoint(path: Path) -> None:
    """Rename aside (atomic, and no longer listed) before deleting, so a crash mid-delete leaves only debris."""
    doomed = path.with_name(f".old-{path.name}")
    os.replace(path, doomed)
    shutil.rmtree(doomed)


def remove_debris(output_dir: Path) -> None:
    """Temporary and half-deleted folders of an interrupted run (main process only)."""
    folder = checkpoint_dir(output_dir)
    for path in list(folder.glob(f".tmp-{CHECKPOINT_PREFIX}*")) + list(folder.glob(f".old-{CHECKPOINT_PREFIX}*")):
        logger.warning("removing %s, left by an interrupted run", path)
        shutil.rmtree(path, ignore_errors=True)


def save_checkpoint(accelerator, output_dir: Path, step: int, loader: StreamLoader, limit: int,
                    extra: dict[str, Any]) -> Path:
    """Write to a temporary folder, rename into place, then rotate; every rank takes part."""
    root = checkpoint_dir(output_dir)
    final = root / f"{CHECKPOINT_PREFIX}{step:08d}"
    tmp = root / f".tmp-{CHECKPOINT_PREFIX}{step:08d}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)  # debris of an interrupted earlier attempt
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    (tmp / f"data_state_rank{accelerator.process_index}.json").write_text(json.dumps(loader.state_dict()))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / "trainer_state.json").write_text(json.dumps(
            {"step": step, "world_size": accelerator.num_processes, **extra}, indent=2))
        if final.exists():  # re-saving the same step (e.g. after a resume): retire the old one first
            remove_checkpoint(final)
        os.replace(tmp, final)
        for old in list_checkpoints(output_dir)[:-limit] if limit > 0 else []:
            remove_checkpoint(old)
    accelerator.wait_for_everyone()
    return final


# -------------------------------------------------------------------------------------------------- running
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


def _noise(seed: int, step: int, micro: int, rank: int, batch: int, num_patches: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(hash((seed, step, micro, rank)) & 0x7FFF_FFFF_FFFF_FFFF)
    return torch.rand(batch, num_patches, generator=generator)


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


def _num_patches(model) -> int:
    size = model.config.image_size
    height, width = (size, size) if isinstance(size, int) else size
    return (height // model.config.patch_size) * (width // model.config.patch_size)


def pretrain(args: PretrainArguments) -> dict[str, Any]:
    """Run (or resume) pre-training; returns a summary (first/last loss, steps, images/s)."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    output_dir = Path(args.output_dir)
    trackers = _trackers(args.report_to)
    # Accelerate keeps one process-wide state; a second run in the same process (a notebook, a test after a
    # Trainer) with other settings would be refused. The only private call here: forget the old settings,
    # keep the process group.
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=False)
    check_output_dir(output_dir, overwrite=args.overwrite_output_dir, resuming=bool(args.resume_from_checkpoint))
    # Without an accelerator, CPU mode: only then does Accelerate join torchrun's (or accelerate launch
    # --multi_gpu's) processes into one gloo group; otherwise each would train alone with world size 1.
    cpu = args.cpu or not torch.accelerator.is_available()
    accelerator = Accelerator(mixed_precision=args.mixed_precision, log_with=trackers or None,
                              project_dir=str(output_dir), cpu=cpu)
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and accelerator.num_processes != launched:
        raise RuntimeError(
            f"launched as {launched} processes, but Accelerate formed a group of {accelerator.num_processes}: each "
            "would train alone and all would write the same --output_dir. Pass --cpu so that the processes train "
            "together on CPU (gloo), or launch them where every process sees its own accelerator")
    launcher_precision = os.environ.get("ACCELERATE_MIXED_PRECISION")
    if accelerator.is_main_process and args.mixed_precision and launcher_precision not in (None, args.mixed_precision):
        logger.warning("mixed precision: %s (--mixed_precision), not accelerate launch's %r (its banner reports the "
                       "launcher's setting)", accelerator.mixed_precision, launcher_precision)
    accelerator.wait_for_everyone()  # every rank has looked at --output_dir before the main process writes
    if accelerator.is_main_process and args.overwrite_output_dir and not args.resume_from_checkpoint:
        for old in list_checkpoints(output_dir):
            logger.warning("--overwrite_output_dir: removing %s of an earlier run", old)
            remove_checkpoint(old)
    if accelerator.is_main_process and checkpoint_dir(output_dir).is_dir():
        remove_debris(output_dir)
    accelerator.wait_for_everyone()
    set_seed(args.seed)
    overrides = parse_overrides(args.config_overrides)
    for name in ("mask_ratio", "norm_pix_loss"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    model = build_mae(args.model, overrides)
    if args.optimize_for_cpu and accelerator.device.type == "cpu":
        optimize_for_cpu(model)
    spec = PreprocessSpec.from_model(model)
    source = load_image_source(args.dataset, args.train_split, config_name=args.dataset_config,
                               image_column=args.image_column, with_labels=False)
    world, rank = accelerator.num_processes, accelerator.process_index
    effective_batch = args.per_device_batch_size * args.gradient_accumulation_steps * world
    max_steps = args.max_steps
    if max_steps is None:
        if not source.num_examples:
            raise ValueError(f"{source.name!r} does not say how many examples it has: pass --max_steps")
        max_steps = max(1, math.ceil(args.num_train_epochs * source.num_examples / effective_batch))
    lr = args.learning_rate or args.base_learning_rate * effective_batch / 256
    warmup = int(args.warmup_steps * max_steps) if args.warmup_steps < 1 else int(args.warmup_steps)
    stream = ImageStream(source, pretrain_transform(spec), batch_size=args.per_device_batch_size,
                         collate=Collate(spec.mean, spec.std), shuffle_buffer=args.shuffle_buffer, seed=args.seed,
                         rank=rank, world_size=world, infinite=True, with_labels=False)
    loader = StreamLoader(stream, num_workers=args.dataloader_num_workers, pin_memory=accelerator.device.type == "cuda")
    optimizer = torch.optim.AdamW(no_decay_param_groups(model, args.weight_decay), lr=lr, betas=(0.9, 0.95))
    scheduler = cosine_with_warmup(optimizer, warmup, max_steps)
    # The scheduler is stepped by us once per optimizer step (a prepared one steps once per process).
    raw_model = model
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)

    resolved = {**asdict(args), "mixed_precision": accelerator.mixed_precision, "max_steps": max_steps, "learning_rate": lr, "effective_batch_size": effective_batch,
                "warmup_steps": warmup, "world_size": world, "model_config": raw_model.config.to_diff_dict()}
    step = 0
    resume = args.resume_from_checkpoint
    if resume == "latest" and not list_checkpoints(output_dir):
        logger.warning("--resume_from_checkpoint latest: no checkpoint under %s yet; starting from step 0",
                       checkpoint_dir(output_dir))
        resume = None
    if resume:
        path = resolve_checkpoint(resume, output_dir)
        state = json.loads((path / "trainer_state.json").read_text())
        check_same_max_steps(state.get("max_steps"), max_steps, path)
        if state["world_size"] != world:
            raise ValueError(f"{path} was written by {state['world_size']} processes, this run has {world}: resume "
                             "with the same number of processes to continue the data streams exactly")
        accelerator.load_state(str(path))
        loader.load_state_dict(json.loads((path / f"data_state_rank{rank}.json").read_text()))
        step = state["step"]
        logger.info("resumed from %s at step %d", path, step)
    log_path = output_dir / "train_log.jsonl"
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "run_args.json").write_text(json.dumps(resolved, indent=2, default=str) + "\n")
        if step and log_path.exists():  # drop lines logged after the checkpoint we resumed from
            kept = [line for line in log_path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
            log_path.write_text("".join(line + "\n" for line in kept))
        elif not step:
            log_path.write_text("")
    if trackers:
        accelerator.init_trackers("pretrain_mae", config={k: v for k, v in resolved.items()
                                                          if isinstance(v, (int, float, str, bool))})
    stop_at = min(max_steps, args.stop_after_steps or max_steps)
    num_patches = _num_patches(raw_model)
    keys_file = output_dir / f"example_keys_rank{rank}.txt" if args.log_example_keys else None
    if keys_file is not None and not step:
        output_dir.mkdir(parents=True, exist_ok=True)
        keys_file.write_text("")
    model.train()
    batches = iter(loader)
    last_checkpoint = list_checkpoints(output_dir)[-1] if list_checkpoints(output_dir) else None
    first_loss = last_loss = None
    start_time, start_step = time.perf_counter(), step
    bar = tqdm(total=stop_at, initial=step, desc="MAE pre-training", unit="step",
               disable=not accelerator.is_local_main_process)
    while step < stop_at:
        tick = time.perf_counter()
        total = torch.zeros((), device=accelerator.device)
        for micro in range(args.gradient_accumulation_steps):
            batch = next(batches)
            if keys_file is not None:
                with keys_file.open("a") as f:
                    f.write("".join(k + "\n" for k in loader.last_keys))
            pixels = batch["pixel_values"].to(accelerator.device, non_blocking=True)
            noise = _noise(args.seed, step, micro, rank, pixels.shape[0], num_patches).to(accelerator.device)
            last_micro = micro == args.gradient_accumulation_steps - 1
            with accelerator.no_sync(model) if not last_micro else contextlib.nullcontext():
                loss = model(pixels, noise=noise).loss
                accelerator.backward(loss / args.gradient_accumulation_steps)
            total += loss.detach().float() / args.gradient_accumulation_steps
        mean_loss = accelerator.reduce(total, reduction="mean")  # every rank sees the same value
        if not torch.isfinite(mean_loss):
            bar.close()
            where = f"the last good checkpoint is {last_checkpoint}" if last_checkpoint else "no checkpoint was saved"
            raise NonFiniteLossError(
                f"non-finite loss ({mean_loss.item()}) at step {step + 1}: stopping before the update; {where}. "
                "Try a lower --base_learning_rate, --max_grad_norm, or fp32/bf16 instead of fp16.")
        if args.max_grad_norm:
            accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        current_lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        last_loss = mean_loss.item()
        first_loss = last_loss if first_loss is None else first_loss
        record = {"step": step, "loss": last_loss, "lr": current_lr,
                  "img_per_s": effective_batch / max(time.perf_counter() - tick, 1e-9)}
        if source.num_examples:  # epochs of data consumed (the stream is endless)
            record["epoch"] = step * effective_batch / source.num_examples
        if accelerator.is_main_process:
            with log_path.open("a") as f:
                f.write(json.dumps(record) + "\n")
        if trackers and (step % max(1, args.logging_steps) == 0 or step == stop_at):
            accelerator.log({k: v for k, v in record.items() if k != "step"}, step=step)
        bar.update(1)
        bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{current_lr:.2e}")
        if (args.checkpointing_steps and step % args.checkpointing_steps == 0) or step == stop_at:
            last_checkpoint = save_checkpoint(accelerator, output_dir, step, loader, args.checkpoints_total_limit,
                                              {"loss": last_loss, "max_steps": max_steps})
    bar.close()
    elapsed = time.perf_counter() - start_time
    summary = {"first_loss": first_loss, "final_loss": last_loss, "steps": step, "max_steps": max_steps,
               "steps_this_run": step - start_step,
               "images_per_second": (step - start_step) * effective_batch / max(elapsed, 1e-9),
               "epochs": step * effective_batch / source.num_examples if source.num_examples else None,
               "bad_images": loader.bad_images, "bad_image_files": len(loader.bad_files),
               "data_report": loader.report()}
    if step < max_steps:  # stopped early on purpose: checkpoint written, no final model yet
        accelerator.end_training()
        return summary
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _finish(accelerator.unwrap_model(model), args, spec, output_dir, summary, source.name)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return summary


def _finish(model, args: PretrainArguments, spec: PreprocessSpec, output_dir: Path, summary: dict[str, Any],
            dataset_name: str) -> None:
    """save_pretrained, reconstruction grid, results, model card, optional push."""
    model = model.float()
    model.save_pretrained(output_dir)
    summary["reconstructions"] = str(save_reconstructions(model, args, spec, output_dir / "reconstructions.png"))
    (output_dir / "all_results.json").write_text(json.dumps(summary, indent=2) + "\n")
    from ..model_card import data_statement

    datasets, local_data = data_statement(dataset_name)
    try:
        from ..model_card import card_for_folder

        card_for_folder(output_dir, datasets=datasets, local_data=local_data,
                        metrics={"train_loss": summary["final_loss"]}).save(output_dir / "README.md")
    except Exception as err:  # documentation only: never lose a finished run over it
        logger.warning("could not write the model card: %s", err)
    if args.push_to_hub:  # the finished folder (checkpoint, results, reconstructions, card) in one commit
        from ..hub import push_folder

        push_folder(output_dir, args.hub_model_id or output_dir.name)

"""Image-classification fine-tuning with transformers' Trainer, on our streaming data pipeline.

The model comes from a preset, an MAE pre-training checkpoint (its encoder becomes a ViT with global pooling,
as in MAE's fine-tuning), one of our saved/converted checkpoints, or a Hub name (ours, timm or transformers,
converted through `hf_vision.from_pretrained`). Labels and id2label come from the dataset's ClassLabel feature.

Recipes are files (hf_vision/recipes/finetune_<name>.py): demo, mae, linear_probe, vit_scratch, swin. A recipe's
SETTINGS (augmentation, regularisation) fill every option left unset (None) here; its ARGS are the CLI's
TrainingArguments defaults (scripts/finetune.py), and its MODEL is the model built when --model is not given.
`recipe="auto"` keeps the CLI's demo defaults and takes "demo" settings on the embedded digits, "mae" ones on any
other dataset. Linear probing (`linear_probe`) freezes the encoder and trains a BatchNorm + Linear head; partial
fine-tuning (`train_last_blocks=N`) trains the last N blocks and what follows them.

Several processes (`torchrun --nproc_per_node N`): every rank reads its own share of the training stream
(`split_dataset_by_node` inside `ImageStream`) through a `StreamLoader`, which the Trainer iterates as is; Accelerate's
default for iterable datasets (rank 0 reads every batch and sends slices to the others) is kept for evaluation
only, where its gather drops the padding of the last batch.
Exact resume: each checkpoint also holds every rank's data position (`data_state_rank<r>.json`, schema in
hf_vision.training.run_state); on `--resume_from_checkpoint` the loader continues from it and the Trainer's own
fast-forward (which would re-read and re-augment every consumed batch) is switched off. Together with the Trainer's
model, optimizer, scheduler and RNG state, a resumed run reproduces the uninterrupted one.
Crash-safe checkpoints: a checkpoint counts only once `checkpoint_complete.json` is written into it (atomically,
last, after every rank's data position); `latest` picks the newest complete one, or starts from step 0 when there is
none. Old checkpoints are rotated out (`save_total_limit`) only after the new one is complete, each renamed aside
before it is deleted; a resumed run removes what an interrupted one left half-written.
Guards: a non-empty --output_dir needs --overwrite_output_dir unless resuming; resuming with another --max_steps is
refused (the learning-rate schedule spans the original one).
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from transformers import TrainingArguments, set_seed

from ..data import BatchAugment, Collate, ImageStream, PreprocessSpec, StreamLoader, available_splits, \
    eval_transform, finetune_transform, load_image_source
from ..hub import check_local_path, read_config
from ..optimize import adamw, optimize_for_cpu
from ..recipes import load_recipe
from . import run_state
from .core import check_launch, plan_schedule, write_card, write_run_args
from ..overrides import parse_overrides  # noqa: F401  (also re-exported: tests and callers import it from here)
from .run_state import TRAINER, check_output_dir, check_same_max_steps
from .trainer import CompleteCheckpoints, ImageClassificationTrainer, TrainBatches, metric_fn

logger = logging.getLogger("hf_vision.training")

# TrainingArguments defaults of the CLI that are plumbing, not recipe: no saving, evaluation or trackers unless
# asked; our collator and label names; every parameter that trains takes part in every forward (frozen ones are not
# DDP's), so the Trainer's default find_unused_parameters=True would only cost a graph traversal and a warning.
CLI_DEFAULTS = dict(output_dir="outputs/finetune", save_strategy="no", eval_strategy="no", report_to="none",
                    remove_unused_columns=False, label_names=["labels"], dataloader_num_workers=0,
                    ddp_find_unused_parameters=False)
# The demo recipe's training arguments over the plumbing (one definition: hf_vision/recipes/finetune_demo.py).
TRAINING_DEFAULTS = {**CLI_DEFAULTS, **load_recipe("finetune", "demo").args}


def cli_defaults(recipe: str = "auto") -> dict[str, Any]:
    """The CLI's argument defaults: the demo recipe's ARGS, then the chosen recipe's (auto: none), plus `use_cpu` on a
    machine without an accelerator (without it Accelerate does not join torchrun's processes; with it they form one
    gloo group)."""
    chosen = {} if recipe == "auto" else load_recipe("finetune", recipe).args
    return {**TRAINING_DEFAULTS, **chosen, "use_cpu": not torch.accelerator.is_available()}


@dataclass
class ModelArguments:
    model: str | None = field(default=None, metadata={
        "help": "Preset name, MAE pre-training checkpoint folder, saved/converted checkpoint, or Hub name "
                "(ours, timm or transformers). Default: a small ViT for the embedded digits."})
    config_overrides: str | None = field(default=None, metadata={
        "help": "Config fields to override, 'k=v,k=v' (e.g. 'image_size=384,drop_path_rate=0.2')."})
    drop_path_rate: float | None = field(default=None, metadata={"help": "Stochastic depth (recipe default)."})
    layer_decay: float | None = field(default=None, metadata={"help": "Layer-wise lr decay (1 = none)."})
    linear_probe: bool = field(default=False, metadata={"help": "Freeze the encoder; BatchNorm + Linear head."})
    train_last_blocks: int | None = field(default=None, metadata={
        "help": "Partial fine-tuning: train only the last N blocks (and the head)."})
    base_learning_rate: float | None = field(default=None, metadata={
        "help": "If set, learning_rate = base_learning_rate * effective batch / 256 (MAE's rule)."})
    optimize_for_cpu: bool = field(default=True, metadata={
        "help": "On CPU, train with hf_vision.optimize_for_cpu (oneDNN Linear); --no_optimize_for_cpu turns it "
                "off. The saved model is the same either way."})
    recipe: str = field(default="auto", metadata={
        "help": "Recipe file hf_vision/recipes/finetune_<name>.py: demo, mae, linear_probe, vit_scratch, swin; "
                "auto: the demo's training defaults with demo settings on the embedded digits, mae otherwise. "
                "Flags override it."})


@dataclass
class DataArguments:
    dataset: str | None = field(default=None, metadata={
        "help": "Hub dataset name (streamed), local folder/file (imagefolder, parquet, webdataset tar), "
                "or 'digits' (the embedded default)."})
    dataset_config: str | None = None
    train_split: str = "train"
    eval_split: str | None = field(default=None, metadata={"help": "Default: validation, else test."})
    image_column: str | None = None
    label_column: str | None = None
    shuffle_buffer: int = 2048
    eval_crop_pct: float = 0.875
    randaugment: str | None = field(default=None, metadata={"help": "'num_ops,magnitude' (e.g. '2,9'), or 'none'."})
    random_erasing: float | None = None
    mixup_alpha: float | None = None
    cutmix_alpha: float | None = None
    label_smoothing: float | None = None
    hflip: float | None = None
    crop_scale_min: float | None = None
    max_eval_samples: int | None = None
    reduced_decode: bool = field(default=True, metadata={"help": "Decode JPEGs at reduced size when possible."})
    log_example_keys: bool = field(default=False, metadata={
        "help": "Append the ids of the training examples each rank consumed to example_keys_rank<r>.txt (audits)."})
    overwrite_output_dir: bool = field(default=False, metadata={
        "help": "Write into a non-empty --output_dir (its old checkpoints are removed); not needed to resume."})


def build_classifier(name: str | None, *, labels: dict[str, Any], overrides: dict[str, Any],
                     default: dict[str, Any] | None = None):
    """A classification model with `labels` (num_labels, id2label, label2id); see the module docstring. Without a
    name: `default` (a recipe's MODEL: a preset plus config fields), else the demo recipe's small ViT."""
    from ..hub import from_pretrained
    from ..presets import PRESETS, get_config
    from transformers import AutoModelForImageClassification

    from hf_vision.modeling.mae.configuration_mae import MAEConfig
    from hf_vision.modeling.vit.configuration_vit import ViTConfig
    from hf_vision.modeling.vit.modeling_vit import ViTForImageClassification

    if name is None:
        model_fields = dict(default or load_recipe("finetune", "demo").model)
        config = get_config(model_fields.pop("preset"), **{**model_fields, **labels, **overrides})
        if type(config) is ViTConfig:
            return ViTForImageClassification(config)
        return AutoModelForImageClassification.from_config(config)
    if name in PRESETS:
        config = get_config(name)
        if isinstance(config, MAEConfig):
            config = config.vit_config(**labels, **overrides)
        else:
            config = get_config(name, **labels, **overrides)
        return AutoModelForImageClassification.from_config(config)
    saved = read_config(name)  # a mistyped path or an unreachable repo fails here, naming `name`
    if saved.get("model_type") == MAEConfig.model_type:  # an MAE pre-training run: its encoder, a new head
        config = MAEConfig.from_pretrained(name).vit_config(**labels, **overrides)
        return ViTForImageClassification.from_pretrained(name, config=config)
    return from_pretrained(name, auto_class="AutoModelForImageClassification",
                           ignore_mismatched_sizes=True, **labels, **overrides)


def configure_trainable(model, *, linear_probe: bool, train_last_blocks: int | None) -> int:
    """Freeze per the mode; returns the number of trainable parameters."""
    from .param_groups import freeze_except_last_blocks

    if linear_probe:
        for name, param in model.named_parameters():
            param.requires_grad_(name.startswith(("classifier.", "head_norm.")))
    elif train_last_blocks is not None:
        freeze_except_last_blocks(model, train_last_blocks)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def resolve_recipe(model_args: ModelArguments, data_args: DataArguments) -> dict[str, Any]:
    """The recipe's SETTINGS with every option given here (not None) winning; `name` and `linear_probe` added."""
    from ..data.sources import EMBEDDED_NAMES

    name = model_args.recipe
    if name == "auto":
        name = "demo" if (data_args.dataset or "digits") in EMBEDDED_NAMES else "mae"
    recipe = {"linear_probe": False, **load_recipe("finetune", name).settings, "name": name}
    for args in (model_args, data_args):
        for f in fields(args):
            if f.name in recipe and f.name != "linear_probe" and getattr(args, f.name) is not None:
                value = getattr(args, f.name)
                if f.name == "randaugment":
                    value = None if value.lower() == "none" else tuple(int(v) for v in value.split(","))
                recipe[f.name] = value
    recipe["linear_probe"] = bool(model_args.linear_probe or recipe["linear_probe"])
    if recipe["linear_probe"]:  # MAE's linear probe: no mixing, smoothing, erasing or RandAugment
        recipe.update(randaugment=None, random_erasing=0.0, mixup_alpha=0.0, cutmix_alpha=0.0, label_smoothing=0.0,
                      drop_path_rate=0.0, layer_decay=1.0)
    return recipe


@dataclass
class Data:
    """The training source, its class names as config labels, and the evaluation split (None: no evaluation)."""

    train_source: Any
    labels: dict[str, Any]
    eval_split: str | None


def prepare_output_dir(training_args: TrainingArguments, *, overwrite: bool) -> None:
    """Every rank checks --output_dir; then the main process removes debris (and, overwriting, old checkpoints)."""
    from .trainer import _barrier

    check_launch(training_args.world_size, flag="--use_cpu")
    resuming = bool(training_args.resume_from_checkpoint)
    check_output_dir(training_args.output_dir, overwrite=overwrite, resuming=resuming)
    _barrier()  # every rank has looked at the folder before the main process writes into it
    if training_args.process_index == 0:
        run_state.clean_output_dir(training_args.output_dir, TRAINER, overwrite=overwrite, resuming=resuming)
    _barrier()


def load_data(data_args: DataArguments) -> Data:
    train_source = load_image_source(data_args.dataset, data_args.train_split, config_name=data_args.dataset_config,
                                     image_column=data_args.image_column, label_column=data_args.label_column)
    if not train_source.class_names:
        raise ValueError(f"{train_source.name!r}: the label column {train_source.label_column!r} is not a ClassLabel "
                         "feature, so the class names are unknown; add them to the dataset's features")
    eval_split = data_args.eval_split or next(
        (s for s in ("validation", "test") if s in available_splits(data_args.dataset, data_args.dataset_config)), None)
    names = train_source.class_names
    # problem_type fixed up front: soft (mixed) training targets must not make it "multi_label" on first sight.
    labels = dict(num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)},
                  problem_type="single_label_classification")
    return Data(train_source, labels, eval_split)


def build_model(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments,
                recipe: dict[str, Any], labels: dict[str, Any]):
    """The classifier, frozen per the mode and (on CPU) optimized; returns (model, trainable parameter count)."""
    overrides = parse_overrides(model_args.config_overrides)
    if recipe["drop_path_rate"] is not None:  # None: the preset's own (e.g. Swin's per size)
        overrides.setdefault("drop_path_rate", recipe["drop_path_rate"])
    if recipe["linear_probe"]:
        overrides.setdefault("classifier_norm", "batchnorm")
    default = load_recipe("finetune", recipe["name"]).model
    model = build_classifier(model_args.model, labels=labels, overrides=overrides, default=default)
    if model_args.optimize_for_cpu and training_args.device.type == "cpu":
        optimize_for_cpu(model)
    trainable = configure_trainable(model, linear_probe=recipe["linear_probe"],
                                    train_last_blocks=model_args.train_last_blocks)
    model.config.crop_pct = data_args.eval_crop_pct  # the saved image processor repeats the evaluation transform
    return model, trainable


def plan_steps(model_args: ModelArguments, training_args: TrainingArguments, train_source) -> int:
    """learning_rate (MAE's base rule when --base_learning_rate is given) and max_steps into training_args;
    returns the effective batch size."""
    schedule = plan_schedule(
        per_device_batch_size=training_args.per_device_train_batch_size,
        gradient_accumulation_steps=training_args.gradient_accumulation_steps, world_size=training_args.world_size,
        max_steps=training_args.max_steps, num_train_epochs=training_args.num_train_epochs,
        num_examples=train_source.num_examples, dataset_name=train_source.name,
        learning_rate=None if model_args.base_learning_rate is not None else training_args.learning_rate,
        base_learning_rate=model_args.base_learning_rate)
    training_args.learning_rate, training_args.max_steps = schedule.learning_rate, schedule.max_steps
    return schedule.effective_batch_size


def train_loader(data: Data, data_args: DataArguments, training_args: TrainingArguments, spec: PreprocessSpec,
                 recipe: dict[str, Any]) -> StreamLoader:
    transform = finetune_transform(spec, scale=(recipe["crop_scale_min"], 1.0), hflip=recipe["hflip"],
                                   randaugment=recipe["randaugment"], reduced_decode=data_args.reduced_decode)
    stream = ImageStream(data.train_source, transform, batch_size=training_args.per_device_train_batch_size,
                         collate=Collate(spec.mean, spec.std), shuffle_buffer=data_args.shuffle_buffer,
                         seed=training_args.seed, rank=training_args.process_index,
                         world_size=training_args.world_size, infinite=True)
    return StreamLoader(stream, num_workers=training_args.dataloader_num_workers,
                        pin_memory=training_args.dataloader_pin_memory and training_args.device.type == "cuda")


def restore(loader: StreamLoader, training_args: TrainingArguments) -> tuple[str | None, int]:
    """The checkpoint to resume from (None: a fresh run) and its step; this rank's data position restored."""
    path = run_state.resolve_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir, TRAINER)
    checkpoint, step = (str(path), 0) if path is not None else (None, 0)
    if path is not None:
        state = run_state.read_run_state(path)
        check_same_max_steps(state.max_steps, training_args.max_steps, checkpoint)
        step = state.step
        if not training_args.ignore_data_skip:
            loader.load_state_dict(run_state.read_data_state(
                path, rank=training_args.process_index, world_size=training_args.world_size,
                missing_hint="; pass --ignore_data_skip to resume the weights and optimizer with the training stream "
                             "restarted from its beginning"))
    # The loader continues from the restored position itself; the Trainer's fast-forward must not skip again.
    training_args.ignore_data_skip = True
    return checkpoint, step


def keys_file(data_args: DataArguments, training_args: TrainingArguments, kept: int) -> Path | None:
    """example_keys_rank<r>.txt with the first `kept` ids (those consumed up to the resumed checkpoint)."""
    if not data_args.log_example_keys:
        return None
    path = Path(training_args.output_dir) / f"example_keys_rank{training_args.process_index}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = path.read_text().splitlines(keepends=True) if path.exists() else []
    path.write_text("".join(lines[:kept]))
    return path


def eval_stream(data: Data, data_args: DataArguments, spec: PreprocessSpec) -> ImageStream | None:
    if data.eval_split is None:
        return None
    source = load_image_source(data_args.dataset, data.eval_split, config_name=data_args.dataset_config,
                               image_column=data.train_source.image_column,
                               label_column=data.train_source.label_column)
    if data_args.max_eval_samples:
        source.dataset = source.dataset.take(data_args.max_eval_samples)
    return ImageStream(source, eval_transform(spec, reduced_decode=data_args.reduced_decode), infinite=False)


def make_trainer(model, training_args: TrainingArguments, recipe: dict[str, Any], *, loader: StreamLoader,
                 keys: Path | None, evaluation: ImageStream | None, data: Data,
                 spec: PreprocessSpec) -> ImageClassificationTrainer:
    """The Trainer with our optimizer groups (layer decay), batch augmentation, loader and checkpoint callback."""
    from .param_groups import param_groups

    groups = param_groups(model, lr=training_args.learning_rate, weight_decay=training_args.weight_decay,
                          layer_decay=recipe["layer_decay"])
    optimizer = adamw(
        [{k: v for k, v in g.items() if k != "names"} for g in groups], lr=training_args.learning_rate,
        betas=(training_args.adam_beta1, training_args.adam_beta2), eps=training_args.adam_epsilon,
    )
    # Rotation is CompleteCheckpoints' job, after the new checkpoint is complete (the Trainer's comes before).
    total_limit, training_args.save_total_limit = training_args.save_total_limit, None
    num_classes = data.labels["num_labels"]
    return ImageClassificationTrainer(
        model=model, args=training_args, train_dataset=loader.stream, eval_dataset=evaluation,
        data_collator=Collate(spec.mean, spec.std), compute_metrics=metric_fn(num_classes),
        optimizers=(optimizer, None),
        batch_augment=BatchAugment(num_classes, random_erasing=recipe["random_erasing"],
                                   mixup_alpha=recipe["mixup_alpha"], cutmix_alpha=recipe["cutmix_alpha"],
                                   label_smoothing=recipe["label_smoothing"]),
        train_batches=TrainBatches(loader, keys), examples_per_epoch=data.train_source.num_examples,
        callbacks=[CompleteCheckpoints(loader, rank=training_args.process_index, world_size=training_args.world_size,
                                       total_limit=total_limit)],
    )


def train_and_evaluate(trainer: ImageClassificationTrainer, checkpoint: str | None, saved_step: int,
                       loader: StreamLoader) -> dict[str, float]:
    """Train (or, resumed at max_steps, take the checkpoint's weights), save the model, evaluate."""
    args = trainer.args
    if checkpoint is not None and saved_step >= args.max_steps:
        # The run was killed after its last checkpoint: nothing is left to train, and the Trainer would still take
        # one more step. Finish from the checkpoint's weights.
        from safetensors.torch import load_file

        logger.warning("%s is at max_steps=%d: nothing left to train; saving and evaluating its weights",
                       checkpoint, args.max_steps)
        trainer.model.load_state_dict(load_file(Path(checkpoint) / "model.safetensors"))
        metrics = {}
    else:
        metrics = dict(trainer.train(resume_from_checkpoint=checkpoint).metrics)
        if loader.bad_images:
            logger.warning("rank %d: %s", args.process_index, loader.report())
    trainer.save_model()
    if metrics:
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
    if trainer.eval_dataset is not None:
        eval_metrics = trainer.evaluate()
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        metrics.update(eval_metrics)
    return metrics


def finetune(model_args: ModelArguments, data_args: DataArguments,
             training_args: TrainingArguments) -> dict[str, float]:
    """Train, evaluate, save checkpoint + all_results.json + model card; returns the metrics."""
    prepare_output_dir(training_args, overwrite=data_args.overwrite_output_dir)
    if model_args.model:  # a mistyped --model path fails now, naming it, not after the data is prepared
        check_local_path(model_args.model)
    set_seed(training_args.seed)  # the fresh weights (head, or a whole model) are part of the run's reproducibility
    recipe = resolve_recipe(model_args, data_args)
    data = load_data(data_args)
    model, trainable = build_model(model_args, data_args, training_args, recipe, data.labels)
    spec = PreprocessSpec.from_model(model)
    effective_batch = plan_steps(model_args, training_args, data.train_source)
    loader = train_loader(data, data_args, training_args, spec, recipe)
    checkpoint, saved_step = restore(loader, training_args)
    # every batch is full: the ids consumed up to the checkpoint are its step's share of this rank
    keys = keys_file(data_args, training_args, saved_step * effective_batch // training_args.world_size)
    # Publishing happens once, after evaluation (below): no pushes from the Trainer while training.
    push_at_end, training_args.push_to_hub = training_args.push_to_hub, False
    trainer = make_trainer(model, training_args, recipe, loader=loader, keys=keys, data=data, spec=spec,
                           evaluation=eval_stream(data, data_args, spec))
    logger.info("fine-tuning %s: %d trainable parameters, %d steps, recipe %s", type(model).__name__, trainable,
                training_args.max_steps, recipe)
    metrics = train_and_evaluate(trainer, checkpoint, saved_step, loader)
    if trainer.is_world_process_zero():
        _write_run_files(Path(training_args.output_dir), model_args, data_args, training_args, recipe,
                         data.eval_split, data.train_source.name)
    if push_at_end:
        trainer.push_to_hub(commit_message=f"Fine-tuned {type(model).__name__} (hf-vision)")
    return metrics


def _write_run_files(folder: Path, model_args, data_args, training_args, recipe, eval_split, dataset_name) -> None:
    """run_args.json (resolved arguments) and the model card README.md."""
    keep = ("learning_rate", "weight_decay", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
            "lr_scheduler_type", "warmup_steps", "seed", "bf16", "fp16")
    write_run_args(folder, {**asdict(model_args), **asdict(data_args), **{k: getattr(training_args, k) for k in keep},
                            "recipe": recipe})
    base_model = model_args.model if model_args.model and "/" in model_args.model \
        and not Path(model_args.model).exists() else None
    write_card(folder, dataset_name, fallback_title=f"Fine-tuned {model_args.model or 'ViT'}", eval_split=eval_split,
               base_model=base_model)

"""Image-classification fine-tuning with transformers' Trainer, on our streaming data pipeline.

The model comes from a preset, an MAE pre-training checkpoint (its encoder becomes a ViT with global pooling,
as in MAE's fine-tuning), one of our saved/converted checkpoints, or a Hub name (ours, timm or transformers,
converted through `hf_vision.from_pretrained`). Labels and id2label come from the dataset's ClassLabel feature.

Two recipes fill every option left unset (None); `recipe="auto"` picks "demo" on the embedded digits and
"mae" on any other dataset:
- "mae": MAE's fine-tuning recipe: layer-wise lr decay 0.75, drop path 0.1, RandAugment(2, 9), RandomErasing
  0.25, Mixup 0.8 / CutMix 1.0, label smoothing 0.1, flips, crops of scale (0.08, 1); the scheduler is
  warm-up + cosine (TrainingArguments defaults set by the CLI). Made for ImageNet-scale runs.
- "demo": for 1,438 training digits and a few CPU minutes: light augmentation, no flips (digits are not
  mirror-symmetric). Without a named model, a small ViT is trained from scratch.
Linear probing (`linear_probe`) freezes the encoder and trains a BatchNorm + Linear head; partial fine-tuning
(`train_last_blocks=N`) trains the last N blocks and what follows them.

Several processes (`torchrun --nproc_per_node N`): every rank reads its own share of the training stream
(`split_dataset_by_node` inside `ImageStream`) through a `StreamLoader`, which the Trainer iterates as is; Accelerate's
default for iterable datasets (rank 0 reads every batch and sends slices to the others) is kept for evaluation
only, where its gather drops the padding of the last batch.
Exact resume: each checkpoint also holds every rank's data position (`data_state_rank<r>.json`); on
`--resume_from_checkpoint` the loader continues from it and the Trainer's own fast-forward (which would re-read and
re-augment every consumed batch) is switched off. Together with the Trainer's model, optimizer, scheduler and RNG
state, a resumed run reproduces the uninterrupted one.
Crash-safe checkpoints: a checkpoint counts only once `checkpoint_complete.json` is written into it (atomically,
last, after every rank's data position); `latest` picks the newest complete one, or starts from step 0 when there is
none. Old checkpoints are rotated out (`save_total_limit`) only after the new one is complete, each renamed aside
before it is deleted; a resumed run removes what an interrupted one left half-written.
Guards: a non-empty --output_dir needs --overwrite_output_dir unless resuming; resuming with another --max_steps is
refused (the learning-rate schedule spans the original one).
"""
from __future__ import annotations

import ast
import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..data import (
    BatchAugment,
    Collate,
    ImageStream,
    PreprocessSpec,
    StreamLoader,
    available_splits,
    eval_transform,
    finetune_transform,
    load_image_source,
)
from ..optimize import optimize_for_cpu
from ..hub import check_local_path, read_config

logger = logging.getLogger("hf_vision.training")

# A small ViT for the embedded 32x32 digits: 8x8 patches of 4 px, 4 blocks of width 128 (~0.55M parameters).
DEMO_VIT = dict(image_size=32, patch_size=4, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                intermediate_size=256, pooling="gap")
RECIPES: dict[str, dict[str, Any]] = {
    "mae": dict(layer_decay=0.75, drop_path_rate=0.1, randaugment=(2, 9), random_erasing=0.25, mixup_alpha=0.8,
                cutmix_alpha=1.0, label_smoothing=0.1, hflip=0.5, crop_scale_min=0.08),
    "demo": dict(layer_decay=1.0, drop_path_rate=0.0, randaugment=None, random_erasing=0.0, mixup_alpha=0.0,
                 cutmix_alpha=0.0, label_smoothing=0.1, hflip=0.0, crop_scale_min=0.7),
}
# TrainingArguments defaults of the CLI (a user's flags win): warm-up + cosine, MAE's weight decay.
TRAINING_DEFAULTS = dict(
    output_dir="outputs/finetune", per_device_train_batch_size=64, per_device_eval_batch_size=128,
    learning_rate=2e-3, weight_decay=0.05, lr_scheduler_type="cosine", warmup_steps=0.1, num_train_epochs=15,
    logging_steps=20, save_strategy="no", eval_strategy="no", report_to="none", remove_unused_columns=False,
    label_names=["labels"], adam_beta2=0.999, dataloader_num_workers=0,
    # Every parameter that trains takes part in every forward (frozen ones are not DDP's); the Trainer's default
    # (True) costs an extra graph traversal and prints a warning on every rank.
    ddp_find_unused_parameters=False,
)
DATA_STATE = "data_state_rank{rank}.json"  # one rank's data position, inside each Trainer checkpoint


def cli_defaults() -> dict[str, Any]:
    """TRAINING_DEFAULTS plus `use_cpu` on a machine without an accelerator: without it Accelerate does not join
    torchrun's processes (they would train as independent copies), with it they form one gloo group."""
    return {**TRAINING_DEFAULTS, "use_cpu": not torch.accelerator.is_available()}


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
        "help": "Defaults for unset augmentation/regularisation options: auto (demo on the embedded digits, "
                "mae otherwise), mae, or demo."})


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


def build_classifier(name: str | None, *, labels: dict[str, Any], overrides: dict[str, Any]):
    """A classification model with `labels` (num_labels, id2label, label2id); see the module docstring."""
    import hf_vision
    from transformers import AutoModelForImageClassification

    from hf_vision.modeling.mae.configuration_mae import MAEConfig
    from hf_vision.modeling.vit.modeling_vit import ViTForImageClassification

    if name is None:
        config = hf_vision.get_config("vit-base-patch16-224", **{**DEMO_VIT, **labels, **overrides})
        return ViTForImageClassification(config)
    if name in hf_vision.PRESETS:
        config = hf_vision.get_config(name)
        if isinstance(config, MAEConfig):
            config = config.vit_config(**labels, **overrides)
        else:
            config = hf_vision.get_config(name, **labels, **overrides)
        return AutoModelForImageClassification.from_config(config)
    saved = read_config(name)  # a mistyped path or an unreachable repo fails here, naming `name`
    if saved.get("model_type") == MAEConfig.model_type:  # an MAE pre-training run: its encoder, a new head
        config = MAEConfig.from_pretrained(name).vit_config(**labels, **overrides)
        return ViTForImageClassification.from_pretrained(name, config=config)
    return hf_vision.from_pretrained(name, auto_class="AutoModelForImageClassification",
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


class TrainBatches:
    """One rank's training batches as the Trainer iterates them (a `StreamLoader`), optionally logging example ids.

    It has no length and no `dataset`: the Trainer then runs `max_steps` and leaves the batches alone (no
    re-sharding, no dispatching from rank 0).
    """

    def __init__(self, loader: StreamLoader, keys_file: Path | None = None) -> None:
        self.loader, self.keys_file = loader, keys_file

    def __iter__(self):
        for batch in self.loader:
            if self.keys_file is not None:
                with self.keys_file.open("a") as f:
                    f.write("".join(f"{key}\n" for key in self.loader.last_keys))
            yield batch


COMPLETE = "checkpoint_complete.json"  # written last (atomically) into a Trainer checkpoint: only then is it one


def _barrier() -> None:
    from accelerate import PartialState

    PartialState().wait_for_everyone()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def list_complete_checkpoints(output_dir: str | Path) -> list[Path]:
    """checkpoint-N folders marked complete, oldest first (a crash mid-write leaves an unmarked folder)."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*")
             if p.name[len(PREFIX_CHECKPOINT_DIR) + 1:].isdigit() and (p / COMPLETE).is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX_CHECKPOINT_DIR) + 1:]))


def remove_checkpoint(path: Path) -> None:
    """Rename aside (atomic) before deleting, so a crash mid-delete never leaves a listable half folder."""
    import shutil

    doomed = path.with_name(f".deleting-{path.name}")
    os.replace(path, doomed)
    shutil.rmtree(doomed)


def remove_incomplete_checkpoints(output_dir: str | Path) -> None:
    """Debris of a crash: unmarked checkpoint-N folders and folders caught mid-deletion (main process only)."""
    import shutil

    folder = Path(output_dir)
    complete = set(list_complete_checkpoints(folder))
    for path in list(folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*")) + list(folder.glob(f".deleting-{PREFIX_CHECKPOINT_DIR}-*")):
        if path.is_dir() and path not in complete:
            logger.warning("removing %s: an incomplete checkpoint left by an interrupted run", path)
            shutil.rmtree(path)


class CompleteCheckpoints(TrainerCallback):
    """Finishes every checkpoint the Trainer saves: this rank's data position, then (main process, after all ranks
    wrote theirs) the completion mark, then rotation of old complete checkpoints, which the Trainer's own
    `save_total_limit` would do before the checkpoint is complete."""

    def __init__(self, loader: StreamLoader, *, rank: int, world_size: int, total_limit: int | None) -> None:
        self.loader, self.rank, self.world_size, self.total_limit = loader, rank, world_size, total_limit

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        folder.mkdir(parents=True, exist_ok=True)
        saved = {"world_size": self.world_size, "step": state.global_step, "loader": self.loader.state_dict()}
        _write_atomic(folder / DATA_STATE.format(rank=self.rank), json.dumps(saved))
        _barrier()
        if state.is_world_process_zero:
            _write_atomic(folder / COMPLETE, json.dumps({"step": state.global_step, "world_size": self.world_size}))
            complete = list_complete_checkpoints(args.output_dir)
            if self.total_limit:
                best = Path(state.best_model_checkpoint) if state.best_model_checkpoint else None
                for old in [p for p in complete[:-self.total_limit] if p != best]:
                    remove_checkpoint(old)
        _barrier()

    def on_step_end(self, args, state, control, **kwargs):
        # About to save over a checkpoint of the same step (a resumed run re-doing it): retire the old one first,
        # so that a crash mid-write cannot leave the old completion mark on a half-new folder.
        stale = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if control.should_save:
            if state.is_world_process_zero and stale.is_dir():
                remove_checkpoint(stale)
            _barrier()
        return control


def resolve_resume(spec: str | None, output_dir: str) -> str | None:
    """--resume_from_checkpoint: a checkpoint folder, or 'latest' (the newest complete checkpoint-N in output_dir;
    none yet: a fresh start, said in the log)."""
    if not spec:
        return None
    if spec == "latest":
        found = list_complete_checkpoints(output_dir)
        if not found:
            logger.warning("--resume_from_checkpoint latest: no complete %s-N under %s yet; starting from step 0",
                           PREFIX_CHECKPOINT_DIR, output_dir)
            return None
        return str(found[-1])
    if not Path(spec).is_dir():
        raise FileNotFoundError(f"--resume_from_checkpoint {spec}: no such checkpoint folder")
    if not (Path(spec) / COMPLETE).is_file():
        raise FileNotFoundError(f"--resume_from_checkpoint {spec}: incomplete checkpoint (no {COMPLETE}; the run "
                                "was interrupted while writing it); pass an older one or 'latest'")
    return spec


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


def restore_data_position(loader: StreamLoader, checkpoint: str, *, rank: int, world_size: int) -> None:
    path = Path(checkpoint) / DATA_STATE.format(rank=rank)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing, so the data position of {checkpoint} is unknown; pass --ignore_data_skip to resume "
            "the weights and optimizer with the training stream restarted from its beginning")
    saved = json.loads(path.read_text())
    if saved["world_size"] != world_size:
        raise ValueError(f"{checkpoint} was written by {saved['world_size']} processes, this run has {world_size}: "
                         "resume with the same number of processes to continue the data exactly")
    loader.load_state_dict(saved["loader"])


class ImageClassificationTrainer(Trainer):
    """Trainer that applies the batch-level augmentation (Mixup/CutMix, smoothing, erasing) to training batches
    and iterates our per-rank training loader as is (see the module docstring)."""

    def __init__(self, *args: Any, batch_augment: BatchAugment | None = None,
                 train_batches: TrainBatches | None = None, examples_per_epoch: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_augment = batch_augment
        self.train_batches = train_batches
        self.examples_per_epoch = examples_per_epoch

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # Our loader is endless, so the Trainer would count the whole run as one epoch ("epoch 1.0" at the end
        # of a 15-epoch run): report the epochs of data actually consumed (none when the size is unknown).
        args = self.args
        per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        self.state.epoch = (self.state.global_step * per_step / self.examples_per_epoch
                            if self.examples_per_epoch else None)
        super().log(logs, start_time)

    def get_train_dataloader(self):
        return self.train_batches if self.train_batches is not None else super().get_train_dataloader()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training and self.batch_augment is not None and self.batch_augment.active:
            inputs = self.batch_augment(inputs)
        return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)

    def push_to_hub(self, commit_message: str | None = "End of training", blocking: bool = True,
                    token: str | None = None, revision: str | None = None, private: bool | None = None,
                    **card_kwargs: Any):
        """Trainer's push, through hf_vision's one publishing path: the saved model, the run's results files
        and our card (not the Trainer's generic one) in one commit to `hub_model_id` (default: the output
        folder's name). card_kwargs: model card fields (datasets, local_data, eval_split, base_model, ...)."""
        from ..hub import push_folder

        self.save_model(_internal_call=True)
        if not self.is_world_process_zero():
            return None
        return push_folder(
            self.args.output_dir, self.args.hub_model_id or Path(self.args.output_dir).resolve().name,
            private=private if private is not None else (self.args.hub_private_repo or None),
            revision=revision or self.args.hub_revision, commit_message=commit_message,
            token=token or self.args.hub_token, card_kwargs=card_kwargs or None,
        )


def _metric_fn(num_classes: int):
    """Top-1, and top-5 only when 5 < number of classes (otherwise it is 1.0 by construction)."""
    import evaluate

    from .metrics import TOP_K_ACCURACY

    metric = evaluate.load(TOP_K_ACCURACY)
    top_k = tuple(k for k in (1, 5) if k == 1 or k < num_classes)

    def compute(eval_pred) -> dict[str, float]:
        logits, labels = eval_pred.predictions, eval_pred.label_ids
        logits = logits[0] if isinstance(logits, tuple) else logits
        return metric.compute(predictions=logits, references=labels, top_k=top_k)

    return compute


def resolve_recipe(model_args: ModelArguments, data_args: DataArguments) -> dict[str, Any]:
    from ..data.sources import EMBEDDED_NAMES

    name = model_args.recipe
    if name == "auto":
        name = "demo" if (data_args.dataset or "digits") in EMBEDDED_NAMES else "mae"
    if name not in RECIPES:
        raise ValueError(f"recipe={model_args.recipe!r} is not one of auto, {', '.join(RECIPES)}")
    recipe = dict(RECIPES[name], name=name)
    for args in (model_args, data_args):
        for f in fields(args):
            if f.name in recipe and getattr(args, f.name) is not None:
                value = getattr(args, f.name)
                if f.name == "randaugment":
                    value = None if value.lower() == "none" else tuple(int(v) for v in value.split(","))
                recipe[f.name] = value
    if model_args.linear_probe:  # MAE's linear probe: no mixing, smoothing, erasing or RandAugment
        recipe.update(randaugment=None, random_erasing=0.0, mixup_alpha=0.0, cutmix_alpha=0.0, label_smoothing=0.0,
                      drop_path_rate=0.0, layer_decay=1.0)
    return recipe


def finetune(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments) -> dict[str, float]:
    """Train, evaluate, save checkpoint + all_results.json + model card; returns the metrics."""
    from .param_groups import param_groups

    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and training_args.world_size != launched:
        raise RuntimeError(
            f"launched as {launched} processes, but TrainingArguments sees world_size={training_args.world_size}: "
            "on a machine without a GPU pass --use_cpu so that the processes train together (gloo)")
    resuming = bool(training_args.resume_from_checkpoint)
    check_output_dir(training_args.output_dir, overwrite=data_args.overwrite_output_dir, resuming=resuming)
    _barrier()  # every rank has looked at the folder before the main process writes into it
    if training_args.process_index == 0 and (resuming or data_args.overwrite_output_dir):
        remove_incomplete_checkpoints(training_args.output_dir)
        if not resuming:
            for old in list_complete_checkpoints(training_args.output_dir):
                logger.warning("--overwrite_output_dir: removing %s of an earlier run", old)
                remove_checkpoint(old)
    _barrier()
    if model_args.model:  # a mistyped --model path fails now, naming it, not after the data is prepared
        check_local_path(model_args.model)
    set_seed(training_args.seed)  # the fresh weights (head, or a whole model) are part of the run's reproducibility
    recipe = resolve_recipe(model_args, data_args)
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
    overrides = parse_overrides(model_args.config_overrides)
    overrides.setdefault("drop_path_rate", recipe["drop_path_rate"])
    if model_args.linear_probe:
        overrides.setdefault("classifier_norm", "batchnorm")
    model = build_classifier(model_args.model, labels=labels, overrides=overrides)
    if model_args.optimize_for_cpu and training_args.device.type == "cpu":
        optimize_for_cpu(model)
    trainable = configure_trainable(model, linear_probe=model_args.linear_probe,
                                    train_last_blocks=model_args.train_last_blocks)
    model.config.crop_pct = data_args.eval_crop_pct  # the saved image processor repeats the evaluation transform
    spec = PreprocessSpec.from_model(model)
    world = training_args.world_size
    effective_batch = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps * world
    if model_args.base_learning_rate is not None:
        training_args.learning_rate = model_args.base_learning_rate * effective_batch / 256
    if training_args.max_steps <= 0:
        if not train_source.num_examples:
            raise ValueError(f"{train_source.name!r} does not say how many examples it has: pass --max_steps")
        training_args.max_steps = math.ceil(training_args.num_train_epochs * train_source.num_examples / effective_batch)

    rank = training_args.process_index
    train_stream = ImageStream(
        train_source,
        finetune_transform(spec, scale=(recipe["crop_scale_min"], 1.0), hflip=recipe["hflip"],
                           randaugment=recipe["randaugment"], reduced_decode=data_args.reduced_decode),
        batch_size=training_args.per_device_train_batch_size, collate=Collate(spec.mean, spec.std),
        shuffle_buffer=data_args.shuffle_buffer, seed=training_args.seed, rank=rank, world_size=world, infinite=True,
    )
    train_loader = StreamLoader(train_stream, num_workers=training_args.dataloader_num_workers,
                                pin_memory=training_args.dataloader_pin_memory and training_args.device.type == "cuda")
    checkpoint = resolve_resume(training_args.resume_from_checkpoint, training_args.output_dir)
    if checkpoint is not None:
        saved_state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
        check_same_max_steps(saved_state.get("max_steps"), training_args.max_steps, checkpoint)
    if checkpoint is not None and not training_args.ignore_data_skip:
        restore_data_position(train_loader, checkpoint, rank=rank, world_size=world)
    # The loader continues from the restored position itself; the Trainer's fast-forward must not skip again.
    training_args.ignore_data_skip = True
    keys_file = Path(training_args.output_dir) / f"example_keys_rank{rank}.txt" if data_args.log_example_keys else None
    if keys_file is not None:  # keep the ids consumed up to the checkpoint we resume from (every batch is full)
        keys_file.parent.mkdir(parents=True, exist_ok=True)
        kept = 0 if checkpoint is None else saved_state["global_step"] * effective_batch // world
        lines = keys_file.read_text().splitlines(keepends=True) if keys_file.exists() else []
        keys_file.write_text("".join(lines[:kept]))
    eval_stream = None
    if eval_split is not None:
        eval_source = load_image_source(data_args.dataset, eval_split, config_name=data_args.dataset_config,
                                        image_column=train_source.image_column, label_column=train_source.label_column)
        if data_args.max_eval_samples:
            eval_source.dataset = eval_source.dataset.take(data_args.max_eval_samples)
        eval_stream = ImageStream(eval_source, eval_transform(spec, reduced_decode=data_args.reduced_decode),
                                  infinite=False)
    groups = param_groups(model, lr=training_args.learning_rate, weight_decay=training_args.weight_decay,
                          layer_decay=recipe["layer_decay"])
    optimizer = torch.optim.AdamW(
        [{k: v for k, v in g.items() if k != "names"} for g in groups], lr=training_args.learning_rate,
        betas=(training_args.adam_beta1, training_args.adam_beta2), eps=training_args.adam_epsilon,
    )
    # Publishing happens once, after evaluation (below): no pushes from the Trainer while training.
    push_at_end, training_args.push_to_hub = training_args.push_to_hub, False
    # Rotation is CompleteCheckpoints' job, after the new checkpoint is complete (the Trainer's comes before).
    total_limit, training_args.save_total_limit = training_args.save_total_limit, None
    trainer = ImageClassificationTrainer(
        model=model, args=training_args, train_dataset=train_stream, eval_dataset=eval_stream,
        data_collator=Collate(spec.mean, spec.std), compute_metrics=_metric_fn(len(names)), optimizers=(optimizer, None),
        batch_augment=BatchAugment(len(names), random_erasing=recipe["random_erasing"],
                                   mixup_alpha=recipe["mixup_alpha"], cutmix_alpha=recipe["cutmix_alpha"],
                                   label_smoothing=recipe["label_smoothing"]),
        train_batches=TrainBatches(train_loader, keys_file), examples_per_epoch=train_source.num_examples,
        callbacks=[CompleteCheckpoints(train_loader, rank=rank, world_size=world, total_limit=total_limit)],
    )
    logger.info("fine-tuning %s: %d trainable parameters, %d steps, recipe %s", type(model).__name__, trainable,
                training_args.max_steps, recipe)
    if checkpoint is not None and saved_state["global_step"] >= training_args.max_steps:
        # The run was killed after its last checkpoint: nothing is left to train, and the Trainer would still take
        # one more step. Finish from the checkpoint's weights.
        from safetensors.torch import load_file

        logger.warning("%s is at max_steps=%d: nothing left to train; saving and evaluating its weights",
                       checkpoint, training_args.max_steps)
        model.load_state_dict(load_file(Path(checkpoint) / "model.safetensors"))
        metrics = {}
    else:
        train_result = trainer.train(resume_from_checkpoint=checkpoint)
        if train_loader.bad_images:
            logger.warning("rank %d: %s", rank, train_loader.report())
        metrics = dict(train_result.metrics)
    trainer.save_model()
    if metrics:
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
    if eval_stream is not None:
        eval_metrics = trainer.evaluate()
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        metrics.update(eval_metrics)
    if trainer.is_world_process_zero():
        _write_run_files(Path(training_args.output_dir), model_args, data_args, training_args, recipe, eval_split,
                         train_source.name)
    if push_at_end:
        trainer.push_to_hub(commit_message=f"Fine-tuned {type(model).__name__} (hf-vision)")
    return metrics


def _write_run_files(folder: Path, model_args, data_args, training_args, recipe, eval_split, dataset_name) -> None:
    """run_args.json (resolved arguments) and the model card README.md."""
    keep = ("learning_rate", "weight_decay", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
            "lr_scheduler_type", "warmup_steps", "seed", "bf16", "fp16")
    run_args = {**asdict(model_args), **asdict(data_args), **{k: getattr(training_args, k) for k in keep},
                "recipe": recipe}
    (folder / "run_args.json").write_text(json.dumps(run_args, indent=2, default=str) + "\n")
    try:
        from ..model_card import card_for_folder, data_statement

        datasets, local_data = data_statement(dataset_name)
        card = card_for_folder(folder, datasets=datasets, local_data=local_data, eval_split=eval_split,
                               base_model=model_args.model if model_args.model and "/" in model_args.model
                               and not Path(model_args.model).exists() else None)
        card.save(folder / "README.md")
    except Exception as err:  # the card is documentation: never lose a finished run over it
        logger.warning("could not write the model card: %s", err)
        (folder / "README.md").write_text(f"# Fine-tuned {model_args.model or 'ViT'}\n\nSee all_results.json.\n")

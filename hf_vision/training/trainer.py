"""The Trainer side of fine-tuning: our per-rank batches as the Trainer iterates them, the callback that completes
every checkpoint in the run-state schema (hf_vision.training.run_state), the Trainer subclass (batch-level
augmentation, consumed epochs, one publishing path), and the top-1/top-5 metric."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import Trainer, TrainerCallback

from ..data import BatchAugment, StreamLoader
from . import run_state
from .run_state import TRAINER, RunState


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


def _barrier() -> None:
    from accelerate import PartialState

    PartialState().wait_for_everyone()


class CompleteCheckpoints(TrainerCallback):
    """Finishes every checkpoint the Trainer saves: this rank's data position, then (main process, after all ranks
    wrote theirs) the completion mark, then rotation of old complete checkpoints, which the Trainer's own
    `save_total_limit` would do before the checkpoint is complete."""

    def __init__(self, loader: StreamLoader, *, rank: int, world_size: int, total_limit: int | None) -> None:
        self.loader, self.rank, self.world_size, self.total_limit = loader, rank, world_size, total_limit

    def on_save(self, args, state, control, **kwargs):
        folder = TRAINER.path(args.output_dir, state.global_step)
        folder.mkdir(parents=True, exist_ok=True)
        run_state.write_data_state(folder, rank=self.rank, world_size=self.world_size, step=state.global_step,
                                   loader_state=self.loader.state_dict())
        _barrier()
        if state.is_world_process_zero:
            run_state.mark_complete(folder, RunState(step=state.global_step, world_size=self.world_size,
                                                     max_steps=state.max_steps))
            best = Path(state.best_model_checkpoint) if state.best_model_checkpoint else None
            run_state.rotate(args.output_dir, TRAINER, self.total_limit, keep=best)
        _barrier()

    def on_step_end(self, args, state, control, **kwargs):
        # About to save over a checkpoint of the same step (a resumed run re-doing it): retire the old one first,
        # so that a crash mid-write cannot leave the old completion mark on a half-new folder.
        stale = TRAINER.path(args.output_dir, state.global_step)
        if control.should_save:
            if state.is_world_process_zero and stale.is_dir():
                run_state.remove_checkpoint(stale)
            _barrier()
        return control


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


def metric_fn(num_classes: int):
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



"""Fine-tune a classification model (ours) with transformers' Trainer.

    python scripts/finetune.py                      # small ViT on the embedded digits, CPU, a few minutes
    python scripts/finetune.py --model outputs/pretrain_mae --dataset <hub name or folder> --output_dir out
    python scripts/finetune.py --recipe mae --model out/mae --dataset <...>   # a recipe file; flags override it
    torchrun --nproc_per_node 2 scripts/finetune.py ...   # several processes (on CPU: gloo, --use_cpu is the default)

Every TrainingArguments flag works (--max_steps, --learning_rate, --per_device_train_batch_size, --bf16 ...),
plus the model and data options of hf_vision.training.finetune (--linear_probe, --train_last_blocks N,
--layer_decay, --mixup_alpha, --cutmix_alpha, --label_smoothing, --randaugment 2,9, ...). --recipe NAME
(hf_vision/recipes/finetune_<name>.py: demo, mae, linear_probe, vit_scratch, swin) sets the defaults of all of them.
Writes the checkpoint, all_results.json, run_args.json and a model card into --output_dir; with --push_to_hub
(--hub_model_id me/name) that folder is published in one commit after evaluation.
"""
from __future__ import annotations

import argparse

from transformers import HfArgumentParser, TrainingArguments

from hf_vision.cli import run_main
from hf_vision.training.finetune import DataArguments, ModelArguments, cli_defaults, finetune


def parse_args(argv: list[str] | None = None):
    """The recipe named by --recipe gives the defaults; every flag given overrides them."""
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--recipe", default="auto")
    recipe = first.parse_known_args(argv)[0].recipe
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    parser.set_defaults(**cli_defaults(recipe))
    return parser.parse_args_into_dataclasses(args=argv)


def main(argv: list[str] | None = None) -> dict:
    model_args, data_args, training_args = parse_args(argv)
    metrics = finetune(model_args, data_args, training_args)
    if training_args.process_index == 0:
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()})
    return metrics


if __name__ == "__main__":
    run_main(main)

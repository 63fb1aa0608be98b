"""MAE pre-training with Accelerate.

    python scripts/pretrain_mae.py        # small MAE on the embedded digits, CPU, a few minutes
    accelerate launch --mixed_precision bf16 scripts/pretrain_mae.py --model mae-vit-base-patch16 \
        --dataset <hub name or folder> --per_device_batch_size 256 --checkpointing_steps 1000 --output_dir out
    torchrun --nproc_per_node 2 scripts/pretrain_mae.py ...   # two processes (without a GPU: CPU, gloo)

Settings left unset come from a recipe file: --recipe demo (the default; hf_vision/recipes/pretrain_demo.py)
or --recipe mae (the paper's ViT-B/16 recipe); flags override it. Resume: add --resume_from_checkpoint latest (or a
checkpoint path). All options: --help, or hf_vision.training.pretrain.PretrainArguments.
"""
from __future__ import annotations

import json

from transformers import HfArgumentParser

from hf_vision.cli import run_main
from hf_vision.training.pretrain import PretrainArguments, pretrain


def parse_args(argv: list[str] | None = None) -> PretrainArguments:
    (args,) = HfArgumentParser(PretrainArguments).parse_args_into_dataclasses(args=argv)
    return args


def main(argv: list[str] | None = None) -> dict:
    from accelerate import PartialState

    summary = pretrain(parse_args(argv))
    if PartialState().is_main_process:
        print(json.dumps({k: v for k, v in summary.items() if k != "data_report"}, indent=None))
    return summary


if __name__ == "__main__":
    run_main(main)

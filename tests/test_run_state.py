"""Checkpoints in the run-state layout of before version 2 still resume, exactly; a newer version is refused by
name. The version-1 files are written here explicitly, in the formats the scripts wrote until run_state.py:
pre-training: no completion mark, `trainer_state.json` {"step", "world_size", "loss", "max_steps"}, and
`data_state_rank<r>.json` holding the bare StreamLoader state; fine-tuning: `checkpoint_complete.json`
{"step", "world_size"} and `data_state_rank<r>.json` {"world_size", "loader"}, neither with a version."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hf_vision.recipes import load_recipe, recipe_names
from hf_vision.training.run_state import COMPLETE, RUN_STATE_VERSION

from .test_finetune import TINY as FT_TINY
from .test_finetune import _logged_losses
from .test_finetune import _script as _finetune_script
from .test_pretrain_mae import BASE, _losses
from .test_pretrain_mae import _script as _pretrain_script


def _to_version_1_pretrain(checkpoint: Path) -> None:
    (checkpoint / COMPLETE).unlink()
    data = json.loads((checkpoint / "data_state_rank0.json").read_text())
    (checkpoint / "data_state_rank0.json").write_text(json.dumps(data["loader"]))
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert set(state) == {"step", "world_size", "loss", "max_steps"}  # unchanged since version 1


def test_version_1_pretrain_checkpoint_resumes_exactly(tmp_path):
    args = ["--max_steps", "4", "--checkpointing_steps", "2", *BASE, "--num_reconstructions", "1"]
    script = _pretrain_script()
    script.main(["--output_dir", str(tmp_path / "full"), *args])
    cut = tmp_path / "cut"
    script.main(["--output_dir", str(cut), *args, "--stop_after_steps", "2"])
    _to_version_1_pretrain(cut / "checkpoints" / "step_00000002")
    script.main(["--output_dir", str(cut), *args, "--resume_from_checkpoint", "latest"])
    assert _losses(cut) == _losses(tmp_path / "full") and len(_losses(cut)) == 4
    full, resumed = load_file(tmp_path / "full" / "model.safetensors"), load_file(cut / "model.safetensors")
    assert all(torch.equal(full[k], resumed[k]) for k in full)
    mark = json.loads((cut / "checkpoints" / "step_00000004" / COMPLETE).read_text())
    assert mark == {"step": 4, "world_size": 1, "max_steps": 4, "version": RUN_STATE_VERSION}


def test_version_1_finetune_checkpoint_resumes_exactly_and_a_newer_version_is_refused(tmp_path):
    args = ["--max_steps", "2", "--save_strategy", "steps", "--save_steps", "1", "--per_device_train_batch_size", "4",
            "--shuffle_buffer", "16", "--max_eval_samples", "8", "--logging_steps", "1", "--config_overrides", FT_TINY]
    script, out = _finetune_script(), tmp_path / "run"
    script.main(["--output_dir", str(out), *args])
    reference = load_file(out / "model.safetensors")
    ref_losses = _logged_losses(out / "checkpoint-2")
    cut = tmp_path / "cut"
    shutil.copytree(out / "checkpoint-1", cut / "checkpoint-1")
    (cut / "checkpoint-1" / COMPLETE).write_text(json.dumps({"step": 1, "world_size": 1}))
    data = json.loads((cut / "checkpoint-1" / "data_state_rank0.json").read_text())
    (cut / "checkpoint-1" / "data_state_rank0.json").write_text(json.dumps(
        {"world_size": 1, "loader": data["loader"]}))
    script.main(["--output_dir", str(cut), *args, "--resume_from_checkpoint", "latest"])
    resumed = load_file(cut / "model.safetensors")
    assert reference.keys() == resumed.keys() and all(torch.equal(reference[k], resumed[k]) for k in reference)
    assert _logged_losses(cut / "checkpoint-2") == ref_losses

    mark = json.loads((cut / "checkpoint-2" / COMPLETE).read_text())
    (cut / "checkpoint-2" / COMPLETE).write_text(json.dumps({**mark, "version": 99}))
    with pytest.raises(ValueError, match="run-state version 99"):
        script.main(["--output_dir", str(cut), *args, "--resume_from_checkpoint", "latest"])


def test_recipes_are_files_that_say_how_to_run_them():
    assert set(recipe_names("pretrain")) == {"demo", "mae"}
    assert set(recipe_names("finetune")) == {"demo", "mae", "linear_probe", "vit_scratch", "swin"}
    for task in ("pretrain", "finetune"):
        for name in recipe_names(task):
            recipe = load_recipe(task, name)
            doc = __import__(f"hf_vision.recipes.{task}_{name}", fromlist=["_"]).__doc__
            assert "scripts/" in doc and ("Result" in doc), (task, name)
            assert recipe.model is None or "preset" in recipe.model
    with pytest.raises(ValueError, match="choose one of demo, mae"):
        load_recipe("pretrain", "nope")


def test_pretrain_recipe_fills_only_unset_options():
    from hf_vision.training.pretrain import PretrainArguments, resolve_args

    demo = resolve_args(PretrainArguments())
    assert (demo.num_train_epochs, demo.per_device_batch_size, demo.base_learning_rate, demo.weight_decay,
            demo.warmup_steps) == (30.0, 128, 1.5e-4, 0.05, 0.05)
    paper = resolve_args(PretrainArguments(recipe="mae", per_device_batch_size=8))
    assert paper.num_train_epochs == 800 and paper.per_device_batch_size == 8


def test_finetune_cli_recipe_sets_defaults_and_flags_win():
    script = _finetune_script()
    _, _, training = script.parse_args(["--output_dir", "x"])
    assert (training.learning_rate, training.num_train_epochs, training.per_device_train_batch_size) == (2e-3, 15, 64)
    _, _, training = script.parse_args(["--output_dir", "x", "--recipe", "swin", "--learning_rate", "5e-4"])
    assert (training.learning_rate, training.num_train_epochs, training.max_grad_norm) == (5e-4, 300, 5.0)


"""scripts/pretrain_mae.py end to end on the embedded digits (tiny settings): outputs, exact resume, the
non-finite-loss stop, checkpoint safety, and a real two-process CPU run (torchrun, gloo) on disjoint data."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import hf_vision
from hf_vision.training.pretrain import NonFiniteLossError, list_checkpoints, resolve_checkpoint

from .isolation import isolated_command

ROOT = Path(__file__).resolve().parents[1]
TINY = ("hidden_size=32,num_hidden_layers=1,num_attention_heads=2,intermediate_size=64,decoder_hidden_size=32,"
        "decoder_num_hidden_layers=1,decoder_num_attention_heads=2,decoder_intermediate_size=64")
BASE = ["--config_overrides", TINY, "--per_device_batch_size", "16", "--shuffle_buffer", "64", "--report_to", "none",
        "--num_reconstructions", "3"]


def _script():
    spec = importlib.util.spec_from_file_location("pretrain_script", ROOT / "scripts" / "pretrain_mae.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _losses(folder: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (folder / "train_log.jsonl").read_text().splitlines()]


def test_pretrain_end_to_end_outputs(tmp_path):
    out = tmp_path / "run"
    summary = _script().main(["--output_dir", str(out), "--max_steps", "4", "--checkpointing_steps", "2", *BASE,
                              "--report_to", "tensorboard"])
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert all(set(r) >= {"step", "loss", "lr", "img_per_s"} for r in log)
    assert summary["final_loss"] == log[-1]["loss"]
    run_args = json.loads((out / "run_args.json").read_text())
    assert run_args["max_steps"] == 4 and run_args["learning_rate"] == pytest.approx(1.5e-4 * 16 / 256)
    assert list(out.glob("pretrain_mae/events.out.tfevents*")), "TensorBoard tracker wrote nothing"
    assert [p.name for p in list_checkpoints(out)] == ["step_00000002", "step_00000004"]
    grid = Image.open(out / "reconstructions.png")
    assert grid.size[0] > 200 and grid.size[1] > 150
    from transformers import AutoModel, AutoModelForPreTraining

    assert type(AutoModelForPreTraining.from_pretrained(out)) is hf_vision.MAEForPreTraining
    assert type(AutoModel.from_pretrained(out)) is hf_vision.MAEModel
    # Remote code, in an interpreter that cannot import hf_vision or modeling.
    code = (
        "import torch\n"
        "from transformers import AutoModelForPreTraining\n"
        f"m = AutoModelForPreTraining.from_pretrained({str(out)!r}, trust_remote_code=True)\n"
        "print(type(m).__name__, m(torch.randn(1, 3, 32, 32)).loss.shape)\n"
    )
    result = subprocess.run(isolated_command(code), cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[0] == "MAEForPreTraining"


def test_resume_reproduces_the_uninterrupted_losses(tmp_path):
    args = ["--max_steps", "6", "--checkpointing_steps", "2", *BASE]
    script = _script()
    script.main(["--output_dir", str(tmp_path / "full"), *args])
    script.main(["--output_dir", str(tmp_path / "cut"), *args, "--stop_after_steps", "3"])
    assert not (tmp_path / "cut" / "model.safetensors").exists()  # interrupted: no final model yet
    assert len(_losses(tmp_path / "cut")) == 3
    script.main(["--output_dir", str(tmp_path / "cut"), *args, "--resume_from_checkpoint", "latest"])
    full, resumed = _losses(tmp_path / "full"), _losses(tmp_path / "cut")
    assert len(full) == 6 and resumed == full  # bitwise: same data, masks, optimizer and schedule
    assert full[-1] < full[0]


def test_bf16_gradient_accumulation_and_clipping(tmp_path):
    out = tmp_path / "bf16"
    summary = _script().main(["--output_dir", str(out), "--max_steps", "2", "--gradient_accumulation_steps", "2",
                              "--max_grad_norm", "1.0", "--mixed_precision", "bf16", "--cpu", *BASE])
    run_args = json.loads((out / "run_args.json").read_text())
    assert run_args["effective_batch_size"] == 32 and run_args["learning_rate"] == pytest.approx(1.5e-4 * 32 / 256)
    assert summary["steps"] == 2 and all(abs(x) < 100 for x in _losses(out))
    assert (out / "model.safetensors").exists()


def test_push_to_hub_hands_the_finished_folder_to_hf_vision_hub(tmp_path, monkeypatch):
    import hf_vision.hub

    pushed = {}

    def fake_push(folder, repo_id, **kwargs):  # what the folder holds when the push happens (after the run)
        pushed.update(repo_id=repo_id, files=sorted(p.name for p in Path(folder).iterdir()),
                      card=(Path(folder) / "README.md").read_text(), **kwargs)

    monkeypatch.setattr(hf_vision.hub, "push_folder", fake_push)
    _script().main(["--output_dir", str(tmp_path / "run"), "--max_steps", "1", *BASE, "--push_to_hub",
                    "--hub_model_id", "me/tiny-mae"])
    assert pushed["repo_id"] == "me/tiny-mae"
    assert {"model.safetensors", "all_results.json", "run_args.json", "README.md", "preprocessor_config.json",
            "modeling_mae.py"} <= set(pushed["files"])
    assert "sklearn.datasets.load_digits" in pushed["card"] and "datasets:" not in pushed["card"]


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    forward = hf_vision.MAEForPreTraining.forward

    def poisoned(self, *args, **kwargs):
        out = forward(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:  # the third training step
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(hf_vision.MAEForPreTraining, "forward", poisoned)
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"step 3.*step_00000002"):
        _script().main(["--output_dir", str(out), "--max_steps", "5", "--checkpointing_steps", "2", *BASE])
    assert [p.name for p in list_checkpoints(out)] == ["step_00000002"]
    assert len(_losses(out)) == 2 and not (out / "model.safetensors").exists()


def test_checkpoint_listing_ignores_partial_writes(tmp_path):
    root = tmp_path / "checkpoints"
    for name in ("step_00000010", "step_00000002", ".tmp-step_00000020"):
        (root / name).mkdir(parents=True)
    (root / "step_00000010" / "trainer_state.json").write_text("{}")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000002", "step_00000010"]
    assert resolve_checkpoint("latest", tmp_path).name == "step_00000010"
    with pytest.raises(FileNotFoundError):
        resolve_checkpoint(str(root / ".tmp-step_00000020"), tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        resolve_checkpoint("latest", tmp_path / "elsewhere")


@pytest.mark.slow
def test_two_process_cpu_run_sees_disjoint_data(tmp_path):
    """A real 2-rank gloo run as a user types it: `torchrun --nproc_per_node 2`, no --cpu (CPU mode is the default
    without an accelerator; accelerate launch --cpu would start only one process)."""
    out = tmp_path / "ddp"
    # `python -m torch.distributed.run` is torchrun run by this interpreter (a venv may lack its own torchrun).
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "scripts" / "pretrain_mae.py"), "--output_dir", str(out), "--max_steps", "3",
           "--checkpointing_steps", "2", "--log_example_keys", *BASE]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count('"final_loss"') == 1, result.stdout[-2000:]  # the summary: main process only
    keys = [(out / f"example_keys_rank{r}.txt").read_text().split() for r in range(2)]
    assert len(keys[0]) == len(keys[1]) == 3 * 16  # equal steps on both ranks
    assert not set(keys[0]) & set(keys[1])  # disjoint shards of the data
    assert all(k.startswith("digit") for k in keys[0] + keys[1])
    assert len(_losses(out)) == 3
    state = json.loads((out / "checkpoints" / "step_00000003" / "trainer_state.json").read_text())
    assert state["world_size"] == 2
    assert {p.name for p in (out / "checkpoints" / "step_00000003").glob("data_state_rank*.json")} == {
        "data_state_rank0.json", "data_state_rank1.json"}
    assert type(hf_vision.MAEForPreTraining.from_pretrained(out)) is hf_vision.MAEForPreTraining


def test_cpu_opt_in_is_default_and_leaves_the_saved_model_alone(tmp_path, monkeypatch):
    """On CPU training runs under optimize_for_cpu unless --no_optimize_for_cpu; the saved files match."""
    from safetensors.torch import load_file

    from hf_vision.optimize import is_optimized_for_cpu
    from hf_vision.training import pretrain

    seen = []
    real = pretrain.optimize_for_cpu
    monkeypatch.setattr(pretrain, "optimize_for_cpu", lambda model: seen.append(model) or real(model))
    _script().main(["--output_dir", str(tmp_path / "on"), "--max_steps", "1", *BASE])
    assert len(seen) == 1 and is_optimized_for_cpu(seen[0])
    _script().main(["--output_dir", str(tmp_path / "off"), "--max_steps", "1", *BASE, "--no_optimize_for_cpu"])
    assert len(seen) == 1
    assert (tmp_path / "on" / "config.json").read_text() == (tmp_path / "off" / "config.json").read_text()
    on, off = load_file(tmp_path / "on" / "model.safetensors"), load_file(tmp_path / "off" / "model.safetensors")
    assert on.keys() == off.keys()
    for key in on:
        torch.testing.assert_close(on[key], off[key], atol=1e-5, rtol=1e-5, msg=lambda m: f"{key}: {m}")


@pytest.mark.slow
def test_kill_at_every_file_of_a_checkpoint_write_and_mid_rotation_resumes_exactly(tmp_path):
    """A kill before each file operation of saving step 4 (Accelerate's state files, data position, trainer state,
    the rename into place) and in the middle of rotating step 2 out; resumed with `latest`: the reference run's
    losses and weights, bitwise."""
    from safetensors.torch import load_file

    from tests.test_finetune import run_fault_injection

    args = ["--max_steps", "4", "--checkpointing_steps", "2", "--checkpoints_total_limit", "1", *BASE,
            "--num_reconstructions", "1"]
    results = run_fault_injection("pretrain_mae.py", "step_00000004", args, tmp_path)
    events = [p["event"] for p in results["points"]]
    for name in ("model.safetensors", "optimizer", "data_state_rank0.json", "trainer_state.json",
                 "rename checkpoints/.tmp-step_00000004", "rename checkpoints/step_00000002", "(deleting)"):
        assert any(name in e for e in events), (name, events)  # the kill points cover the whole save
    ref_weights, ref_losses = load_file(tmp_path / "ref" / "model.safetensors"), _losses(tmp_path / "ref")
    assert len(ref_losses) == 4
    failures = []
    for point in results["points"]:
        out = tmp_path / f"kill-{point['index']}"
        if point["killed"] != 137 or point["resumed"] != 0:
            failures.append(f"{point}: not killed there, or the resume failed")
            continue
        weights = load_file(out / "model.safetensors")
        same = weights.keys() == ref_weights.keys() and all(torch.equal(weights[k], ref_weights[k]) for k in weights)
        debris = [p.name for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]
        if not same or _losses(out) != ref_losses or debris:
            failures.append(f"{point['event']}: weights equal {same}, debris {debris}")
    assert not failures, "\n".join(failures)


def test_latest_without_checkpoint_starts_fresh_and_guards_max_steps_and_output_dir(tmp_path, caplog):
    """`latest` with nothing saved yet starts from step 0 (saying so); a non-empty --output_dir needs resuming or
    --overwrite_output_dir; a changed --max_steps on resume is refused; epochs are those consumed."""
    out, script = tmp_path / "run", _script()
    args = ["--output_dir", str(out), "--max_steps", "2", "--checkpointing_steps", "1", *BASE]
    with caplog.at_level("WARNING", logger="hf_vision.training"):
        script.main([*args, "--stop_after_steps", "1", "--resume_from_checkpoint", "latest"])
    assert "starting from step 0" in caplog.text
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [pytest.approx(16 / 1438)]  # 16 of the 1,438 training digits
    with pytest.raises(FileExistsError, match="--overwrite_output_dir"):
        script.main(args)
    with pytest.raises(ValueError, match="max_steps=2"):
        script.main([*args, "--max_steps", "3", "--resume_from_checkpoint", "latest"])
    script.main([*args, "--checkpointing_steps", "2", "--overwrite_output_dir"])
    assert [p.name for p in list_checkpoints(out)] == ["step_00000002"]  # the earlier run's step 1 is gone


def test_several_processes_with_world_size_one_are_refused(tmp_path, monkeypatch):
    """Launched as 2 processes, but Accelerate forms no group (here: an accelerator that does not join them):
    refused before anything is written, naming the fix."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: True)
    with pytest.raises(RuntimeError, match="launched as 2 processes.*--cpu"):
        _script().main(["--output_dir", str(tmp_path / "run"), "--max_steps", "1", *BASE])
    assert not (tmp_path / "run").exists()

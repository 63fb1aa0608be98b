"""scripts/finetune.py end to end (tiny settings, real files in tmp_path), its model sources and modes, the
shipped top-k accuracy metric, exact resume, and a real two-process CPU run (torchrun, gloo) on disjoint data."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import hf_vision
from hf_vision.training.finetune import parse_overrides

ROOT = Path(__file__).resolve().parents[1]
TINY = "hidden_size=32,num_hidden_layers=2,num_attention_heads=2,intermediate_size=64"


def _script():
    spec = importlib.util.spec_from_file_location("finetune_script", ROOT / "scripts" / "finetune.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(tmp_path, *extra: str) -> tuple[dict, Path]:
    out = tmp_path / "run"
    argv = ["--output_dir", str(out), "--max_steps", "3", "--per_device_train_batch_size", "16",
            "--per_device_eval_batch_size", "64", "--max_eval_samples", "64", "--logging_steps", "1",
            "--shuffle_buffer", "64", *extra]
    return _script().main(argv), out


def test_top_k_metric_module_loads_offline():
    import evaluate

    from hf_vision.training.metrics import TOP_K_ACCURACY

    metric = evaluate.load(TOP_K_ACCURACY)
    scores = [[0.1, 0.5, 0.2, 0.0, 0.0, 0.0, 0.3],  # label 2: rank 2 -> top-5 only
              [0.9, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1],  # label 0: top-1
              [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]]  # label 0: rank 6 -> neither
    result = metric.compute(predictions=scores, references=[2, 0, 0])
    assert result == pytest.approx({"top1_accuracy": 1 / 3, "top5_accuracy": 2 / 3})


def test_parse_overrides():
    assert parse_overrides("image_size=384,drop_path_rate=0.2,pooling=gap,image_mean=(0.5, 0.5, 0.5)") == {
        "image_size": 384, "drop_path_rate": 0.2, "pooling": "gap", "image_mean": (0.5, 0.5, 0.5)}
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides("image_size")


def test_finetune_default_model_on_embedded_digits(tmp_path, monkeypatch):
    from hf_vision.training import finetune

    optimized = []  # on CPU the run trains under optimize_for_cpu by default
    monkeypatch.setattr(finetune, "optimize_for_cpu", lambda model: optimized.append(type(model)))
    metrics, out = _run(tmp_path, "--config_overrides", TINY)
    assert optimized == [hf_vision.ViTForImageClassification]
    results = json.loads((out / "all_results.json").read_text())
    for key in ("eval_top1_accuracy", "eval_top5_accuracy", "train_loss"):
        assert key in results and key in metrics
    assert 0.0 <= results["eval_top1_accuracy"] <= results["eval_top5_accuracy"] <= 1.0
    model = hf_vision.ViTForImageClassification.from_pretrained(out)
    assert model.config.id2label == {i: str(i) for i in range(10)} and model.config.hidden_size == 32
    from transformers import AutoModelForImageClassification

    assert type(AutoModelForImageClassification.from_pretrained(out)) is hf_vision.ViTForImageClassification
    card = (out / "README.md").read_text()
    assert "eval_top1_accuracy" in card or "top1_accuracy" in card
    run_args = json.loads((out / "run_args.json").read_text())
    assert run_args["recipe"]["name"] == "demo" and run_args["recipe"]["mixup_alpha"] == 0.0
    assert run_args["max_steps"] == 3


def _tiny_mae(folder: Path) -> dict[str, torch.Tensor]:
    config = hf_vision.get_config(
        "mae-vit-base-patch16", image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, decoder_hidden_size=16, decoder_num_hidden_layers=1,
        decoder_num_attention_heads=2, decoder_intermediate_size=32)
    model = hf_vision.MAEForPreTraining(config)
    model.save_pretrained(folder)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_linear_probe_from_mae_checkpoint_trains_only_the_head(tmp_path):
    mae = _tiny_mae(tmp_path / "mae")
    metrics, out = _run(tmp_path, "--model", str(tmp_path / "mae"), "--linear_probe", "--learning_rate", "0.05")
    tuned = load_file(out / "model.safetensors")
    encoder_keys = [k for k in tuned if k.startswith("vit.") and k in mae]
    assert len(encoder_keys) > 10  # the MAE encoder was loaded under the same names
    for key in encoder_keys:
        assert torch.equal(tuned[key], mae[key]), f"{key} changed although frozen"
    assert "head_norm.running_mean" in tuned  # MAE's linear probe: BatchNorm before the classifier
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "hfv_vit" and config["pooling"] == "gap" and config["classifier_norm"] == "batchnorm"
    assert "eval_top1_accuracy" in metrics


def test_partial_finetune_with_mae_recipe(tmp_path):
    mae = _tiny_mae(tmp_path / "mae")
    _, out = _run(tmp_path, "--model", str(tmp_path / "mae"), "--train_last_blocks", "1", "--learning_rate", "0.01",
                  "--recipe", "mae")
    tuned = load_file(out / "model.safetensors")
    first = [k for k in tuned if k.startswith("vit.encoder.blocks.0.") or k.startswith("vit.embeddings.")]
    last = [k for k in tuned if k.startswith("vit.encoder.blocks.1.") and k.endswith("weight")]
    assert first and last
    assert all(torch.equal(tuned[k], mae[k]) for k in first)
    assert any(not torch.equal(tuned[k], mae[k]) for k in last)
    run_args = json.loads((out / "run_args.json").read_text())
    assert run_args["recipe"]["name"] == "mae"
    assert run_args["recipe"]["mixup_alpha"] == 0.8 and run_args["recipe"]["layer_decay"] == 0.75


# Resume and several processes. "digit..." keys are the embedded dataset's webdataset ids.
RESUME = ["--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2", "--gradient_accumulation_steps", "2",
          "--per_device_train_batch_size", "8", "--recipe", "mae", "--learning_rate", "0.01", "--logging_steps", "1",
          "--shuffle_buffer", "64", "--max_eval_samples", "16", "--log_example_keys", "--config_overrides", TINY]


def _trainer_state(checkpoint: Path) -> dict:
    return json.loads((checkpoint / "trainer_state.json").read_text())


def _logged_losses(checkpoint: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in _trainer_state(checkpoint)["log_history"] if "loss" in r]


def test_interrupted_and_resumed_run_reproduces_the_uninterrupted_one(tmp_path, monkeypatch):
    """Bitwise on CPU: data position (a streamed source), weights, optimizer, schedule and the RNG behind Mixup/
    CutMix, random erasing and drop path (the MAE recipe), with gradient accumulation."""
    from hf_vision.training.finetune import ImageClassificationTrainer

    script = _script()
    script.main(["--output_dir", str(tmp_path / "full"), *RESUME])

    compute_loss, calls = ImageClassificationTrainer.compute_loss, {"n": 0}

    def crash_in_step_3(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # step 3's first micro-batch (2 per step): after checkpoint-2, its batches already read
            raise RuntimeError("simulated crash")
        return compute_loss(self, *args, **kwargs)

    cut = tmp_path / "cut"
    monkeypatch.setattr(ImageClassificationTrainer, "compute_loss", crash_in_step_3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        script.main(["--output_dir", str(cut), *RESUME])
    monkeypatch.setattr(ImageClassificationTrainer, "compute_loss", compute_loss)
    assert sorted(p.name for p in cut.glob("checkpoint-*")) == ["checkpoint-2"]
    assert not (cut / "model.safetensors").exists()
    assert len((cut / "example_keys_rank0.txt").read_text().split()) == 3 * 16  # step 3 was read, not trained

    script.main(["--output_dir", str(cut), *RESUME, "--resume_from_checkpoint", "latest"])
    full_keys = (tmp_path / "full" / "example_keys_rank0.txt").read_text().split()
    assert len(full_keys) == 4 * 16 and len(set(full_keys)) == 4 * 16  # 64 of the 1,438 training digits
    assert (cut / "example_keys_rank0.txt").read_text().split() == full_keys  # nothing repeated or skipped
    full_losses, resumed_losses = _logged_losses(tmp_path / "full" / "checkpoint-4"), _logged_losses(cut / "checkpoint-4")
    assert [s for s, _ in full_losses] == [1, 2, 3, 4] and resumed_losses == full_losses  # exact floats
    full, resumed = load_file(tmp_path / "full" / "model.safetensors"), load_file(cut / "model.safetensors")
    assert full.keys() == resumed.keys()
    assert all(torch.equal(full[k], resumed[k]) for k in full)
    first = load_file(tmp_path / "full" / "checkpoint-2" / "model.safetensors")
    assert any(not torch.equal(first[k], full[k]) for k in full)  # steps 3-4 did train
    data = json.loads((cut / "checkpoint-4" / "data_state_rank0.json").read_text())
    assert data["world_size"] == 1 and data["loader"]["workers"]["0"]["position"] == 4 * 16


def test_resume_refuses_a_checkpoint_without_its_data_position(tmp_path):
    script = _script()
    args = ["--max_steps", "2", "--save_strategy", "steps", "--save_steps", "1", "--per_device_train_batch_size", "4",
            "--shuffle_buffer", "16", "--max_eval_samples", "8", "--config_overrides", TINY]
    out = tmp_path / "run"
    script.main(["--output_dir", str(out), *args])
    (out / "checkpoint-1" / "data_state_rank0.json").unlink()
    with pytest.raises(FileNotFoundError, match="--ignore_data_skip"):
        script.main(["--output_dir", str(out), *args, "--resume_from_checkpoint", str(out / "checkpoint-1")])
    data = json.loads((out / "checkpoint-2" / "data_state_rank0.json").read_text())
    data["world_size"] = 2
    (out / "checkpoint-2" / "data_state_rank0.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="2 processes, this run has 1"):
        script.main(["--output_dir", str(out), *args, "--resume_from_checkpoint", "latest"])


def test_torchrun_without_use_cpu_on_a_cpu_machine_is_refused(tmp_path, monkeypatch):
    """Without --use_cpu Accelerate would not join torchrun's processes: N independent runs, not one."""
    if torch.accelerator.is_available():
        pytest.skip("an accelerator joins the processes by itself")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="--use_cpu"):
        _run(tmp_path, "--use_cpu", "False", "--config_overrides", TINY)


def _torchrun(script: str, *args: str, nproc: int = 2, cwd: Path) -> subprocess.CompletedProcess:
    """A real multi-process CPU job (gloo): `torchrun --nproc_per_node N scripts/<script> ...`."""
    # `python -m torch.distributed.run` is torchrun run by this interpreter (a venv may lack its own torchrun).
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           str(ROOT / "scripts" / script), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_two_process_cpu_run_on_disjoint_data(tmp_path):
    """torchrun --nproc_per_node 2: disjoint shards, equal steps, one checkpoint/all_results.json from rank 0."""
    out = tmp_path / "ddp"
    result = _torchrun("finetune.py", "--output_dir", str(out), "--max_steps", "3", "--save_strategy", "steps",
                       "--save_steps", "2", "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "16",
                       "--max_eval_samples", "49", "--shuffle_buffer", "64", "--log_example_keys",
                       "--config_overrides", TINY, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "find_unused_parameters" not in result.stderr  # DDP's per-rank warning (CLI default: off)
    keys = [(out / f"example_keys_rank{r}.txt").read_text().split() for r in range(2)]
    assert len(keys[0]) == len(keys[1]) == 3 * 16  # both ranks ran 3 steps
    assert not set(keys[0]) & set(keys[1])  # each rank its own share of the stream
    assert all(k.startswith("digit") for k in keys[0] + keys[1])
    for rank in range(2):  # each rank's position saved in the checkpoint: 2 steps x 16 of its own examples
        data = json.loads((out / "checkpoint-2" / f"data_state_rank{rank}.json").read_text())
        assert data["world_size"] == 2 and data["loader"]["workers"]["0"]["position"] == 2 * 16
    assert {p.name for p in (out / "checkpoint-2").glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}
    assert _trainer_state(out / "checkpoint-2")["global_step"] == 2
    # The script's summary (numbers, where the Trainer's own log lines carry strings) comes from rank 0 only.
    assert len(re.findall(r"'eval_top1_accuracy': \d", result.stdout)) == 1, result.stdout[-2000:]

    results = json.loads((out / "all_results.json").read_text())
    model = hf_vision.ViTForImageClassification.from_pretrained(out).eval()
    # Evaluation was split over the ranks (and padded to equal batches): rerun it in this process on the same
    # 49 test images and compare, so a dropped or duplicated image would show.
    from hf_vision.data import Collate, ImageStream, PreprocessSpec, eval_transform, load_image_source

    source = load_image_source("digits", "test")
    source.dataset = source.dataset.take(49)
    spec = PreprocessSpec.from_model(model, crop_pct=0.875)
    examples = list(ImageStream(source, eval_transform(spec), infinite=False))
    assert len(examples) == 49
    batch = Collate(spec.mean, spec.std)(examples)
    with torch.no_grad():
        logits = model(batch["pixel_values"]).logits
    correct = int((logits.argmax(-1) == batch["labels"]).sum())
    # (not eval_loss: the Trainer repeats each rank's batch-mean loss by the first batch's size, an approximation)
    assert results["eval_top1_accuracy"] == pytest.approx(correct / 49, abs=1e-9)
    assert "train_loss" in results and results["train_loss"] > 0


@pytest.mark.slow
def test_two_process_resume_with_workers_is_exact(tmp_path):
    """Two ranks with two DataLoader workers each: resuming from checkpoint-2 (copied into a fresh folder, as an
    interrupted run leaves it) continues every rank's stream and reproduces the uninterrupted weights bitwise."""
    args = ["--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2", "--per_device_train_batch_size", "8",
            "--recipe", "mae", "--learning_rate", "0.01", "--logging_steps", "1", "--max_eval_samples", "16",
            "--shuffle_buffer", "32", "--log_example_keys", "--dataloader_num_workers", "2", "--config_overrides", TINY]
    full, cut = tmp_path / "full", tmp_path / "cut"
    result = _torchrun("finetune.py", "--output_dir", str(full), *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    shutil.copytree(full / "checkpoint-2", cut / "checkpoint-2")
    result = _torchrun("finetune.py", "--output_dir", str(cut), *args, "--resume_from_checkpoint", "latest",
                       cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for rank in range(2):  # steps 3-4 of each rank: its own examples, continuing where the checkpoint left off
        keys = (full / f"example_keys_rank{rank}.txt").read_text().split()
        assert len(keys) == 4 * 8 and (cut / f"example_keys_rank{rank}.txt").read_text().split() == keys[16:]
    assert _logged_losses(cut / "checkpoint-4") == _logged_losses(full / "checkpoint-4")
    a, b = load_file(full / "model.safetensors"), load_file(cut / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_no_optimize_for_cpu_flag():
    model_args = _script().parse_args(["--output_dir", "x"])[0]
    assert model_args.optimize_for_cpu is True
    assert _script().parse_args(["--output_dir", "x", "--no_optimize_for_cpu"])[0].optimize_for_cpu is False


def run_fault_injection(script: str, tag: str, args: list[str], work: Path) -> dict:
    """tests/fault_injection.py: a reference run, then per file operation of the `tag` save a killed run resumed
    with `--resume_from_checkpoint latest` (one subprocess; the runs are forked from it)."""
    cmd = [sys.executable, str(ROOT / "tests" / "fault_injection.py"), str(ROOT / "scripts" / script), str(work), tag,
           "--", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((work / "results.json").read_text())
    assert results["reference"] == 0, result.stderr[-3000:]
    return results


@pytest.mark.slow
def test_kill_at_every_file_of_a_checkpoint_write_and_mid_rotation_resumes_exactly(tmp_path):
    """A kill before each file of checkpoint-4 (weights, model sources, optimizer, scheduler, RNG, trainer state,
    data position, completion mark) and in the middle of rotating checkpoint-2 out: `latest` picks a complete
    checkpoint and the resumed run ends with the reference run's losses and weights, bitwise."""
    args = ["--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2", "--save_total_limit", "1",
            "--per_device_train_batch_size", "8", "--gradient_accumulation_steps", "2", "--recipe", "mae",
            "--learning_rate", "0.01", "--logging_steps", "1", "--shuffle_buffer", "32", "--max_eval_samples", "8",
            "--config_overrides", "hidden_size=32,num_hidden_layers=1,num_attention_heads=2,intermediate_size=64"]
    results = run_fault_injection("finetune.py", "checkpoint-4", args, tmp_path)
    events = [p["event"] for p in results["points"]]
    for name in ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json",
                 "data_state_rank0.json", "checkpoint_complete.json", "rename checkpoint-2", "(deleting)"):
        assert any(name in e for e in events), (name, events)  # the kill points cover the whole save
    ref = tmp_path / "ref"
    ref_weights, ref_losses = load_file(ref / "model.safetensors"), _logged_losses(ref / "checkpoint-4")
    assert [s for s, _ in ref_losses] == [1, 2, 3, 4]
    failures = []
    for point in results["points"]:
        out = tmp_path / f"kill-{point['index']}"
        if point["killed"] != 137 or point["resumed"] != 0:
            failures.append(f"{point}: not killed there, or the resume failed")
            continue
        weights = load_file(out / "model.safetensors")
        same = weights.keys() == ref_weights.keys() and all(torch.equal(weights[k], ref_weights[k]) for k in weights)
        debris = [p.name for p in out.iterdir() if p.name.startswith(".")]
        if not same or _logged_losses(out / "checkpoint-4") != ref_losses or debris:
            failures.append(f"{point['event']}: weights equal {same}, debris {debris}")
    assert not failures, "\n".join(failures)


def test_latest_without_checkpoint_starts_fresh_and_guards_max_steps_and_output_dir(tmp_path, caplog):
    """`latest` with nothing saved yet starts from step 0 (saying so); logged epochs are those consumed (not a
    fraction of max_steps); a non-empty --output_dir needs resuming or --overwrite_output_dir; a changed
    --max_steps on resume is refused."""
    script, out = _script(), tmp_path / "run"
    args = ["--output_dir", str(out), "--max_steps", "2", "--save_strategy", "steps", "--save_steps", "1",
            "--per_device_train_batch_size", "4", "--shuffle_buffer", "16", "--max_eval_samples", "8",
            "--logging_steps", "1", "--config_overrides", TINY]
    with caplog.at_level("WARNING", logger="hf_vision.training"):
        script.main([*args, "--resume_from_checkpoint", "latest"])
    assert "starting from step 0" in caplog.text
    epochs = [r["epoch"] for r in _trainer_state(out / "checkpoint-2")["log_history"] if "loss" in r]
    assert epochs == pytest.approx([4 / 1438, 8 / 1438])  # of the 1,438 training digits
    with pytest.raises(FileExistsError, match="--overwrite_output_dir"):
        script.main(args)
    with pytest.raises(ValueError, match="max_steps=2"):
        script.main([*args, "--max_steps", "3", "--resume_from_checkpoint", "latest"])


def test_top5_reported_only_with_more_than_five_classes():
    import numpy as np
    from transformers import EvalPrediction

    from hf_vision.training.trainer import metric_fn as _metric_fn

    labels = np.array([0, 1, 3, 3])
    four = _metric_fn(4)(EvalPrediction(predictions=np.eye(4), label_ids=labels))
    assert four == pytest.approx({"top1_accuracy": 0.75})  # top-5 of 4 classes would be 1.0 by construction
    six = _metric_fn(6)(EvalPrediction(predictions=np.eye(4, 6), label_ids=labels))
    assert set(six) == {"top1_accuracy", "top5_accuracy"}

"""scripts/finetune.py end to end (tiny settings, real files in tmp_path), its model sources and modes, and the
shipped top-k accuracy metric."""
from __future__ import annotations

import importlib.util
import json
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


def test_finetune_default_model_on_embedded_digits(tmp_path):
    metrics, out = _run(tmp_path, "--config_overrides", TINY)
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

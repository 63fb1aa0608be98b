"""scripts/ablate.py and hf_vision.ablation: every table end to end (--quick), resume, outputs, verdicts, FLOPs."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hf_vision.ablation import TABLES, RunOptions, get_table, run_table, verdict
from hf_vision.ablation.runner import (classifier_flops, mae_flops, plan_for, plan_key, pretrain_augmentation,
                                       pretrain_augmentation_patched, train_flops_per_image)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import ablate as ablate_script  # noqa: E402


def test_list_names_every_table(capsys):
    ablate_script.main(ablate_script.parse_args(["--list"]))
    out = capsys.readouterr().out
    expected = ["vit-pooling", "vit-posemb", "vit-vs-hybrid", "mae-mask-ratio", "mae-decoder", "mae-mask-token",
                "mae-target", "mae-sampling", "mae-augmentation", "swin-shift-relpos"]
    assert list(TABLES) == expected
    for name in expected:
        assert f"{name}:" in out


def test_bad_arguments_name_the_field():
    with pytest.raises(ValueError, match="table='vit-nope' is not one of vit-pooling"):
        get_table("vit-nope")
    with pytest.raises(ValueError, match="seeds=0"):
        RunOptions(seeds=0)
    with pytest.raises(ValueError, match="budget=0"):
        RunOptions(budget=0)
    with pytest.raises(KeyError, match="no row 'nope'"):
        get_table("vit-posemb").row("nope")
    with pytest.raises(ValueError, match="augmentation='sepia'"):
        pretrain_augmentation("sepia")


@pytest.mark.parametrize("name", list(TABLES))
def test_every_row_builds_and_its_training_step_is_measured(name):
    """Every switch of every row is a valid config (a bad one fails here, before any training)."""
    for row in TABLES[name].rows:
        flops = mae_flops(row.config) if row.kind == "mae" else classifier_flops(row.preset, row.config, num_labels=10)
        assert flops > 1e5, (name, row.name)


def test_flop_counter_counts_a_linear_layer_by_hand():
    layer = torch.nn.Linear(10, 20, bias=False)
    x = torch.randn(4, 10)
    # forward 2*10*20 per image; backward: only the weight's gradient (the input needs none), 2*10*20 again
    assert train_flops_per_image(layer, lambda m: m(x).sum(), 4) == pytest.approx(800)


def test_mask_tokens_in_the_encoder_cost_more_flops():
    """MAE Table 1c's cost claim, measured: with 75% masking the encoder sees 4x the tokens with mask tokens."""
    table = get_table("mae-mask-token")
    without, with_tokens = (mae_flops(table.row(n).config) for n in ("encoder w/o [M]", "encoder w/ [M]"))
    assert with_tokens > 1.5 * without


def test_verdicts_by_hand():
    def s(mean, std, n=3):
        return {"mean": mean, "std": std, "n": n}

    assert verdict(s(0.90, 0.01), s(0.80, 0.01), 85.4, 84.9) == "reproduces"
    assert verdict(s(0.70, 0.01), s(0.80, 0.01), 85.4, 84.9) == "does not reproduce"
    assert verdict(s(0.81, 0.02), s(0.80, 0.02), 85.4, 84.9) == "inconclusive (error bars overlap)"
    assert verdict(s(0.81, 0.02), s(0.80, 0.02), 0.64001, 0.64206) == "reproduces (no difference)"
    assert verdict(s(0.90, 0.01), s(0.80, 0.01), 81.3, 81.3) == "does not reproduce (paper: no difference)"
    assert verdict(s(0.90, 0.0, 1), s(0.80, 0.0, 1), 85.4, 84.9) == "inconclusive (one seed)"
    assert verdict(s(0.90, 0.01), s(0.80, 0.01), None, 84.9) == "no paper number"


def test_plan_changes_with_budget_and_rows_scale_their_steps():
    table = get_table("vit-vs-hybrid")
    small, large = table.row("ViT, 1x steps"), table.row("ViT, 3x steps")
    base = plan_for(table, small, RunOptions())
    assert base["steps"] == {"train": table.steps["train"]}
    assert plan_for(table, large, RunOptions())["steps"]["train"] == 3 * table.steps["train"]
    doubled = plan_for(table, small, RunOptions(budget=2))
    assert doubled["steps"]["train"] == 2 * table.steps["train"] and plan_key(doubled) != plan_key(base)
    assert plan_for(table, small, RunOptions(quick=True))["steps"]["train"] == 2


def test_pretrain_augmentations_give_model_sized_uint8_images():
    from PIL import Image

    from hf_vision.data import PreprocessSpec
    from hf_vision.training import pretrain as module

    spec = PreprocessSpec((32, 32), (0.5,) * 3, (0.5,) * 3)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8))
    for name in ("none", "crop-fixed", "crop-random", "crop-color"):
        pixels = pretrain_augmentation(name)(spec)(image)
        assert pixels.dtype == torch.uint8 and tuple(pixels.shape) == (3, 32, 32), name
    first = pretrain_augmentation("none")(spec)(image)
    assert torch.equal(first, pretrain_augmentation("none")(spec)(image))  # no randomness without augmentation
    original = module.pretrain_transform
    with pretrain_augmentation_patched("none"):
        assert module.pretrain_transform is not original
    assert module.pretrain_transform is original


def _last_row(name: str) -> list[str]:
    table = TABLES[name]
    return [next(r.name for r in reversed(table.rows) if r.name != table.reference)]


@pytest.mark.parametrize("name", list(TABLES))
def test_quick_run_of_every_table_end_to_end(name, tmp_path):
    """--quick with the reference row and one other row: the real pretrain/finetune runs, outputs and index."""
    ablate_script.main(ablate_script.parse_args([name, "--quick", "--no_progress", "--output_dir", str(tmp_path),
                                                 "--rows", *_last_row(name)]))
    folder = tmp_path / name
    results = json.loads((folder / "results.json").read_text())
    table = TABLES[name]
    assert [e["row"] for e in results["summary"]] == [table.reference, *_last_row(name)]
    for entry in results["summary"]:
        for metric in table.metrics:
            stat = entry["stats"][metric]
            assert 0.0 <= stat["mean"] <= 1.0 and stat["n"] == 1
        assert all(v > 0 for v in entry["flops_per_image"].values()) and entry["wall_s"] > 0
    assert results["summary"][0]["verdicts"][table.metrics[0]] == "reference"
    text = (folder / f"{name}.md").read_text()
    assert table.source in text and table.reference in text
    assert (folder / f"{name}.png").stat().st_size > 1000
    assert f"{name}/{name}.png" in (tmp_path / "index.html").read_text()


def test_repeated_command_resumes_at_row_seed_granularity(tmp_path):
    options = RunOptions(output_dir=str(tmp_path), quick=True, rows=["none"], progress=False)
    table = get_table("vit-posemb")
    first = run_table(table, options)
    assert first["session"] == {**first["session"], "runs": 2, "reused": 0}
    again = run_table(table, options)
    assert again["session"]["reused"] == 2
    assert [r["metrics"] for r in again["runs"]] == [r["metrics"] for r in first["runs"]]
    (tmp_path / "vit-posemb" / "runs" / "none" / "seed0" / "result.json").unlink()  # as if killed mid-run
    third = run_table(table, options)
    assert third["session"]["reused"] == 1


def _image_folder(root: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("test", 4)):
        for label, value in (("dark", 40), ("light", 210)):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(rng.normal(value, 20, (36, 36, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


@pytest.mark.parametrize("name", ["vit-posemb", "mae-target"])
def test_a_local_image_folder_works(name, tmp_path):
    data = _image_folder(tmp_path / "images")
    results = run_table(get_table(name), RunOptions(output_dir=str(tmp_path / "out"), dataset=str(data), quick=True,
                                                    rows=_last_row(name), progress=False))
    run = results["runs"][0]
    assert run["plan"]["dataset"] == str(data)
    assert all(0.0 <= v <= 1.0 for v in run["metrics"].values())


def test_a_folder_without_an_evaluation_split_is_refused(tmp_path):
    data = _image_folder(tmp_path / "images")
    import shutil

    shutil.rmtree(data / "test")
    with pytest.raises(ValueError, match="'validation' or 'test' split"):
        run_table(get_table("vit-posemb"), RunOptions(output_dir=str(tmp_path / "out"), dataset=str(data),
                                                      quick=True, progress=False))

"""save_pretrained writes only fresh regular files inside the target folder, and says when it replaces files that
an earlier hf-vision save did not write."""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest
import torch

import hf_vision

from .cases import tiny_vit

OUTPUTS = ("config.json", "model.safetensors", "preprocessor_config.json", "modeling_vit.py", "attention.py")


def _model():
    torch.manual_seed(0)
    return hf_vision.ViTForImageClassification(tiny_vit()).eval()


def _save(model, folder) -> list[str]:
    """Save and return the messages of the warnings save_pretrained raised about replaced files."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.save_pretrained(folder)
    return [str(w.message) for w in caught if "replaces files" in str(w.message)]


def _named(message: str) -> set[str]:
    return set(message.rpartition(": ")[2].split(", "))


def test_symlinks_are_replaced_not_followed(tmp_path):
    outside, folder = tmp_path / "outside", tmp_path / "ckpt"
    outside.mkdir(), folder.mkdir()
    for name in OUTPUTS:
        (outside / name).write_bytes(b"outside " + name.encode())
        (folder / name).symlink_to(outside / name)
    (folder / "notes.txt").write_text("mine")
    (folder / "pretrained.py").symlink_to(folder / "notes.txt")  # a link to a file inside the folder

    messages = _save(_model(), folder)

    for name in OUTPUTS:
        assert (outside / name).read_bytes() == b"outside " + name.encode(), name
        assert not (folder / name).is_symlink() and (folder / name).is_file(), name
    assert (folder / "notes.txt").read_text() == "mine"
    assert not (folder / "pretrained.py").is_symlink() and "class HFVisionPreTrainedModel" in (
        folder / "pretrained.py").read_text()
    assert len(messages) == 1, messages
    assert _named(messages[0]) == set(OUTPUTS) | {"pretrained.py"}
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
    loaded = hf_vision.ViTForImageClassification.from_pretrained(folder).eval()
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(loaded(x).logits, _model()(x).logits)


def test_warns_only_about_files_it_did_not_write(tmp_path):
    folder = tmp_path / "ckpt"
    model = _model()
    assert _save(model, folder) == []  # empty folder
    config = json.loads((folder / "config.json").read_text())
    assert config["hf_vision_min_transformers"] == hf_vision.modeling.requirements.MIN_TRANSFORMERS
    assert set(config["hf_vision_files"]) >= {"preprocessor_config.json", "modeling_vit.py", "attention.py"}
    assert _save(model, folder) == []  # our own earlier save, unchanged

    (folder / "attention.py").write_text("# the user's own attention.py\n")
    messages = _save(model, folder)
    assert len(messages) == 1 and _named(messages[0]) == {"attention.py"}
    assert _save(model, folder) == []


def test_warns_about_another_models_files(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (folder / "model.safetensors").write_bytes(b"not ours")
    (folder / "model-00001-of-00002.safetensors").write_bytes(b"a stale shard")
    (folder / "modeling_vit.py").write_text("# someone else's\n")
    (folder / "README.md").write_text("kept")

    messages = _save(_model(), folder)

    assert len(messages) == 1
    assert _named(messages[0]) == {"config.json", "model.safetensors", "model-00001-of-00002.safetensors",
                                   "modeling_vit.py"}
    assert (folder / "README.md").read_text() == "kept"
    assert json.loads((folder / "config.json").read_text())["model_type"] != "bert"


@pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")
def test_transformers_follows_symlinks_so_we_must_unlink(tmp_path):
    """Pins the reason for the unlinking: transformers' own save writes through a link at config.json."""
    from transformers import PretrainedConfig

    target = tmp_path / "target.json"
    target.write_text("{}")
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").symlink_to(target)
    PretrainedConfig().save_pretrained(tmp_path / "ckpt")
    assert target.read_text() != "{}"

"""Every preset builds, and the README's model table states each preset's real parameter count."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import transformers

import hf_vision

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_table() -> dict[str, float]:
    """preset name -> parameter count (millions) as printed in the README's model table."""
    text = README.read_text()
    table = text[text.index("<!-- model-table -->"): text.index("<!-- /model-table -->")]
    stated = {}
    for row in table.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[1].startswith("`"):
            continue
        names = re.findall(r"`([^`]+)`", cells[1])
        counts = [float(m) for m in re.findall(r"(\d+(?:\.\d+)?)M", cells[2])][: len(names)]
        assert len(counts) == len(names), row
        stated.update(zip(names, counts))
    return stated


def _count(name: str) -> float:
    config = hf_vision.get_config(name)
    auto = (transformers.AutoModelForImageClassification
            if type(config) in transformers.AutoModelForImageClassification._model_mapping
            else transformers.AutoModelForPreTraining)
    with torch.device("meta"):
        model = auto.from_config(config)
    return sum(p.numel() for p in model.parameters()) / 1e6


def test_readme_lists_every_preset():
    assert set(_readme_table()) == set(hf_vision.PRESETS)


@pytest.mark.parametrize("name", sorted(hf_vision.PRESETS))
def test_readme_parameter_counts_are_the_models(name):
    assert _count(name) == pytest.approx(_readme_table()[name], abs=0.051)

"""Tiny configurations of every model class: the generic suite (test_generic.py) runs each through the same checks.

A new family joins by appending `Case`s here.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

import hf_vision


@dataclass(frozen=True)
class Case:
    id: str
    model_cls: type
    make_config: Callable[..., Any]  # **overrides -> config
    auto_class: str  # the transformers Auto class that must load a saved checkpoint
    expected_shapes: Callable[[Any, int], dict[str, tuple[int, ...]]]  # (config, batch) -> {output field: shape}
    image_size: tuple[int, int] = (32, 32)
    make_inputs: Callable[[Any, int, torch.Generator], dict[str, torch.Tensor]] = field(
        default=lambda config, batch, gen: {}
    )  # extra per-sample forward kwargs (e.g. MAE's noise), batch on dim 0
    labels: bool = False  # pass integer labels so the loss is part of the backward check


def tiny_vit(**overrides):
    base = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=64, num_labels=5)
    return hf_vision.ViTConfig(**{**base, **overrides})


def _vit_base_shapes(config, b):
    tokens = int(config.class_token) + (32 // config.patch_size) ** 2
    return {"last_hidden_state": (b, tokens, config.hidden_size),
            "pooler_output": (b, config.representation_size or config.hidden_size)}


def _logits_shapes(config, b):
    return {"logits": (b, config.num_labels)}


CASES: list[Case] = [
    Case("vit-model", hf_vision.ViTModel, tiny_vit, "AutoModel", _vit_base_shapes),
    Case("vit-cls", hf_vision.ViTForImageClassification, tiny_vit, "AutoModelForImageClassification",
         _logits_shapes, labels=True),
    Case("vit-gap-sincos-prelogits", hf_vision.ViTForImageClassification,
         lambda **o: tiny_vit(pooling="gap", class_token=False, position_embedding_type="sincos2d",
                              representation_size=24, **o),
         "AutoModelForImageClassification", _logits_shapes, labels=True),
    Case("vit-model-gap-nope", hf_vision.ViTModel,
         lambda **o: tiny_vit(pooling="gap", position_embedding_type="none", **o), "AutoModel", _vit_base_shapes),
]

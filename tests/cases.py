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


# Hybrid: ResNet trunk (1, 1, 1) of width 8 -> stride 16 -> a 2x2 token grid on 32x32 inputs.
def tiny_hybrid(**overrides):
    base = dict(image_size=32, patch_size=1, backbone_layers=(1, 1, 1), backbone_width=8, backbone_norm_groups=4,
                hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, num_labels=5)
    return hf_vision.HybridConfig(**{**base, **overrides})


def _hybrid_base_shapes(config, b):
    tokens = int(config.class_token) + (32 // config.grid_stride) ** 2
    return {"last_hidden_state": (b, tokens, config.hidden_size),
            "pooler_output": (b, config.representation_size or config.hidden_size)}


CASES += [
    Case("hybrid-model", hf_vision.HybridModel, tiny_hybrid, "AutoModel", _hybrid_base_shapes),
    Case("hybrid-cls", hf_vision.HybridForImageClassification, tiny_hybrid, "AutoModelForImageClassification",
         _logits_shapes, labels=True),
    # two stages (stride 8) + 2x2 patches, GAP without class token, timm's standardisation formula
    Case("hybrid-cls-gap-patch2-timmstd", hf_vision.HybridForImageClassification,
         lambda **o: tiny_hybrid(backbone_layers=(1, 2), patch_size=2, pooling="gap", class_token=False,
                                 backbone_std_style="timm", backbone_std_eps=1e-8, representation_size=24, **o),
         "AutoModelForImageClassification", _logits_shapes, labels=True),
]


# MAE: random masking makes outputs depend on `noise`, so the cases pass it per sample (batch on dim 0).
def tiny_mae(**overrides):
    base = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=64, decoder_hidden_size=16, decoder_num_hidden_layers=2,
                decoder_num_attention_heads=2, decoder_intermediate_size=32)
    return hf_vision.MAEConfig(**{**base, **overrides})


def _mae_noise(config, batch, gen):
    return {"noise": torch.rand(batch, (32 // config.patch_size) ** 2, generator=gen)}


def _mae_visible(config) -> int:
    patches = (32 // config.patch_size) ** 2
    return patches if config.encoder_mask_tokens else int(patches * (1 - config.mask_ratio))


def _mae_base_shapes(config, b):
    patches = (32 // config.patch_size) ** 2
    return {"last_hidden_state": (b, 1 + _mae_visible(config), config.hidden_size),
            "mask": (b, patches), "ids_restore": (b, patches)}


def _mae_pretraining_shapes(config, b):
    patches = (32 // config.patch_size) ** 2
    return {"logits": (b, patches, config.patch_size**2 * config.num_channels), "mask": (b, patches)}


CASES += [
    Case("mae-model", hf_vision.MAEModel, tiny_mae, "AutoModel", _mae_base_shapes, make_inputs=_mae_noise),
    Case("mae-pretraining", hf_vision.MAEForPreTraining, tiny_mae, "AutoModelForPreTraining",
         _mae_pretraining_shapes, make_inputs=_mae_noise),
    Case("mae-pretraining-normpix-encoder-mask-tokens", hf_vision.MAEForPreTraining,
         lambda **o: tiny_mae(norm_pix_loss=True, encoder_mask_tokens=True, **o), "AutoModelForPreTraining",
         _mae_pretraining_shapes, make_inputs=_mae_noise),
]


# Swin: window 2 on a 32x32 input gives 8x8 -> 4x4 -> 2x2 maps, so stages 1-2 run real shifted windows (mask and
# all) and stage 3 exercises the "map no larger than the window" rule; the non-square case also pads and crops.
def tiny_swin(**overrides):
    base = dict(image_size=32, patch_size=4, embed_dim=16, depths=(2, 2, 1), num_heads=(1, 2, 4), window_size=2,
                mlp_ratio=2.0, drop_path_rate=0.0, num_labels=5)
    return hf_vision.SwinConfig(**{**base, **overrides})


def _swin_base_shapes(config, b, tokens=4):
    return {"last_hidden_state": (b, tokens, config.hidden_size), "pooler_output": (b, config.hidden_size)}


def _swin_backbone_shapes(config, b):
    sides = {"stem": 8, "stage1": 8, "stage2": 4, "stage3": 2}
    channels = dict(zip(config.stage_names, config.stage_channels))
    return {"feature_maps": tuple((b, channels[s], sides[s], sides[s]) for s in config.out_features)}


CASES += [
    Case("swin-model", hf_vision.SwinModel, tiny_swin, "AutoModel", _swin_base_shapes),
    Case("swin-cls", hf_vision.SwinForImageClassification, tiny_swin, "AutoModelForImageClassification",
         _logits_shapes, labels=True),
    Case("swin-model-ape-noshift-nobias-36x28", hf_vision.SwinModel,
         lambda **o: tiny_swin(use_absolute_position_embeddings=True, shifted_windows=False,
                               use_relative_position_bias=False, **o),
         "AutoModel", lambda config, b: _swin_base_shapes(config, b, tokens=3 * 2), image_size=(36, 28)),
    Case("swin-cls-ape-36x28", hf_vision.SwinForImageClassification,
         lambda **o: tiny_swin(use_absolute_position_embeddings=True, **o),
         "AutoModelForImageClassification", _logits_shapes, image_size=(36, 28), labels=True),
    Case("swin-backbone", hf_vision.SwinBackbone,
         lambda **o: tiny_swin(out_features=["stem", "stage1", "stage2", "stage3"], **o), "AutoBackbone",
         _swin_backbone_shapes),
]

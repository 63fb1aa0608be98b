"""MAE checkpoints from transformers (`ViTMAEForPreTraining`, `ViTMAEModel`) and from the official release
(facebookresearch/mae `mae_pretrain_vit_*.pth` / `mae_visualize_vit_*.pth` state dicts).

Our attribute names follow the official ones closely (`blocks.N.attn.qkv`, `decoder_blocks.N` ->
`decoder.blocks.N`), so the official mapping is a renaming; transformers keeps q, k and v apart, which we fuse.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from hf_vision.modeling.mae.configuration_mae import MAEConfig
from hf_vision.modeling.mae.modeling_mae import MAEForPreTraining, MAEModel

from . import OFFICIAL_LOADERS, TRANSFORMERS_CONVERTERS
from ..presets import get_config

_CONFIG_FIELDS = (
    "image_size", "patch_size", "num_channels", "hidden_size", "num_hidden_layers", "num_attention_heads",
    "intermediate_size", "hidden_act", "layer_norm_eps", "qkv_bias", "hidden_dropout_prob",
    "attention_probs_dropout_prob", "initializer_range", "decoder_hidden_size", "decoder_num_hidden_layers",
    "decoder_num_attention_heads", "decoder_intermediate_size", "mask_ratio", "norm_pix_loss",
)


def _load_strict(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> nn.Module:
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        raise ValueError(f"{source} does not fit {type(model).__name__}: missing {missing}, unexpected {unexpected}")
    return model.eval()


def _transformers_block(src: dict[str, torch.Tensor], s: str, d: str) -> dict[str, torch.Tensor]:
    """transformers' ViTMAE layer `s` -> our Block `d` (q, k, v fused into qkv in that order)."""
    out = {
        f"{d}.norm1.weight": src[f"{s}.layernorm_before.weight"],
        f"{d}.norm1.bias": src[f"{s}.layernorm_before.bias"],
        f"{d}.attn.qkv.weight": torch.cat([src[f"{s}.attention.{p}_proj.weight"] for p in "qkv"]),
        f"{d}.attn.proj.weight": src[f"{s}.attention.o_proj.weight"],
        f"{d}.attn.proj.bias": src[f"{s}.attention.o_proj.bias"],
        f"{d}.norm2.weight": src[f"{s}.layernorm_after.weight"],
        f"{d}.norm2.bias": src[f"{s}.layernorm_after.bias"],
    }
    if f"{s}.attention.q_proj.bias" in src:
        out[f"{d}.attn.qkv.bias"] = torch.cat([src[f"{s}.attention.{p}_proj.bias"] for p in "qkv"])
    for fc in ("fc1", "fc2"):
        for kind in ("weight", "bias"):
            out[f"{d}.mlp.{fc}.{kind}"] = src[f"{s}.mlp.{fc}.{kind}"]
    return out


def from_transformers(model: nn.Module) -> MAEForPreTraining | MAEModel:
    """Our `MAEForPreTraining` (from `ViTMAEForPreTraining`) or `MAEModel` (from `ViTMAEModel`), same weights;
    with the same `noise`, loss, logits, mask and ids_restore agree."""
    hf = model.config
    config = MAEConfig(**{field: getattr(hf, field) for field in _CONFIG_FIELDS})
    src = {k: v.detach() for k, v in model.state_dict().items()}
    pretraining = any(k.startswith("decoder.") for k in src)
    p = "vit." if pretraining else ""  # both sides keep the encoder under "vit." in the pre-training model
    state = {
        f"{p}embeddings.cls_token": src[f"{p}embeddings.cls_token"],
        f"{p}embeddings.position_embeddings": src[f"{p}embeddings.position_embeddings"],
        f"{p}embeddings.patch_embed.proj.weight": src[f"{p}embeddings.patch_embeddings.projection.weight"],
        f"{p}embeddings.patch_embed.proj.bias": src[f"{p}embeddings.patch_embeddings.projection.bias"],
        f"{p}norm.weight": src[f"{p}layernorm.weight"],
        f"{p}norm.bias": src[f"{p}layernorm.bias"],
    }
    for i in range(config.num_hidden_layers):
        state.update(_transformers_block(src, f"{p}layers.{i}", f"{p}encoder.blocks.{i}"))
    if not pretraining:
        return _load_strict(MAEModel(config), state, type(model).__name__)
    state.update({
        "decoder.embed.weight": src["decoder.decoder_embed.weight"],
        "decoder.embed.bias": src["decoder.decoder_embed.bias"],
        "decoder.mask_token": src["decoder.mask_token"],
        "decoder.position_embeddings": src["decoder.decoder_pos_embed"],
        "decoder.norm.weight": src["decoder.decoder_norm.weight"],
        "decoder.norm.bias": src["decoder.decoder_norm.bias"],
        "decoder.pred.weight": src["decoder.decoder_pred.weight"],
        "decoder.pred.bias": src["decoder.decoder_pred.bias"],
    })
    for i in range(config.decoder_num_hidden_layers):
        state.update(_transformers_block(src, f"decoder.decoder_layers.{i}", f"decoder.blocks.{i}"))
    return _load_strict(MAEForPreTraining(config), state, type(model).__name__)


# Official name prefix -> ours; everything under a block keeps its name (norm1, attn.qkv, attn.proj, norm2, mlp.fc*).
_OFFICIAL_ENCODER = {
    "cls_token": "embeddings.cls_token",
    "pos_embed": "embeddings.position_embeddings",
    "patch_embed.": "embeddings.patch_embed.",
    "blocks.": "encoder.blocks.",
    "norm.": "norm.",
}
_OFFICIAL_DECODER = {
    "mask_token": "decoder.mask_token",
    "decoder_pos_embed": "decoder.position_embeddings",
    "decoder_embed.": "decoder.embed.",
    "decoder_blocks.": "decoder.blocks.",
    "decoder_norm.": "decoder.norm.",
    "decoder_pred.": "decoder.pred.",
}


def _rename(key: str, table: dict[str, str]) -> str | None:
    for old, new in table.items():
        if key == old or (old.endswith(".") and key.startswith(old)):
            return new + key[len(old):]
    return None


def official_state_dict(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], bool]:
    """Official MAE keys -> ours; returns (state dict, has a decoder). Unknown keys raise."""
    if "model" in state_dict and isinstance(state_dict["model"], dict):
        state_dict = state_dict["model"]
    decoder = any(k.startswith("decoder_") or k == "mask_token" for k in state_dict)
    out, unknown = {}, []
    for key, value in state_dict.items():
        if (new := _rename(key, _OFFICIAL_DECODER)) is not None:
            out[new] = value
        elif (new := _rename(key, _OFFICIAL_ENCODER)) is not None:
            out[("vit." if decoder else "") + new] = value
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"not an MAE pre-training checkpoint: unknown keys {unknown[:8]}")
    return out, decoder


def load_official(path: str | Path, name: str, **overrides: Any) -> MAEForPreTraining | MAEModel:
    """An official MAE checkpoint for the preset `name` (e.g. "mae-vit-base-patch16"): `MAEForPreTraining` when
    it holds the decoder (`mae_visualize_vit_*.pth`), `MAEModel` for encoder-only files (`mae_pretrain_vit_*.pth`).
    Read with `weights_only=True`: no code in the file runs."""
    raw = torch.load(path, map_location="cpu", weights_only=True)
    state, has_decoder = official_state_dict(raw)
    config = get_config(name, **overrides)
    if not isinstance(config, MAEConfig):
        raise ValueError(f"preset {name!r} is not an MAE preset")
    model = MAEForPreTraining(config) if has_decoder else MAEModel(config)
    return _load_strict(model, state, str(path))


TRANSFORMERS_CONVERTERS["vit_mae"] = from_transformers
OFFICIAL_LOADERS["mae-"] = load_official

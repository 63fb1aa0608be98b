"""MAE checkpoints from transformers (`ViTMAEForPreTraining`, `ViTMAEModel`) and from the official release
(facebookresearch/mae `mae_pretrain_vit_*.pth` / `mae_visualize_vit_*.pth` state dicts), and the way back to
transformers (`ViTMAEForPreTraining` / `ViTMAEModel`) and to a timm ViT (the encoder).

Our attribute names follow the official ones closely (`blocks.N.attn.qkv`, `decoder_blocks.N` ->
`decoder.blocks.N`), so the official mapping is a renaming; transformers keeps q, k and v apart, which we fuse.
transformers' ViTMAE encoder uses ViT's names, so its key map is ViT's (convert/vit.py), applied to the decoder too.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hf_vision.modeling.mae.configuration_mae import MAEConfig
from hf_vision.modeling.mae.modeling_mae import MAEForPreTraining, MAEModel

from . import KeySource, assemble, fill_strictly, load_strictly, rebase, timm_pretrained_cfg
from ..presets import get_config
from .vit import timm_vit_args, timm_vit_key, transformers_vit_key

logger = logging.getLogger(__name__)

_CONFIG_FIELDS = (
    "image_size", "patch_size", "num_channels", "hidden_size", "num_hidden_layers", "num_attention_heads",
    "intermediate_size", "hidden_act", "layer_norm_eps", "qkv_bias", "hidden_dropout_prob",
    "attention_probs_dropout_prob", "initializer_range", "decoder_hidden_size", "decoder_num_hidden_layers",
    "decoder_num_attention_heads", "decoder_intermediate_size", "mask_ratio", "norm_pix_loss",
)


_HF_DECODER = {
    "decoder.decoder_embed.": "decoder.embed.",
    "decoder.mask_token": "decoder.mask_token",
    "decoder.decoder_pos_embed": "decoder.position_embeddings",
    "decoder.decoder_norm.": "decoder.norm.",
    "decoder.decoder_pred.": "decoder.pred.",
}


def transformers_mae_key(key: str) -> KeySource:
    """transformers ViTMAE key -> ours (None: no counterpart). The encoder is ViT's map under the same prefix
    ("vit." in the pre-training model, none in ViTMAEModel); decoder layers reuse ViT's layer map."""
    if key.startswith("decoder.decoder_layers."):  # "layers.N.*" -> "encoder.blocks.N.*" -> "decoder.blocks.N.*"
        return rebase(transformers_vit_key(key[len("decoder.decoder_"):]), "encoder.", "decoder.")
    if key.startswith("decoder."):
        return _rename(key, _HF_DECODER)
    prefix = "vit." if key.startswith("vit.") else ""
    return rebase(transformers_vit_key(key[len(prefix):]), "", prefix)


def from_transformers(model: nn.Module) -> MAEForPreTraining | MAEModel:
    """Our `MAEForPreTraining` (from `ViTMAEForPreTraining`) or `MAEModel` (from `ViTMAEModel`), same weights;
    with the same `noise`, loss, logits, mask and ids_restore agree."""
    hf = model.config
    config = MAEConfig(**{field: getattr(hf, field) for field in _CONFIG_FIELDS})
    src = {k: v.detach() for k, v in model.state_dict().items()}
    pretraining = any(k.startswith("decoder.") for k in src)
    state, unplaced = assemble(src, transformers_mae_key)
    if unplaced:
        raise ValueError(f"{type(model).__name__}: tensors with no counterpart in our MAE: {unplaced}")
    return load_strictly((MAEForPreTraining if pretraining else MAEModel)(config), state, type(model).__name__)


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
    return load_strictly(model, state, str(path))


# ---------------------------------------------------------------- the way back
def _refuse_masking_variants(config: MAEConfig, library: str) -> None:
    if config.mask_strategy != "random":
        raise ValueError(f"{library} masks at random only: mask_strategy={config.mask_strategy!r} "
                         "is not expressible (accepted: 'random')")
    if config.encoder_mask_tokens:
        raise ValueError(f"{library} has no encoder mask token: encoder_mask_tokens=True is not expressible "
                         "(accepted: False)")


def to_transformers(model: nn.Module) -> nn.Module:
    """transformers `ViTMAEForPreTraining` (from ours) or `ViTMAEModel` (from `MAEModel`): for the same noise the
    same loss, logits, mask and ids_restore."""
    import transformers

    config = model.config
    _refuse_masking_variants(config, "transformers' ViTMAE")
    if config.drop_path_rate:
        logger.warning("transformers' ViTMAE has no stochastic depth: drop_path_rate=%s is not carried over",
                       config.drop_path_rate)
    fields = {field: getattr(config, field) for field in _CONFIG_FIELDS}
    if isinstance(fields["image_size"], list):
        fields["image_size"] = tuple(fields["image_size"])
    hf_config = transformers.ViTMAEConfig(**fields)
    pretraining = isinstance(model, MAEForPreTraining)
    target = (transformers.ViTMAEForPreTraining if pretraining else transformers.ViTMAEModel)(hf_config)
    return fill_strictly(target, model, transformers_mae_key)


def timm_encoder_args(config: MAEConfig, *, global_pool: str) -> tuple[str, dict[str, Any]]:
    """timm ViT arguments for our MAE encoder, through the ViT config it exports (MAEConfig.vit_config)."""
    vit = config.vit_config(num_labels=0)
    if global_pool not in ("token", "avg"):
        raise ValueError(f"global_pool={global_pool!r} is not supported; accepted: 'token', 'avg'")
    vit.pooling, vit.fc_norm = ("cls" if global_pool == "token" else "gap"), False
    return timm_vit_args(vit, num_classes=0)


def to_timm(model: nn.Module, *, global_pool: str = "avg") -> nn.Module:
    """The MAE encoder as a timm `VisionTransformer` (num_classes=0, no masking): features of the whole image.

    global_pool: "avg" (mean of the normalised patch tokens, the default) or "token" (the class token). The
    encoder's final norm stays on every token (fc_norm=False): a fine-tuning fc_norm would be new, untrained
    weights. Add a classifier in timm with `reset_classifier(num_classes)`; the decoder is left behind.
    """
    import timm

    config = model.config
    _refuse_masking_variants(config, "timm's ViT")
    arch, args = timm_encoder_args(config, global_pool=global_pool)
    target = timm.create_model(arch, pretrained=False, **args)
    timm_pretrained_cfg(target, config)
    prefix = "vit." if isinstance(model, MAEForPreTraining) else ""

    def source_of(key: str) -> KeySource:
        return rebase(timm_vit_key(key), "", prefix)

    return fill_strictly(target, model, source_of, leave=lambda key: key.startswith("decoder."))



"""Google's released ViT and R50+ViT checkpoints (github.com/google-research/vision_transformer `.npz`, Flax
layout) as our models: the architecture is read off the arrays and checked against the preset, each array is
renamed and transposed into our layout, and the result is loaded strictly (`build_and_load`). Registers itself as
the official loader for "vit-" presets.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hf_vision.modeling.config_checks import pair
from hf_vision.modeling.hybrid.configuration_hybrid import HybridConfig
from hf_vision.modeling.hybrid.modeling_hybrid import HybridForImageClassification
from hf_vision.modeling.layers.pos_embed import resample_pos_embed
from hf_vision.modeling.vit.configuration_vit import ViTConfig
from hf_vision.modeling.vit.modeling_vit import ViTForImageClassification

from ..presets import PRESETS, get_config
from . import load_strictly
from .hybrid import official_backbone_layers, official_backbone_state_dict
from .vit import POS, build_and_load

logger = logging.getLogger(__name__)


_ARCH_FIELDS = ("num_channels", "hidden_size", "patch_size", "num_hidden_layers", "num_attention_heads",
                "intermediate_size", "backbone_layers", "backbone_width")
_PREFIXES = ("", "opt/target/", "params/")


def _t(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


class _ReadTracker(dict):
    """A dict of arrays that remembers which were read, so arrays the loader never placed can be reported."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> np.ndarray:
        self.read.add(key)
        return super().__getitem__(key)

    def unread(self) -> list[str]:
        return sorted(set(self) - self.read)


def read_npz(path: str | Path) -> tuple[dict[str, np.ndarray], str]:
    """All arrays of a Flax checkpoint and the key prefix its trainer used ('' for the ViT releases)."""
    with np.load(path, allow_pickle=False) as npz:
        weights = _ReadTracker({k: npz[k] for k in npz.files})
    for prefix in _PREFIXES:
        if f"{prefix}embedding/kernel" in weights:
            return weights, prefix
    raise ValueError(f"{path}: not a ViT checkpoint in Google's layout (no 'embedding/kernel' array)")


def official_architecture(weights: dict[str, np.ndarray], p: str = "") -> dict[str, Any]:
    """Config fields read off the arrays: sizes, depth, heads, head/pre-logits/class-token presence."""
    emb = weights[f"{p}embedding/kernel"]  # (kh, kw, in, hidden)
    if emb.shape[0] != emb.shape[1]:
        raise ValueError(f"non-square patch kernel {emb.shape[:2]} is not supported")
    depth = 0
    while f"{p}Transformer/encoderblock_{depth}/LayerNorm_0/scale" in weights:
        depth += 1
    if depth == 0:
        raise ValueError("no 'Transformer/encoderblock_0/...' arrays: only the original ViT release layout is read")
    attn = f"{p}Transformer/encoderblock_0/MultiHeadDotProductAttention_1/"
    arch: dict[str, Any] = dict(
        hidden_size=emb.shape[3], patch_size=emb.shape[0], num_hidden_layers=depth,
        num_attention_heads=weights[attn + "query/kernel"].shape[1],
        intermediate_size=weights[f"{p}Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel"].shape[1],
        qkv_bias=True,
    )
    soft: dict[str, Any] = dict(
        class_token=f"{p}cls" in weights,
        pooling="cls" if f"{p}cls" in weights else "gap",
        fc_norm=False,  # Google's GAP averages encoder_norm outputs, no extra norm
        representation_size=weights[f"{p}pre_logits/kernel"].shape[1] if f"{p}pre_logits/kernel" in weights else None,
        num_labels=weights[f"{p}head/bias"].shape[0] if f"{p}head/bias" in weights else 0,
        position_embedding_type="learned" if f"{p}Transformer/posembed_input/pos_embedding" in weights else "none",
    )
    if f"{p}conv_root/kernel" in weights:
        arch.update(num_channels=weights[f"{p}conv_root/kernel"].shape[2],
                    backbone_layers=official_backbone_layers(weights, p),
                    backbone_width=weights[f"{p}conv_root/kernel"].shape[3])
    else:
        arch.update(num_channels=emb.shape[2])
    return {"strict": arch, "soft": soft}


def official_state_dict(weights: dict[str, np.ndarray], config: ViTConfig, p: str = "") -> dict[str, torch.Tensor]:
    """Google arrays -> our base-model state dict (position embeddings resized to the config's grid)."""
    c = config.hidden_size
    out: dict[str, torch.Tensor] = {
        # (kh, kw, in, out) -> (out, in, kh, kw)
        "embeddings.patch_embed.proj.weight": _t(weights[f"{p}embedding/kernel"].transpose(3, 2, 0, 1)),
        "embeddings.patch_embed.proj.bias": _t(weights[f"{p}embedding/bias"]),
        "norm.weight": _t(weights[f"{p}Transformer/encoder_norm/scale"]),
        "norm.bias": _t(weights[f"{p}Transformer/encoder_norm/bias"]),
    }
    if config.class_token:
        out["embeddings.cls_token"] = _t(weights[f"{p}cls"]).reshape(1, 1, c)  # (1, 1, C), as stored
    if config.position_embedding_type == "learned":
        pos = _t(weights[f"{p}Transformer/posembed_input/pos_embedding"]).reshape(1, -1, c)  # (1, prefix + H*W, C)
        prefix = int(config.class_token)
        side = math.isqrt(pos.shape[1] - prefix)
        if side * side != pos.shape[1] - prefix:
            raise ValueError(f"position embedding with {pos.shape[1] - prefix} grid tokens is not a square grid")
        grid = tuple(s // config.grid_stride for s in pair(config.image_size))
        if grid != (side, side):
            logger.info("resizing position embeddings %dx%d -> %dx%d", side, side, *grid)
        out[POS] = resample_pos_embed(pos, grid, (side, side), num_prefix_tokens=prefix)
    if config.representation_size:
        out["pre_logits.fc.weight"] = _t(weights[f"{p}pre_logits/kernel"].T)  # Dense (in, out) -> Linear (out, in)
        out["pre_logits.fc.bias"] = _t(weights[f"{p}pre_logits/bias"])
    for i in range(config.num_hidden_layers):
        src, dst = f"{p}Transformer/encoderblock_{i}/", f"encoder.blocks.{i}."
        attn = src + "MultiHeadDotProductAttention_1/"
        # query/key/value kernels (C, heads, head_dim) -> rows of a (3C, C) Linear weight; biases (heads, hd) -> (C,)
        out[dst + "attn.qkv.weight"] = torch.cat([_t(weights[f"{attn}{n}/kernel"]).reshape(c, c).T
                                                  for n in ("query", "key", "value")])
        out[dst + "attn.qkv.bias"] = torch.cat([_t(weights[f"{attn}{n}/bias"]).reshape(c)
                                                for n in ("query", "key", "value")])
        # out kernel (heads, head_dim, C) -> (C_in, C_out) -> Linear weight (C_out, C_in)
        out[dst + "attn.proj.weight"] = _t(weights[attn + "out/kernel"]).reshape(c, c).T
        out[dst + "attn.proj.bias"] = _t(weights[attn + "out/bias"])
        for ours, theirs in (("norm1", "LayerNorm_0"), ("norm2", "LayerNorm_2")):
            out[f"{dst}{ours}.weight"] = _t(weights[f"{src}{theirs}/scale"])
            out[f"{dst}{ours}.bias"] = _t(weights[f"{src}{theirs}/bias"])
        for r in (1, 2):
            dense = f"{src}MlpBlock_3/Dense_{r - 1}/"
            out[f"{dst}mlp.fc{r}.weight"] = _t(weights[dense + "kernel"].T)  # Dense (in, out) -> Linear (out, in)
            out[f"{dst}mlp.fc{r}.bias"] = _t(weights[dense + "bias"])
    if isinstance(config, HybridConfig):
        out.update(official_backbone_state_dict(weights, list(config.backbone_layers), p))
    return {k: v.contiguous() for k, v in out.items()}


def load_official_vit(path: str | Path, name: str, **overrides: Any) -> nn.Module:
    """Google's ViT / R50+ViT `.npz` (github.com/google-research/vision_transformer) as our model.

    Architecture (sizes, depth, heads, trunk) is read from the arrays and must agree with the preset `name` and
    `overrides`; class token, pooling, pre-logits and the head size come from the file. `image_size` (from the
    preset or an override) may differ from the checkpoint's: the position embeddings are resized bicubically.
    A `num_labels` override different from the file's head leaves a freshly initialised classifier.
    """
    if name not in PRESETS:
        get_config(name)  # raises the error listing valid names
    weights, p = read_npz(path)
    arch = official_architecture(weights, p)
    hybrid_file = "backbone_layers" in arch["strict"]
    if hybrid_file != issubclass(PRESETS[name].config_class, HybridConfig):
        raise ValueError(f"{path} is a {'hybrid' if hybrid_file else 'plain ViT'} checkpoint but preset {name!r} is "
                         f"{'a hybrid' if not hybrid_file else 'a plain ViT'}")
    expected = get_config(name, **overrides)
    for field in _ARCH_FIELDS:
        if field in arch["strict"] and getattr(expected, field) != arch["strict"][field]:
            raise ValueError(f"checkpoint has {field}={arch['strict'][field]!r} but preset {name!r} (with overrides) "
                             f"says {getattr(expected, field)!r}; pick the matching preset or override {field}")
    config = get_config(name, **{**arch["strict"], **arch["soft"], **overrides})
    base = official_state_dict(weights, config, p)
    file_labels = arch["soft"]["num_labels"]
    head = None
    if config.num_labels > 0 and config.num_labels == file_labels:
        # Dense (in, classes) -> Linear (classes, in)
        head = {"classifier.weight": _t(weights[f"{p}head/kernel"].T), "classifier.bias": _t(weights[f"{p}head/bias"])}
    unread = [k for k in weights.unread() if not k.startswith(f"{p}head/")]
    if unread:  # e.g. a layout variant we do not know: say so rather than drop weights silently
        logger.warning("%s: %d arrays were not used: %s", path, len(unread), ", ".join(unread[:10]))
    if head is not None:
        return build_and_load(config, base, head, str(path))
    if config.num_labels > 0:  # new head (fine-tuning on another label set): keep its fresh initialisation
        logger.warning("checkpoint head has %d classes, config asks for %d: classifier left freshly initialised",
                       file_labels, config.num_labels)
        cls = HybridForImageClassification if isinstance(config, HybridConfig) else ViTForImageClassification
        model = cls(config)
        load_strictly(model.vit, base, str(path))
        return model.eval()
    return build_and_load(config, base, None, str(path))



"""Swin conversion: timm `swin_*`, transformers `SwinModel`/`SwinForImageClassification`/`SwinBackbone`, and
Microsoft's released `.pth` checkpoints (state dict under "model"); the way back to timm and transformers reads
the same key maps backwards.

Our attribute names are Microsoft's, so the official format is a rename plus dropping shape-only buffers;
timm moves each patch merging to the start of the next stage (`layers.i.downsample` -> our `layers.{i-1}`);
transformers splits q/k/v and renames norms. Stages whose feature map is no larger than the window were built
with a smaller window by timm and Microsoft, so their bias tables are smaller: we embed them at the centre of
ours, which is exact for every input size those models accept (the centre is all a smaller window reads); the
way back crops that centre out again.
"""
from __future__ import annotations

import math
import re
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hf_vision.modeling.config_checks import pair
from hf_vision.modeling.swin.configuration_swin import SwinConfig
from hf_vision.modeling.swin.modeling_swin import (
    SwinBackbone,
    SwinForImageClassification,
    SwinModel,
    resize_relative_position_bias_table,
)

from . import KEEP, KeySource, assemble, fill_strictly, load_strictly, rebase, timm_pretrained_cfg

_TABLE = "relative_position_bias_table"
# our classifier's state-dict prefix (SwinForImageClassification); every map below goes through it
HEAD = "classifier."
_SHAPE_ONLY = ("relative_position_index", "attn_mask")  # buffers each library derives from the window


def stage_windows(config: SwinConfig) -> list[int]:
    """The window each stage of a model built for `config.image_size` uses in timm and the official code:
    the configured one, or the (smaller) side of a stage map that fits in one window."""
    height, width = pair(config.image_size)
    side = min(math.ceil(height / config.patch_size), math.ceil(width / config.patch_size))
    windows = []
    for _ in config.depths:
        windows.append(side if side <= config.window_size else config.window_size)
        side = math.ceil(side / 2)
    return windows


def fit_table(table: torch.Tensor, window: int, source_window: int | None = None) -> torch.Tensor:
    """A source table ((2m-1)^2, heads) as ours ((2M-1)^2, heads): unchanged when m == M; embedded at the centre
    when m < M is a stage's clamped window (exact: a window of side m only reads the centre); otherwise
    (another configured window, e.g. 7 -> 12) resized bicubically like the official fine-tuning."""
    side, target = math.isqrt(table.shape[0]), 2 * window - 1
    if side == target:
        return table
    if source_window is not None and side == 2 * source_window - 1 and source_window < window:
        out = table.new_zeros(target, target, table.shape[1])
        offset = window - source_window
        # ((2m-1)^2, heads) -> (2m-1, 2m-1, heads), placed at the centre of (2M-1, 2M-1, heads)
        out[offset:offset + side, offset:offset + side] = table.view(side, side, -1)
        return out.view(target * target, -1)
    return resize_relative_position_bias_table(table, target * target)


def crop_table(table: torch.Tensor, window: int) -> torch.Tensor:
    """Our table ((2M-1)^2, heads) for a stage clamped to a window of side m <= M: its centre ((2m-1)^2, heads),
    the only part such a window reads (the inverse of `fit_table`'s embedding)."""
    side, target = math.isqrt(table.shape[0]), 2 * window - 1
    offset = (side - target) // 2
    # ((2M-1)^2, heads) -> (2M-1, 2M-1, heads) -> centre (2m-1, 2m-1, heads) -> ((2m-1)^2, heads)
    return table.view(side, side, -1)[offset:offset + target, offset:offset + target].reshape(target * target, -1)


def _fit_tables(state_dict: dict[str, torch.Tensor], config: SwinConfig, prefix: str,
                source_windows: list[int] | None) -> None:
    """Bring every stage's bias table to our (2M-1)^2 size (see `fit_table`)."""
    pattern = re.compile(rf"^{re.escape(prefix)}layers\.(\d+)\.blocks\.\d+\.attn\.{_TABLE}$")
    for key, value in list(state_dict.items()):
        match = pattern.match(key)
        if match:
            stage = int(match.group(1))
            state_dict[key] = fit_table(value, config.window_size, source_windows[stage] if source_windows else None)


# ---------------------------------------------------------------- timm
def _is_timm_swin(model: nn.Module) -> bool:
    return type(model).__name__ == "SwinTransformer" and type(model).__module__.startswith("timm.")


def timm_config(model: nn.Module, **overrides: Any) -> SwinConfig:
    """SwinConfig reproducing a timm SwinTransformer; ValueError for what we do not implement."""
    blocks = [block for stage in model.layers for block in stage.blocks]
    windows = {tuple(block.window_size) for block in blocks}
    if any(h != w for h, w in windows):
        raise ValueError(f"timm swin: only square windows are supported, got {sorted(windows)}")
    if any(getattr(block, "always_partition", False) for block in blocks):
        raise ValueError("timm swin: always_partition=True models are not supported (use SwinBackbone's "
                         "always_partition forward argument instead)")
    if getattr(model, "dynamic_img_size", False):
        raise ValueError("timm swin: dynamic_img_size/strict_img_size=False models pad after the shift; build the "
                         "timm model with a fixed img_size")
    if getattr(model, "global_pool", "avg") != "avg":
        raise ValueError(f"timm swin: global_pool={model.global_pool!r} is not supported (only 'avg')")
    first = model.layers[0].blocks[0]
    act = first.mlp.act
    if not isinstance(act, nn.GELU) or act.approximate != "none":
        raise ValueError(f"timm swin: only exact GELU MLPs are supported, got {act}")
    patch = model.patch_embed.patch_size
    if patch[0] != patch[1]:
        raise ValueError(f"timm swin: only square patches are supported, got {patch}")
    img_size = tuple(model.patch_embed.img_size)
    fields = dict(
        image_size=img_size[0] if img_size[0] == img_size[1] else list(img_size),
        patch_size=patch[0],
        num_channels=model.patch_embed.proj.in_channels,
        embed_dim=model.embed_dim,
        depths=[len(stage.blocks) for stage in model.layers],
        num_heads=[stage.blocks[0].attn.num_heads for stage in model.layers],
        window_size=max(w for w, _ in windows),
        mlp_ratio=first.mlp.fc1.out_features / first.mlp.fc1.in_features,
        qkv_bias=first.attn.qkv.bias is not None,
        layer_norm_eps=model.norm.eps,
        patch_norm=not isinstance(model.patch_embed.norm, nn.Identity),
        shifted_windows=any(any(block.target_shift_size) for block in blocks),
        drop_path_rate=0.0,
        num_labels=model.num_classes,
    )
    return SwinConfig(**{**fields, **overrides})


def timm_key(key: str) -> str | None:
    """timm state-dict key -> ours (under `swin.`, the classifier at the top); None to drop."""
    if key.startswith("head.fc."):
        return HEAD + key[len("head.fc."):]
    match = re.match(r"^layers\.(\d+)\.downsample\.(.*)$", key)
    if match:
        return f"swin.layers.{int(match.group(1)) - 1}.downsample.{match.group(2)}"
    if key.endswith(_SHAPE_ONLY):
        return None
    return "swin." + key


def from_timm_swin(model: nn.Module, **overrides: Any) -> SwinForImageClassification | SwinModel:
    """Our SwinForImageClassification (SwinModel when the timm model has no head) with the timm weights."""
    config = timm_config(model, **overrides)
    source = {timm_key(k): v for k, v in model.state_dict().items()}
    source.pop(None, None)
    windows = [stage.blocks[0].window_size[0] for stage in model.layers]
    _fit_tables(source, config, "swin.", windows)
    if config.num_labels > 0 and model.num_classes > 0:
        return load_strictly(SwinForImageClassification(config), source, "timm SwinTransformer")
    base = {k[len("swin."):]: v for k, v in source.items() if k.startswith("swin.")}
    return load_strictly(SwinModel(config), base, "timm SwinTransformer")


# ---------------------------------------------------------------- transformers
# SwinConfig fields that transformers' SwinConfig names and means the same way
_SAME_NAMED_FIELDS = ("num_channels", "embed_dim", "window_size", "mlp_ratio", "qkv_bias", "hidden_act",
                      "hidden_dropout_prob", "attention_probs_dropout_prob", "drop_path_rate", "layer_norm_eps",
                      "initializer_range")


def transformers_config(config, **overrides: Any) -> SwinConfig:
    """Our SwinConfig from a transformers SwinConfig (labels and backbone outputs included)."""
    patch = config.patch_size
    if isinstance(patch, (list, tuple)):
        if patch[0] != patch[1]:
            raise ValueError(f"transformers swin: only square patches are supported, got {patch}")
        patch = patch[0]
    fields = {name: getattr(config, name) for name in _SAME_NAMED_FIELDS}
    fields.update(
        image_size=config.image_size if isinstance(config.image_size, int) else list(config.image_size),
        patch_size=patch,
        depths=list(config.depths),
        num_heads=list(config.num_heads),
        use_absolute_position_embeddings=config.use_absolute_embeddings,
        out_features=list(config.out_features) if config.out_features else None,
        id2label=dict(config.id2label),
        label2id=dict(config.label2id),
    )
    return SwinConfig(**{**fields, **overrides})


_TRANSFORMERS_RENAMES = [
    (r"embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"embeddings\.norm\.", "patch_embed.norm."),
    (r"embeddings\.position_embeddings$", "absolute_pos_embed"),
    (r"encoder\.layers\.", "layers."),
    (r"\.layernorm_before\.", ".norm1."),
    (r"\.layernorm_after\.", ".norm2."),
    (r"\.attention\.relative_position_bias\.relative_position_bias_table$", ".attn.relative_position_bias_table"),
    (r"\.attention\.o_proj\.", ".attn.proj."),
    (r"^(swin\.)?layernorm\.", r"\1norm."),
]


def transformers_key(key: str) -> KeySource:
    """transformers Swin key -> ours: renamed, q/k/v as thirds of our fused qkv (q, k, v order), index buffers and
    the mask token (masked image modeling only) KEEP."""
    if key.endswith(("relative_position_index", "mask_token")):
        return KEEP
    for pattern, repl in _TRANSFORMERS_RENAMES:
        key = re.sub(pattern, repl, key)
    match = re.match(r"^(.*)\.attention\.([qkv])_proj\.(weight|bias)$", key)
    if match:
        return f"{match.group(1)}.attn.qkv.{match.group(3)}", "qkv".index(match.group(2)), 3
    return key


def transformers_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename transformers Swin keys to ours and fuse q/k/v into one qkv projection."""
    return assemble(state_dict, transformers_key)[0]


def from_transformers_swin(model: nn.Module, **overrides: Any) -> nn.Module:
    """Ours for a transformers SwinModel / SwinForImageClassification / SwinBackbone, with its weights."""
    name = type(model).__name__
    if name not in ("SwinModel", "SwinForImageClassification", "SwinBackbone"):
        raise ValueError(f"transformers swin: {name} is not supported (SwinModel, SwinForImageClassification, "
                         "SwinBackbone)")
    config = transformers_config(model.config, **overrides)
    source = transformers_state_dict(model.state_dict())
    if name == "SwinBackbone":
        source.pop("swin.norm.weight", None), source.pop("swin.norm.bias", None)  # unused by the backbone
        return load_strictly(SwinBackbone(config), source, name)
    if name == "SwinModel":
        if getattr(model, "pooler", None) is None:
            raise ValueError("transformers swin: SwinModel(add_pooling_layer=False) has no pooled output to match")
        return load_strictly(SwinModel(config), source, name)
    return load_strictly(SwinForImageClassification(config), source, name)


# ---------------------------------------------------------------- Microsoft's release
def official_state_dict(state_dict: dict[str, torch.Tensor], config: SwinConfig) -> dict[str, torch.Tensor]:
    """Microsoft's keys (already ours) under `swin.`, their `head` as our `classifier`; shape-only buffers
    dropped; tables of clamped stages embedded, tables of another window size resized."""
    out = {}
    for key, value in state_dict.items():
        if key.endswith(("relative_position_index", "attn_mask")):
            continue
        out[HEAD + key[len("head."):] if key.startswith("head.") else "swin." + key] = value
    saved_windows = []
    for i in range(len(config.depths)):
        table = out.get(f"swin.layers.{i}.blocks.0.attn.{_TABLE}")
        saved_windows.append((math.isqrt(table.shape[0]) + 1) // 2 if table is not None else None)
    # a stage table smaller than the configured window is the official clamp when it matches our stage rule
    expected = stage_windows(config)
    windows = [w if w is not None and w == e else None for w, e in zip(saved_windows, expected)]
    for i, w in enumerate(windows):
        if w is None:
            continue
        prefix = f"swin.layers.{i}.blocks."
        for key in [k for k in out if k.startswith(prefix) and k.endswith(_TABLE)]:
            out[key] = fit_table(out[key], config.window_size, w)
    return out


def load_official_swin(path: str | Path, name: str, **overrides: Any) -> SwinForImageClassification:
    """A Microsoft Swin `.pth` (dict with the state under "model") as our classifier for preset `name`.

    Read with `weights_only=True`; the number of classes comes from the checkpoint's head (1000 or 21841).
    Tables and absolute position embeddings saved at another window/image size are resized on load.
    """
    from hf_vision.presets import get_config

    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state_dict = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else checkpoint
    if "head.weight" in state_dict:
        overrides.setdefault("num_labels", state_dict["head.weight"].shape[0])
    if "absolute_pos_embed" in state_dict:
        overrides.setdefault("use_absolute_position_embeddings", True)
    config = get_config(name, **overrides)
    model = SwinForImageClassification(config)
    source = model.adapt_state_dict(official_state_dict(state_dict, config))
    return load_strictly(model, source, str(path))


# ---------------------------------------------------------------- the way back
def _refuse(library: str, config: SwinConfig, extra: dict[str, bool] | None = None) -> None:
    reasons = {
        "shifted_windows=False (every other block is always shifted there)": not config.shifted_windows,
        "use_relative_position_bias=False": not config.use_relative_position_bias,
        "patch_norm=False (the patch embedding is always normalised there)": not config.patch_norm,
        **(extra or {}),
    }
    found = [reason for reason, present in reasons.items() if present]
    if found:
        raise ValueError(f"{library} cannot express this Swin: {'; '.join(found)}")


def timm_swin_args(config: SwinConfig, *, num_classes: int) -> tuple[str, dict[str, Any]]:
    """(timm architecture, create_model kwargs) for our SwinConfig; ValueError naming what timm lacks."""
    _refuse("timm's SwinTransformer", config, {
        "use_absolute_position_embeddings=True": config.use_absolute_position_embeddings,
        f"hidden_act={config.hidden_act!r} (accepted: 'gelu')": config.hidden_act != "gelu",
    })
    height, width = pair(config.image_size)
    args: dict[str, Any] = dict(
        img_size=height if height == width else (height, width), patch_size=config.patch_size,
        in_chans=config.num_channels, num_classes=num_classes, embed_dim=config.embed_dim,
        depths=tuple(config.depths), num_heads=tuple(config.num_heads), window_size=config.window_size,
        mlp_ratio=config.mlp_ratio, qkv_bias=config.qkv_bias, proj_drop_rate=config.hidden_dropout_prob,
        attn_drop_rate=config.attention_probs_dropout_prob, drop_path_rate=config.drop_path_rate,
    )
    if config.layer_norm_eps != 1e-5:  # timm's default; another eps is not serialisable into timm's config
        args["norm_layer"] = partial(nn.LayerNorm, eps=config.layer_norm_eps)
    return "swin_tiny_patch4_window7_224", args


def to_timm_swin(model: nn.Module) -> nn.Module:
    """timm `SwinTransformer` with our weights (num_classes=0 from SwinModel: its output is our pooler_output).
    Stages whose map fits in one window get the centre of our bias tables, as timm builds them smaller."""
    import timm

    if isinstance(model, SwinBackbone):
        raise ValueError("to_timm: SwinBackbone is not supported; convert SwinModel or SwinForImageClassification "
                         "and use timm's features_only=True")
    classifier = isinstance(model, SwinForImageClassification)
    config = model.config
    arch, args = timm_swin_args(config, num_classes=config.num_labels if classifier else 0)
    target = timm.create_model(arch, pretrained=False, **args)
    timm_pretrained_cfg(target, config)

    def source_of(key: str) -> KeySource:
        if key.endswith(_SHAPE_ONLY):
            return KEEP
        return timm_key(key) if classifier else rebase(timm_key(key), "swin.", "")

    def adapt(key: str, tensor: torch.Tensor, theirs: torch.Tensor) -> torch.Tensor:
        return crop_table(tensor, (math.isqrt(theirs.shape[0]) + 1) // 2) if key.endswith(_TABLE) else tensor

    return fill_strictly(target, model, source_of, adapt=adapt)


def transformers_config_for(config: SwinConfig, *, backbone: bool = False):
    """transformers' SwinConfig for ours (the inverse of `transformers_config`)."""
    from transformers import SwinConfig as HFSwinConfig

    windows = stage_windows(config)
    _refuse("transformers' Swin", config, {
        # transformers 5.24 clamps such a stage's window but keeps the full-size bias: its forward fails; its
        # backbone pads to a whole window instead, as ours does
        f"window_size={config.window_size} larger than a stage's map at image_size={config.image_size} (stage "
        f"windows {windows})": not backbone and min(windows) < config.window_size,
    })
    height, width = pair(config.image_size)
    return HFSwinConfig(
        image_size=height if height == width else [height, width], patch_size=config.patch_size,
        num_channels=config.num_channels, embed_dim=config.embed_dim, depths=list(config.depths),
        num_heads=list(config.num_heads), window_size=config.window_size, mlp_ratio=config.mlp_ratio,
        qkv_bias=config.qkv_bias, hidden_act=config.hidden_act, hidden_dropout_prob=config.hidden_dropout_prob,
        attention_probs_dropout_prob=config.attention_probs_dropout_prob, drop_path_rate=config.drop_path_rate,
        layer_norm_eps=config.layer_norm_eps, initializer_range=config.initializer_range,
        use_absolute_embeddings=config.use_absolute_position_embeddings, out_features=list(config.out_features),
        num_labels=config.num_labels, id2label=dict(config.id2label), label2id=dict(config.label2id),
    )


def to_transformers_swin(model: nn.Module) -> nn.Module:
    """transformers SwinForImageClassification / SwinModel (with its pooler) / SwinBackbone, with our weights."""
    import transformers

    hf_config = transformers_config_for(model.config, backbone=isinstance(model, SwinBackbone))
    if isinstance(model, SwinBackbone):
        target = transformers.SwinBackbone(hf_config)
    elif isinstance(model, SwinForImageClassification):
        target = transformers.SwinForImageClassification(hf_config)
    else:
        target = transformers.SwinModel(hf_config)
    backbone = isinstance(model, SwinBackbone)

    def source_of(key: str) -> KeySource:
        if backbone and key.startswith("swin.layernorm."):
            return KEEP  # transformers' backbone holds the final norm but never applies it (hidden_states_norms do)
        return transformers_key(key)

    return fill_strictly(target, model, source_of)



"""Conversion between our models and timm, transformers and the papers' official releases.

The registries below say which converter handles what; `_fill_registries` (at the end) is the one place that
fills them, from the family modules, which only define converters. The entry points dispatch on what they are given. The way
back (`to_timm`, `to_transformers`) reuses each family's key map in reverse: it builds the other library's model,
asks the map which of our tensors fills each of its keys, and loads the result strictly (`fill_strictly`).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hf_vision.modeling.config_checks import pair

# (predicate on the source model, converter) pairs; all registries are filled by `_fill_registries` below.
TIMM_CONVERTERS: list[tuple[Callable[[nn.Module], bool], Callable[[nn.Module], nn.Module]]] = []
TRANSFORMERS_CONVERTERS: dict[str, Callable[[nn.Module], nn.Module]] = {}  # transformers model_type -> converter
OFFICIAL_LOADERS: dict[str, Callable[..., nn.Module]] = {}  # preset-name prefix -> loader
# our model class -> converter to the other library
TO_TIMM: dict[type, Callable[..., nn.Module]] = {}
TO_TRANSFORMERS: dict[type, Callable[..., nn.Module]] = {}

KEEP = "keep"  # a key map's answer for a target tensor that is shape-only (an index buffer): keep the target's own
# what a key map answers for one target key: our key, or (our key, part, parts) for a slice of a fused tensor
# (q, k, v = parts 0, 1, 2 of 3 of our qkv along dim 0), or KEEP, or None (no counterpart: an error)
KeySource = str | tuple[str, int, int] | None


def from_timm(model: nn.Module) -> nn.Module:
    """Our model with the same weights and matching config as a timm model, including timm's evaluation
    preprocessing (mean, std, crop_pct, interpolation, crop mode) for the saved image processor."""
    from .preprocessing import apply_preprocessing, timm_preprocessing

    for accepts, convert in TIMM_CONVERTERS:
        if accepts(model):
            return apply_preprocessing(convert(model), timm_preprocessing(model))
    raise ValueError(f"no converter for timm model {type(model).__name__}")


def from_transformers(model: nn.Module, *, preprocessor: dict[str, Any] | None = None) -> nn.Module:
    """Our model with the same weights and matching config as a transformers model; `preprocessor` (the source's
    preprocessor_config.json as a dict) carries its mean, std, resize and crop over to our processor."""
    from .preprocessing import apply_preprocessing, transformers_preprocessing

    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in TRANSFORMERS_CONVERTERS:
        raise ValueError(
            f"no converter for transformers model_type={model_type!r}; supported: {', '.join(sorted(TRANSFORMERS_CONVERTERS))}"
        )
    return apply_preprocessing(TRANSFORMERS_CONVERTERS[model_type](model), transformers_preprocessing(preprocessor))


def _dispatch(registry: dict[type, Callable[..., nn.Module]], model: nn.Module, library: str, **kwargs: Any):
    for cls in type(model).__mro__:
        if cls in registry:
            return registry[cls](model, **kwargs)
    names = ", ".join(sorted(c.__name__ for c in registry))
    raise ValueError(f"no converter to {library} for {type(model).__name__}; supported: {names}")


def to_timm(model: nn.Module, **kwargs: Any) -> nn.Module:
    """The timm model equivalent to ours (built at random init, then loaded strictly with our weights), in eval
    mode; ValueError naming the config field for what timm cannot express. Family options: see TO_TIMM's entry."""
    return _dispatch(TO_TIMM, model, "timm", **kwargs)


def to_transformers(model: nn.Module, **kwargs: Any) -> nn.Module:
    """The transformers model equivalent to ours (random init, then our weights loaded strictly), in eval mode;
    ValueError naming the config field for what transformers' architecture cannot express."""
    return _dispatch(TO_TRANSFORMERS, model, "transformers", **kwargs)


def rebase(source: KeySource, old: str, new: str) -> KeySource:
    """A key map's answer with the prefix `old` of our key replaced by `new` (e.g. "" -> "vit." for the base model
    inside a classifier); None and KEEP pass through."""
    if source is None or source == KEEP:
        return source
    name = source if isinstance(source, str) else source[0]
    if not name.startswith(old):
        raise ValueError(f"{name!r} does not start with {old!r}")
    name = new + name[len(old):]
    return name if isinstance(source, str) else (name, *source[1:])


def assemble(
    state: dict[str, torch.Tensor], source_of: Callable[[str], KeySource]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A foreign state dict -> ours through a key map (the forward direction of `fill_strictly`): renamed tensors,
    parts concatenated into fused ones (q, k, v -> qkv). Returns (ours, foreign keys without a counterpart)."""
    out: dict[str, torch.Tensor] = {}
    parts: dict[str, dict[int, torch.Tensor]] = {}
    unplaced = []
    for key, value in state.items():
        source = source_of(key)
        if source is None or source == KEEP:
            unplaced.extend([key] if source is None else [])
        elif isinstance(source, str):
            out[source] = value
        else:
            parts.setdefault(source[0], {})[source[1]] = value
    for name, pieces in parts.items():
        # parts (C, ...) each -> (parts * C, ...) along dim 0, in part order
        out[name] = torch.cat([pieces[i] for i in range(len(pieces))], dim=0)
    return out, unplaced


def timm_pretrained_cfg(target: nn.Module, config: Any) -> None:
    """Put our preprocessing into a timm model's `pretrained_cfg` (what timm's data config and Hub config read):
    input size, mean/std, and the model's evaluation resize-and-crop (its config's interpolation, crop_pct and
    crop_mode, as its image processor; default bicubic, 0.875, center). The architecture's
    structural entries stay; those describing timm's released weights (hub id, tag, license, ...) go."""
    from ..data.transforms import PreprocessSpec

    height, width = pair(config.image_size)
    structural = ("architecture", "fixed_input_size", "pool_size", "first_conv", "classifier", "custom_load")
    target.pretrained_cfg = {
        **{k: v for k, v in target.pretrained_cfg.items() if k in structural},
        "input_size": (config.num_channels, height, width), "mean": tuple(config.image_mean),
        "std": tuple(config.image_std), "interpolation": getattr(config, "interpolation", None) or "bicubic",
        "crop_pct": getattr(config, "crop_pct", None) or PreprocessSpec.crop_pct,
        "crop_mode": getattr(config, "crop_mode", None) or "center", "num_classes": target.num_classes,
    }


def fill_strictly(
    target: nn.Module,
    ours: nn.Module,
    source_of: Callable[[str], KeySource],
    *,
    adapt: Callable[[str, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    leave: Callable[[str], bool] | None = None,
) -> nn.Module:
    """Load every tensor of `target` (another library's model) from `ours`, strictly, and return it in eval mode.

    `source_of(target_key)` is a family's forward key map read backwards (see KeySource); `adapt(key, ours,
    target)` may reshape a tensor whose layout differs (e.g. a smaller Swin bias table); `leave(our_key)` marks
    tensors of ours the target deliberately has no place for (MAE's decoder in a timm ViT). A target tensor without
    a source, one of our tensors left unused, or a shape mismatch raises ValueError: nothing is dropped silently.
    """
    # our non-persistent buffers (e.g. a fixed sin-cos table) may fill a learned parameter on the other side
    mine = {**dict(ours.named_buffers()), **ours.state_dict()}
    persistent = set(ours.state_dict())
    state, used, unplaced = {}, set(), []
    for key, value in target.state_dict().items():
        source = source_of(key)
        if source == KEEP:
            state[key] = value
            continue
        name, part, parts = (source, None, None) if isinstance(source, str) or source is None else source
        if name not in mine:
            unplaced.append(f"{key} <- {name}")
            continue
        used.add(name)
        tensor = mine[name] if part is None else mine[name].chunk(parts, dim=0)[part]
        if adapt is not None:
            tensor = adapt(key, tensor, value)
        if tuple(tensor.shape) != tuple(value.shape):
            raise ValueError(f"{key}: our {name} has shape {tuple(tensor.shape)}, {type(target).__name__} expects "
                             f"{tuple(value.shape)}")
        state[key] = tensor.detach().to(value.dtype).clone()
    unused = sorted(k for k in persistent - used if leave is None or not leave(k))
    if unplaced or unused:
        raise ValueError(f"conversion of {type(ours).__name__} to {type(target).__name__}: target tensors without a "
                         f"source {unplaced}, our tensors left unused {unused}")
    target.load_state_dict(state, strict=True)
    return target.eval()


class ConversionError(ValueError, RuntimeError):
    """A source that does not fit our model exactly. A ValueError (bad input) and, for callers of the Swin
    converter that caught load_state_dict's RuntimeError before the strict loaders were one, a RuntimeError."""


def load_strictly(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    """Load a converted state dict into `model` (ours, freshly built) and return it in eval mode: a key of `state`
    with no place in `model` (unexpected), a parameter of `model` left unfilled (missing), or a shape mismatch
    raises ConversionError naming them; nothing is dropped or left at random init silently. The one strict loader
    of the forward direction (`fill_strictly` is the way back)."""
    own = model.state_dict()
    unexpected, missing = sorted(set(state) - set(own)), sorted(set(own) - set(state))
    if missing or unexpected:
        raise ConversionError(f"{source} does not fit {type(model).__name__}: missing keys {missing}, "
                              f"unexpected keys {unexpected}")
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise ConversionError(f"{key}: {source} has shape {tuple(value.shape)}, {type(model).__name__} expects "
                                  f"{tuple(own[key].shape)}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)
    return model.eval()


def load_official(path: str | Path, name: str, **overrides: Any) -> nn.Module:
    """Read a paper's released checkpoint file for the preset `name` (e.g. Google's ViT `.npz`)."""
    for prefix, loader in sorted(OFFICIAL_LOADERS.items(), key=lambda kv: -len(kv[0])):
        if name.startswith(prefix):
            return loader(path, name, **overrides)
    raise ValueError(f"no official-checkpoint loader for {name!r}; supported prefixes: {', '.join(sorted(OFFICIAL_LOADERS))}")


def _fill_registries() -> None:
    """Every family's converters, in one table (run once, when this package is imported; the family modules
    import the helpers above, so they are imported here, after them). A new family adds its rows here."""
    from hf_vision.modeling.mae.modeling_mae import MAEForPreTraining, MAEModel
    from hf_vision.modeling.swin.modeling_swin import SwinBackbone, SwinForImageClassification, SwinModel
    from hf_vision.modeling.vit.modeling_vit import ViTForImageClassification, ViTModel

    from . import mae, swin, vit, vit_npz

    TIMM_CONVERTERS[:] = [(vit._is_timm_vit, vit.convert_timm_vit), (swin._is_timm_swin, swin.from_timm_swin)]
    TRANSFORMERS_CONVERTERS.update(
        {"vit": vit.convert_transformers_vit, "vit_mae": mae.from_transformers, "swin": swin.from_transformers_swin})
    OFFICIAL_LOADERS.update({"vit-": vit_npz.load_official_vit, "mae-": mae.load_official, "swin-": swin.load_official_swin})
    for classes, to_timm_fn, to_transformers_fn in (
        ((ViTModel, ViTForImageClassification), vit.to_timm_vit, vit.to_transformers_vit),
        ((MAEModel, MAEForPreTraining), mae.to_timm, mae.to_transformers),
        ((SwinModel, SwinForImageClassification, SwinBackbone), swin.to_timm_swin, swin.to_transformers_swin),
    ):
        TO_TIMM.update(dict.fromkeys(classes, to_timm_fn))
        TO_TRANSFORMERS.update(dict.fromkeys(classes, to_transformers_fn))


_fill_registries()

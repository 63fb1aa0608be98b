"""Base class shared by every family: what makes a checkpoint self-contained and loadable anywhere.

- `save_pretrained` also writes the model's source (this package, flattened: the Hub's remote-code loader only
  follows single-dot relative imports in one folder), an `auto_map` for every Auto class the model fits, and
  the image processor config, so `AutoModel.from_pretrained(dir, trust_remote_code=True)` needs nothing else.
- `adapt_state_dict` is the one hook through which a checkpoint is reshaped on load (position embeddings at a
  new resolution, an MAE encoder loaded into a classifier). It is reached from transformers' private
  `_load_pretrained_model`, the only private API we touch.
"""
from __future__ import annotations

import contextlib
import contextvars
import importlib.util
import inspect
import os
import re
import sys
import warnings
from pathlib import Path
from typing import ClassVar

import torch
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers.modeling_utils import load_state_dict

from .layers.block import Encoder

_RELATIVE_IMPORT = re.compile(r"^(\s*from\s+)(\.+)([\w.]*)(\s+import\b)", re.MULTILINE)


def _module_source_files(module_name: str) -> dict[str, Path]:
    """Every file reachable from `module_name` through relative imports, keyed by its (unique) basename."""
    found: dict[str, Path] = {}
    pending = [module_name]
    while pending:
        name = pending.pop()
        module = sys.modules.get(name) or importlib.import_module(name)
        path = Path(inspect.getsourcefile(module))
        if path.name in found:
            if found[path.name] != path:
                raise RuntimeError(f"two source files share the basename {path.name}: {found[path.name]}, {path}")
            continue
        found[path.name] = path
        package = module.__package__ or name.rpartition(".")[0]
        for _, dots, target, _ in _RELATIVE_IMPORT.findall(path.read_text()):
            pending.append(importlib.util.resolve_name(dots + target, package))
    return found


def _flatten_imports(source: str) -> str:
    """`from ..layers.attention import X` -> `from .attention import X` (all files land in one folder)."""
    return _RELATIVE_IMPORT.sub(lambda m: f"{m.group(1)}.{m.group(3).rpartition('.')[2]}{m.group(4)}", source)


def write_remote_code(model_cls: type, config_cls: type, save_directory: str | os.PathLike) -> list[str]:
    """Copy the flattened source of `model_cls` and `config_cls` (and what they import) into the folder."""
    files = _module_source_files(model_cls.__module__)
    files.update(_module_source_files(config_cls.__module__))
    for name, path in files.items():
        (Path(save_directory) / name).write_text(_flatten_imports(path.read_text()))
    return sorted(files)


def vit_encoder(config) -> Encoder:
    """The transformer encoder described by the ViT field vocabulary, which ViT, hybrid and MAE configs share."""
    return Encoder(
        config.hidden_size,
        config.num_hidden_layers,
        config.num_attention_heads,
        config.intermediate_size,
        qkv_bias=config.qkv_bias,
        act=config.hidden_act,
        drop=config.hidden_dropout_prob,
        attn_drop=config.attention_probs_dropout_prob,
        drop_path_rate=config.drop_path_rate,
        eps=config.layer_norm_eps,
    )


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, config) -> torch.Tensor:
    """transformers' problem_type conventions: regression, single- or multi-label classification."""
    if config.problem_type is None:
        if config.num_labels == 1:
            config.problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            config.problem_type = "single_label_classification"
        else:
            config.problem_type = "multi_label_classification"
    labels = labels.to(logits.device)
    if config.problem_type == "regression":
        return F.mse_loss(logits.squeeze(-1), labels.squeeze(-1).to(logits.dtype)) if config.num_labels == 1 \
            else F.mse_loss(logits, labels.to(logits.dtype))
    if config.problem_type == "single_label_classification":
        if labels.ndim == 2 and labels.shape == logits.shape:  # soft targets (Mixup/CutMix, label smoothing)
            return torch.sum(-labels.to(logits.dtype) * F.log_softmax(logits, dim=-1), dim=-1).mean()
        return F.cross_entropy(logits.view(-1, config.num_labels), labels.view(-1))
    if config.problem_type == "multi_label_classification":
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    raise ValueError(
        f"problem_type={config.problem_type!r} is not one of 'regression', 'single_label_classification', "
        "'multi_label_classification'"
    )


# Module names a task model puts on top of its backbone (`head` is Swin's classifier, `hidden_states_norms` a
# backbone's per-stage output norms). A checkpoint holding none of a head's weights (a backbone or pre-training
# checkpoint) loads with that head freshly initialised; a head of another size (num_labels changed) is
# re-initialised; a headless model drops the checkpoint's head. Anything else must match exactly.
HEAD_MODULES = ("classifier", "head", "head_norm", "fc_norm", "hidden_states_norms")

_STRICT_LOADING: contextvars.ContextVar[bool] = contextvars.ContextVar("hf_vision_strict_loading", default=True)


@contextlib.contextmanager
def lenient_loading(enabled: bool = True):
    """Inside this block `from_pretrained` reports missing/unexpected weights as a warning instead of an error."""
    token = _STRICT_LOADING.set(not enabled)
    try:
        yield
    finally:
        _STRICT_LOADING.reset(token)


def _head_of(key: str, head_modules: tuple[str, ...]) -> str | None:
    """The head module name a parameter key belongs to, if any (`vit.fc_norm.weight` -> "fc_norm")."""
    return next((part for part in key.split(".")[:-1] if part in head_modules), None)


def check_loading(model, info, checkpoint_keys: list[str], *, ignore_mismatched_sizes: bool) -> None:
    """Raise on weights that do not fit, naming them; let through only what amounts to a new or dropped head.

    `info` is transformers' LoadStateDictInfo (model-side key names); mismatched heads move to `missing_keys`
    so that transformers re-initialises them.
    """
    heads = tuple(model._head_modules)
    in_checkpoint = {_head_of(k, heads) for k in checkpoint_keys} - {None}
    own_modules = {name.rpartition(".")[2] for name, _ in model.named_modules()}
    mismatched = sorted(info.mismatched_keys, key=lambda m: m[0])
    head_mismatch = [m for m in mismatched if _head_of(m[0], heads)]
    if mismatched and not ignore_mismatched_sizes:
        other = [m for m in mismatched if not _head_of(m[0], heads)]
        if other:
            lines = "\n".join(f"  {key}: checkpoint {tuple(a)} vs model {tuple(b)}" for key, a, b in other)
            raise ValueError(
                f"{type(model).__name__}: {len(other)} checkpoint weight(s) have the wrong shape:\n{lines}\n"
                "(pass ignore_mismatched_sizes=True to re-initialise them instead)"
            )
    moved = set()
    if not ignore_mismatched_sizes:  # a head of another size (e.g. num_labels changed): re-initialise it
        for entry in head_mismatch:
            info.mismatched_keys.discard(entry)
            info.missing_keys.add(entry[0])
            moved.add(entry[0])
    # missing: fine only for a head the checkpoint has nothing of; unexpected: only for a head the model lacks
    missing = sorted(k for k in info.missing_keys
                     if _head_of(k, heads) is None or (_head_of(k, heads) in in_checkpoint and k not in moved))
    unexpected = sorted(k for k in info.unexpected_keys
                        if _head_of(k, heads) is None or _head_of(k, heads) in own_modules)
    if not (missing or unexpected):
        return
    problems = [f"missing from the checkpoint (would stay randomly initialised): {', '.join(missing)}"] if missing else []
    if unexpected:
        problems.append(f"in the checkpoint but not in the model (would be ignored): {', '.join(unexpected)}")
    message = f"{type(model).__name__}: weights do not match the checkpoint; " + "; ".join(problems)
    if _STRICT_LOADING.get():
        raise ValueError(
            message + ". Fix the checkpoint or the config, or load inside `lenient_loading()` "
            "(hf_vision.from_pretrained(..., strict=False)) to accept it."
        )
    warnings.warn(message, stacklevel=2)


class HFVisionPreTrainedModel(PreTrainedModel):
    """Common contract of every hf-vision model."""

    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = False  # transformers' flash path needs module attributes we lack; Swin's bias cannot go there
    _supports_attention_backend = False  # only "eager" and "sdpa" are implemented (see Attention)
    # Auto class name -> class name in the same modeling file; AutoConfig is added from the config class.
    _auto_classes: ClassVar[dict[str, str]] = {}
    # Task heads a checkpoint may lack or carry in another size (see `check_loading`).
    _head_modules: ClassVar[tuple[str, ...]] = HEAD_MODULES

    @property
    def attn_implementation(self) -> str:
        return self.config._attn_implementation or "sdpa"

    def adapt_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Reshape a checkpoint for this model before loading; families override (default: unchanged)."""
        return state_dict

    @classmethod
    def _load_pretrained_model(cls, model, state_dict, checkpoint_files, load_config, expected_keys=None):
        if state_dict is None and checkpoint_files:
            state_dict = {}
            for file in checkpoint_files:
                state_dict.update(load_state_dict(file, map_location="cpu", weights_only=True))
        checkpoint_keys: list[str] = []
        if state_dict is not None:
            # Fresh allocations: tensors viewed out of a mmapped file sit at unaligned offsets, which makes
            # CPU GEMMs pick other (slower, numerically different) kernels than for a freshly built model.
            state_dict = {k: v.clone() for k, v in model.adapt_state_dict(dict(state_dict)).items()}
            checkpoint_keys = list(state_dict)
            checkpoint_files = None
        info, offload = super()._load_pretrained_model(model, state_dict, checkpoint_files, load_config, expected_keys)
        model._adjust_missing_and_unexpected_keys(info)  # the model's own ignore patterns, as transformers applies
        check_loading(model, info, checkpoint_keys, ignore_mismatched_sizes=load_config.ignore_mismatched_sizes)
        return info, offload

    def auto_map(self) -> dict[str, str]:
        """The `auto_map` entries that make this checkpoint loadable as remote code."""
        model_module = type(self).__module__.rpartition(".")[2]
        config_cls = type(self.config)
        entries = {"AutoConfig": f"{config_cls.__module__.rpartition('.')[2]}.{config_cls.__name__}"}
        entries.update({auto: f"{model_module}.{name}" for auto, name in self._auto_classes.items()})
        return entries

    def image_processor(self):
        """The preprocessing this model expects (resize to the config's size, normalise with its mean/std)."""
        from transformers import ViTImageProcessor

        size = self.config.image_size
        height, width = (size, size) if isinstance(size, int) else size
        return ViTImageProcessor(
            do_resize=True,
            size={"height": height, "width": width},
            resample=3,  # bicubic, as timm and the papers' evaluation
            image_mean=list(self.config.image_mean),
            image_std=list(self.config.image_std),
        )

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        os.makedirs(save_directory, exist_ok=True)
        self.config.auto_map = self.auto_map()
        super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            write_remote_code(type(self), type(self.config), save_directory)
            self.image_processor().save_pretrained(save_directory)


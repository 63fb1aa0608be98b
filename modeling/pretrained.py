"""Base class shared by every family: what makes a checkpoint self-contained and loadable anywhere.

- `save_pretrained` also writes the model's source (this package, flattened: the Hub's remote-code loader only
  follows single-dot relative imports in one folder), an `auto_map` for every Auto class the model fits, and
  the image processor config, so `AutoModel.from_pretrained(dir, trust_remote_code=True)` needs nothing else.
- `adapt_state_dict` is the one hook through which a checkpoint is reshaped on load (position embeddings at a
  new resolution, an MAE encoder loaded into a classifier). It is reached from transformers' private
  `_load_pretrained_model`, the only private API we touch.
"""
from __future__ import annotations

import importlib.util
import inspect
import os
import re
import sys
from pathlib import Path
from typing import ClassVar

import torch
from torch.nn import functional as F
from transformers import PreTrainedModel

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


class HFVisionPreTrainedModel(PreTrainedModel):
    """Common contract of every hf-vision model."""

    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True
    # Auto class name -> class name in the same modeling file; AutoConfig is added from the config class.
    _auto_classes: ClassVar[dict[str, str]] = {}

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
                if file.endswith(".safetensors"):
                    from safetensors.torch import load_file

                    state_dict.update(load_file(file))
                else:
                    state_dict.update(torch.load(file, map_location="cpu", weights_only=True))
        if state_dict is not None:
            state_dict = model.adapt_state_dict(dict(state_dict))
            checkpoint_files = None
        return super()._load_pretrained_model(model, state_dict, checkpoint_files, load_config, expected_keys)

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


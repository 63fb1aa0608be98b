"""Base class shared by every family: what makes a checkpoint self-contained and loadable anywhere.

- `save_pretrained` also writes the model's source (remote_code.py), an `auto_map` for every Auto class the model
  fits, and the image processor config (image_processing.py), so `AutoModel.from_pretrained(dir,
  trust_remote_code=True)` needs nothing else; it never writes through a symlink (save_safety.py).
- `adapt_state_dict` is the one hook through which a family reshapes a checkpoint on load (position embeddings at
  a new resolution). `from_pretrained` reads the checkpoint itself, lets a checkpoint of another family export
  what this model loads (an MAE encoder into a ViT classifier), applies the hook and the checks (loading.py), and
  hands the result to transformers' public `from_pretrained(None, state_dict=...)`: no private transformers API is
  used here, so the shipped remote code survives transformers' internal changes.
- `push_to_hub` uploads the saved folder through the publishing hook (publishing.py).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init

from .config_checks import CheckpointRefusedError
from .image_processing import eval_image_processor
from .loading import (HEAD_MODULES, HUB_KWARGS, LOADER_KWARGS, check_saved_preprocessor, fit_base_prefix,
                      lenient_loading, load_config, plan_loading, read_checkpoint, read_saved_config,
                      strict_by_default, task_changes)
from .losses import classification_loss
from .publishing import HUB_OPTIONS, publish, set_publisher
from .remote_code import remote_code_sources
from .requirements import MIN_TRANSFORMERS
from .save_safety import CONFIG_NAME, FILES_FIELD, FLOOR_FIELD, PROCESSOR_NAME, WEIGHT_FILE, foreign_files, replace_file

# Re-exported for the model files and hf_vision that import them from here.
__all__ = ["HFVisionPreTrainedModel", "HEAD_MODULES", "classification_loss", "lenient_loading", "set_publisher"]


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

    def _init_weights(self, module: nn.Module) -> None:
        """The families' common start (ViT and Swin use it as is): truncated-normal(initializer_range) Linear and
        Conv2d weights with zero biases, LayerNorm at (1, 0), anything else as transformers does it. A family
        initialises its own tensors (and any layer it treats otherwise, as MAE its Linears) and passes the rest
        here. Only `init.*` calls, so that tensors loaded from a checkpoint are left alone."""
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            init.trunc_normal_(module.weight, std=self.config.initializer_range)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        else:
            super()._init_weights(module)

    def adapt_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Reshape a checkpoint for this model before loading; families override (default: unchanged)."""
        return state_dict

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """transformers' `from_pretrained`, plus this package's loading step through public APIs only: the
        checkpoint is read here, exported by its own family when it is another's (see `loading.exporter_for`),
        reshaped by `adapt_state_dict`, checked (`plan_loading`, issue #16's policy) and handed to transformers as
        `state_dict=`.

        Extra keywords: strict=False turns missing/unexpected weights into a warning; allow_nonfinite=True
        accepts NaN/inf weights. A head starts fresh only for a new label set or task (see `HEAD_MODULES`).
        """
        strict = kwargs.pop("strict", None)
        strict = strict_by_default() if strict is None else bool(strict)
        allow_nonfinite = bool(kwargs.pop("allow_nonfinite", False))
        if pretrained_model_name_or_path is None or kwargs.get("state_dict") is not None or kwargs.get("gguf_file"):
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        path = str(pretrained_model_name_or_path)
        hub = {k: kwargs.pop(k) for k in HUB_KWARGS if k in kwargs}
        loader = {k: kwargs.pop(k) for k in LOADER_KWARGS if k in kwargs}
        variant = kwargs.pop("variant", None)
        config = kwargs.pop("config", None)
        saved = read_saved_config(path, hub)
        config, kwargs, exporter = load_config(cls.config_class, config if config is not None else path, hub,
                                               kwargs, saved=saved)
        check_saved_preprocessor(path, hub)
        new_labels, new_task = task_changes(saved, config, cls.__name__)

        with torch.device("meta"):  # names, shapes and dtypes only: the hook and the checks need nothing else
            skeleton = cls(config, *model_args, **kwargs)
        state = read_checkpoint(path, hub, variant=variant)
        if exporter is not None:  # a checkpoint of another family: it says what this model takes from it
            state = exporter.export_state_dict(state, skeleton.state_dict().keys(), skeleton.base_model_prefix)
        # Fresh allocations: tensors viewed out of a mapped file sit at unaligned offsets, which makes CPU GEMMs
        # pick other (slower, numerically different) kernels than for a freshly built model.
        state = {k: v.clone() for k, v in skeleton.adapt_state_dict(fit_base_prefix(skeleton, state)).items()}
        state, fresh = plan_loading(skeleton, state, new_labels=new_labels, new_task=new_task,
                                    ignore_mismatched_sizes=bool(loader.get("ignore_mismatched_sizes")),
                                    strict=strict, allow_nonfinite=allow_nonfinite)
        del skeleton
        want_info = loader.pop("output_loading_info", False)
        model, info = super().from_pretrained(None, *model_args, config=config, state_dict=state,
                                              output_loading_info=True, **loader, **kwargs)
        surprise = set(info["missing_keys"]) - set(fresh) - {
            k for k in info["missing_keys"] if any(re.search(p, k) for p in model._keys_to_ignore_on_load_missing or [])}
        if surprise or info["mismatched_keys"]:
            raise CheckpointRefusedError(f"{cls.__name__}: transformers left weights unloaded that the checks "
                                         f"passed: {sorted(surprise) or info['mismatched_keys']}")
        if fresh:
            warnings.warn(f"{cls.__name__}: freshly initialised, not loaded from {path}: {', '.join(fresh)}",
                          stacklevel=2)
        model.config.name_or_path = path
        return (model, info) if want_info else model

    def image_processor(self):
        """The evaluation preprocessing this model expects (see `image_processing.eval_image_processor`)."""
        return eval_image_processor(self.config)

    def auto_map(self) -> dict[str, str]:
        """The `auto_map` entries that make this checkpoint loadable as remote code."""
        model_module = type(self).__module__.rpartition(".")[2]
        config_cls = type(self.config)
        entries = {"AutoConfig": f"{config_cls.__module__.rpartition('.')[2]}.{config_cls.__name__}"}
        entries.update({auto: f"{model_module}.{name}" for auto, name in self._auto_classes.items()})
        return entries

    def write_owned_files(self, save_directory: str | os.PathLike) -> dict[str, str]:
        """The files besides weights and config that make the folder loadable as remote code: source, processor.

        Each is written as a fresh file renamed into place (never through a symlink); returns {name: sha256}.
        """
        written: dict[str, str] = {}
        sources = remote_code_sources(type(self), type(self.config))
        for name, text in {**sources, PROCESSOR_NAME: self.image_processor().to_json_string()}.items():
            data = text.encode()
            replace_file(Path(save_directory) / name, data)
            written[name] = hashlib.sha256(data).hexdigest()
        return written

    def save_pretrained(self, save_directory: str | os.PathLike, *args, push_to_hub: bool = False, **kwargs) -> None:
        """Weights, config with auto_map, model source and processor; with push_to_hub=True the complete folder is
        then uploaded in one commit (hub options as in transformers: repo_id, commit_message, token, private,
        create_pr, revision), through the publisher hf_vision registers (with its model card) when present.

        Never writes through a symlink: transformers opens config.json and the weight files with plain `open`,
        which follows a link (overwriting its target, possibly outside the folder), so links at those names are
        removed first, and our own files are renamed into place. Replacing files that an earlier hf-vision save
        did not write (see `foreign_files`) warns once, naming them. config.json records the written files'
        hashes (FILES_FIELD) and the transformers floor (FLOOR_FIELD).
        """
        hub_options = {k: kwargs.pop(k) for k in HUB_OPTIONS if k in kwargs} if push_to_hub else {}
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        self.config.auto_map = self.auto_map()
        main_process = kwargs.get("is_main_process", True)
        if main_process:
            outputs = [CONFIG_NAME, PROCESSOR_NAME, *remote_code_sources(type(self), type(self.config))]
            foreign = foreign_files(folder, outputs)
            if foreign:
                warnings.warn(
                    f"save_pretrained({str(save_directory)!r}) replaces files it did not write: {', '.join(foreign)}",
                    stacklevel=2,
                )
            for entry in folder.iterdir():
                if entry.is_symlink() and (entry.name in outputs or WEIGHT_FILE.fullmatch(entry.name)):
                    entry.unlink()
        super().save_pretrained(save_directory, *args, **kwargs)
        if main_process:
            written = self.write_owned_files(save_directory)
            config = json.loads((folder / CONFIG_NAME).read_text())
            config[FLOOR_FIELD] = MIN_TRANSFORMERS
            config[FILES_FIELD] = written
            replace_file(folder / CONFIG_NAME, (json.dumps(config, indent=2, sort_keys=True) + "\n").encode())
            if push_to_hub:
                repo_id = hub_options.pop("repo_id", None) or Path(save_directory).resolve().name
                return self._publish_folder(save_directory, repo_id, **hub_options)
        return None

    def push_to_hub(self, repo_id: str, *, commit_message: str | None = None, commit_description: str | None = None,
                    private: bool | None = None, token: bool | str | None = None, revision: str | None = None,
                    create_pr: bool = False, max_shard_size: int | str | None = "50GB",
                    tags: list[str] | None = None):
        """transformers' `push_to_hub`, uploading the complete folder `save_pretrained` writes in one commit."""
        with tempfile.TemporaryDirectory(prefix="hfv-push-") as folder:
            self.save_pretrained(folder, max_shard_size=max_shard_size)
            return self._publish_folder(folder, repo_id, commit_message=commit_message,
                                        commit_description=commit_description, private=private, token=token,
                                        revision=revision, create_pr=create_pr, tags=tags)

    def _publish_folder(self, folder: str | os.PathLike, repo_id: str, **options):
        """Upload a saved folder: hf_vision's publisher (validated card) when registered, else a plain upload."""
        return publish(self, folder, repo_id, **options)

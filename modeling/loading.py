"""The loading policy (issue #16): read a checkpoint, fit it to the model, check it, and say what starts fresh.

`HFVisionPreTrainedModel.from_pretrained` reads the checkpoint itself (`read_checkpoint`), lets a checkpoint of
another family export what the model can load (`exporter_for`: the checkpoint's config class, found by its
model_type, offers `export_config` and `export_state_dict`, as MAE does for a ViT classifier), applies the model's
`adapt_state_dict`, checks the result (`plan_loading`) and hands it to transformers' public
`from_pretrained(None, state_dict=...)`.
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import os
import re
import warnings
from pathlib import Path

import torch
from transformers import PreTrainedConfig

from .config_checks import CheckpointRefusedError, check_preprocessor

# Module names a task model puts on top of its backbone (`head` is Swin's classifier, `hidden_states_norms` a
# backbone's per-stage output norms). Issue #16's policy: such a head starts fresh only when the caller asked for
# it (another label set than the checkpoint's, or a checkpoint of another task: a backbone or MAE checkpoint into
# a classifier); a headless model drops the checkpoint's head. Everything else must match exactly.
HEAD_MODULES = ("classifier", "head", "head_norm", "fc_norm", "hidden_states_norms")
# The module whose rows are the labels: a new label set (num_labels/id2label other than the checkpoint's) restarts it.
LABEL_MODULE = "classifier"

# `from_pretrained` keywords that belong to transformers' loader, not to the config.
LOADER_KWARGS = (
    "dtype", "torch_dtype", "device_map", "max_memory", "offload_folder", "offload_buffers", "quantization_config",
    "output_loading_info", "ignore_mismatched_sizes", "trust_remote_code", "_from_auto", "_from_pipeline",
    "adapter_kwargs", "adapter_name", "use_safetensors", "weights_only", "key_mapping", "tqdm_class", "use_kernels",
    "kernel_config", "distributed_config", "device_mesh", "tp_plan", "tp_size", "attn_implementation",
    "low_cpu_mem_usage", "generation_config",
)
HUB_KWARGS = ("cache_dir", "force_download", "proxies", "local_files_only", "token", "revision", "subfolder")

_STRICT_LOADING: contextvars.ContextVar[bool] = contextvars.ContextVar("hf_vision_strict_loading", default=True)


@contextlib.contextmanager
def lenient_loading(enabled: bool = True):
    """Inside this block `from_pretrained` behaves as with `strict=False` (kept for callers of the old API)."""
    token = _STRICT_LOADING.set(not enabled)
    try:
        yield
    finally:
        _STRICT_LOADING.reset(token)


def strict_by_default() -> bool:
    """What `strict=None` means here: False inside `lenient_loading()`, else True."""
    return _STRICT_LOADING.get()


def _head_of(key: str, head_modules: tuple[str, ...]) -> str | None:
    """The head module name a parameter key belongs to, if any (`vit.fc_norm.weight` -> "fc_norm")."""
    return next((part for part in key.split(".")[:-1] if part in head_modules), None)


def _resolve(path: str, filename: str, hub: dict) -> str | None:
    """A checkpoint file of a local folder or Hub repo (public `cached_file`), or None when it has none."""
    folder = os.path.join(path, hub.get("subfolder") or "")
    if os.path.isdir(folder):
        candidate = os.path.join(folder, filename)
        return candidate if os.path.isfile(candidate) else None
    from transformers.utils import cached_file

    try:
        return cached_file(path, filename, **{k: v for k, v in hub.items() if v is not None})
    except OSError:
        return None


def read_checkpoint(path: str, hub: dict, *, variant: str | None = None) -> dict[str, torch.Tensor]:
    """The whole state dict of a checkpoint: `model.safetensors`, a sharded index, or a torch `.bin` (weights only)."""
    from transformers.modeling_utils import load_state_dict  # public helper: safetensors or a weights-only .bin

    def load_file(file: str) -> dict[str, torch.Tensor]:
        return load_state_dict(file, map_location="cpu", weights_only=True)

    stem = "model" if variant is None else f"model.{variant}"
    single = _resolve(path, f"{stem}.safetensors", hub)
    if single is not None:
        return load_file(single)
    index = _resolve(path, f"{stem}.safetensors.index.json", hub)
    if index is not None:
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(json.loads(Path(index).read_text())["weight_map"].values())):
            shard_file = _resolve(path, shard, hub)
            if shard_file is None:
                raise FileNotFoundError(f"{path}: shard {shard} listed in {os.path.basename(index)} is missing")
            state.update(load_file(shard_file))
        return state
    legacy = _resolve(path, "pytorch_model.bin" if variant is None else f"pytorch_model.{variant}.bin", hub)
    if legacy is not None:
        return load_file(legacy)
    raise FileNotFoundError(f"{path} has no {stem}.safetensors, sharded index or pytorch_model.bin")


def fit_base_prefix(model, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Base-model keys (`embeddings.*`) into a task model (`vit.embeddings.*`) and back, as transformers does."""
    prefix = model.base_model_prefix + "."
    own = model.state_dict().keys()
    if hasattr(model, model.base_model_prefix):  # a task model around its base model
        if any(k.startswith(prefix) for k in state_dict):
            return state_dict
        return {k if k in own else prefix + k: v for k, v in state_dict.items()}
    return {k.removeprefix(prefix): v for k, v in state_dict.items()}


def _label_set(config) -> tuple[int, dict[int, str] | None]:
    id2label = getattr(config, "id2label", None)
    return config.num_labels, ({int(k): str(v) for k, v in id2label.items()} if id2label else None)


def plan_loading(model, state_dict: dict[str, torch.Tensor], *, new_labels: bool, new_task: bool,
                 ignore_mismatched_sizes: bool, strict: bool, allow_nonfinite: bool) -> tuple[dict, list[str]]:
    """Check an (adapted) checkpoint against `model` (a skeleton: only names, shapes and dtypes are read).

    Returns the state dict to load and the keys that will be freshly initialised. Raises on anything issue #16
    forbids: wrong-shaped weights (a head too, when the caller kept the label set and task) without
    `ignore_mismatched_sizes=True`, non-floating values for floating weights, non-finite weights without
    `allow_nonfinite=True`; missing (a head too, unless the label set or task changed) or unexpected weights raise
    unless `strict=False` (then they are reported with the freshly initialised keys).
    """
    name = type(model).__name__
    own = model.state_dict()
    check_values(name, own, state_dict, allow_nonfinite=allow_nonfinite)
    plan = match_keys(model, state_dict, new_labels=new_labels, new_task=new_task,
                      ignore_mismatched_sizes=ignore_mismatched_sizes)
    fresh = plan["fresh"] + report_mismatches(name, own, plan, strict=strict)
    fresh_set = set(fresh)
    kept = {k: v for k, v in state_dict.items() if k in own and k not in fresh_set}
    return kept, sorted(fresh)


def check_values(name: str, own: dict[str, torch.Tensor], state_dict: dict[str, torch.Tensor], *,
                 allow_nonfinite: bool) -> None:
    """Refuse non-floating values for floating weights, and NaN/inf unless `allow_nonfinite`."""
    for key, tensor in state_dict.items():
        target = own.get(key)
        if target is None or not target.is_floating_point():
            continue
        if not tensor.is_floating_point():
            raise CheckpointRefusedError(f"{name}: checkpoint weight {key} has dtype {tensor.dtype}, but the model's "
                                         f"is {target.dtype}; a non-floating tensor is refused rather than cast")
        if not allow_nonfinite and not bool(torch.isfinite(tensor).all()):
            raise CheckpointRefusedError(f"{name}: checkpoint weight {key} holds NaN or infinite values; pass "
                                         "allow_nonfinite=True to load it anyway")


def match_keys(model, state_dict: dict[str, torch.Tensor], *, new_labels: bool, new_task: bool,
               ignore_mismatched_sizes: bool) -> dict[str, list[str]]:
    """Sort the model's and the checkpoint's keys: "fresh" (a head the caller asked to restart), "wrong_shape",
    "head_problems" (lines describing shapes), "missing" and "unexpected" (keys)."""
    heads = tuple(model._head_modules)
    own = model.state_dict()
    ignore_missing = [re.compile(p) for p in (model._keys_to_ignore_on_load_missing or [])]
    ignore_unexpected = [re.compile(p) for p in (model._keys_to_ignore_on_load_unexpected or [])]
    head_in_checkpoint = {_head_of(k, heads) for k in state_dict} - {None}
    own_modules = {module.rpartition(".")[2] for module, _ in model.named_modules()}
    fresh: list[str] = []
    wrong_shape, head_problems, missing, unexpected = [], [], [], []
    for key, target in own.items():
        head = _head_of(key, heads)
        saved = state_dict.get(key)
        same_shape = saved is not None and tuple(saved.shape) == tuple(target.shape)
        if head is not None and new_labels and (head == LABEL_MODULE or not same_shape):
            fresh.append(key)  # another label set: even a same-sized classifier means other classes
            continue
        if same_shape:
            continue
        if saved is None and any(p.search(key) for p in ignore_missing):
            continue
        shapes = f"checkpoint {tuple(saved.shape)} vs model {tuple(target.shape)}" if saved is not None else \
            f"missing, model {tuple(target.shape)}"
        if head is not None and new_task and saved is None and head not in head_in_checkpoint:
            fresh.append(key)
        elif saved is not None and ignore_mismatched_sizes:
            fresh.append(key)
        elif saved is not None:
            (head_problems if head else wrong_shape).append(f"  {key}: {shapes}")
        else:  # a missing head too: the caller kept the checkpoint's label set and task
            missing.append(key)
    for key in state_dict:
        if key in own or any(p.search(key) for p in ignore_unexpected):
            continue
        head = _head_of(key, heads)
        if head is None or head in own_modules:
            unexpected.append(key)
    return {"fresh": fresh, "wrong_shape": wrong_shape, "head_problems": head_problems, "missing": missing,
            "unexpected": unexpected}


def report_mismatches(name: str, own: dict[str, torch.Tensor], plan: dict[str, list[str]], *, strict: bool
                      ) -> list[str]:
    """Raise for wrong shapes, and for missing/unexpected weights when `strict`; else warn about the unexpected
    ones and return the missing keys, which will be freshly initialised."""
    head_problems, wrong_shape = plan["head_problems"], plan["wrong_shape"]
    missing, unexpected = plan["missing"], plan["unexpected"]
    if head_problems or wrong_shape:
        lines = "\n".join(head_problems + wrong_shape)
        raise CheckpointRefusedError(
            f"{name}: checkpoint weights have the wrong shape (the label set and task are the checkpoint's):\n"
            f"{lines}\nPass ignore_mismatched_sizes=True to re-initialise them, or num_labels/id2label for a new head."
        )
    if missing or unexpected:
        described = ", ".join(f"{key} {tuple(own[key].shape)}" for key in missing)
        problems = [f"missing from the checkpoint (would stay randomly initialised): {described}"] if missing else []
        if unexpected:
            problems.append(f"in the checkpoint but not in the model (would be ignored): {', '.join(unexpected)}")
        message = f"{name}: weights do not match the checkpoint; " + "; ".join(problems)
        if strict:
            raise CheckpointRefusedError(message + ". Fix the checkpoint or the config, or pass strict=False to load "
                                         "it with the missing weights freshly initialised.")
        if unexpected:  # the missing ones are reported once, with every freshly initialised key
            warnings.warn(f"{name}: ignored, in the checkpoint but not in the model: {', '.join(unexpected)}",
                          stacklevel=4)  # the caller of from_pretrained
    return missing



# ---------------------------------------------------------------- checkpoints of another family


def exporter_for(model_type: str | None, config_cls: type[PreTrainedConfig]) -> type | None:
    """The config class of a checkpoint of another family that exports to `config_cls` (it defines
    `export_config(config_cls, **overrides)` and `export_state_dict(state_dict, own_keys, base_model_prefix)`),
    found by the checkpoint's model_type among transformers' registered configs; None for the model's own family
    or one that exports nothing."""
    from transformers import CONFIG_MAPPING

    if model_type is None or model_type == config_cls.model_type or model_type not in CONFIG_MAPPING:
        return None
    source = CONFIG_MAPPING[model_type]
    return source if hasattr(source, "export_config") and hasattr(source, "export_state_dict") else None


def load_config(config_cls: type[PreTrainedConfig], config: PreTrainedConfig | str, hub: dict, kwargs: dict, *,
                saved: dict) -> tuple[PreTrainedConfig, dict, type | None]:
    """The model's config and the unused kwargs, plus the exporter of the checkpoint whose config.json is `saved`
    (None for the model's own family). `config` is used as given, or read from a folder or repo, through its
    family's exporter when it is another family's (an MAE config.json gives a ViT config)."""
    exporter = exporter_for(saved.get("model_type"), config_cls)
    if isinstance(config, PreTrainedConfig):
        return config, kwargs, exporter
    config_dict, _ = PreTrainedConfig.get_config_dict(config, **hub)
    source = exporter_for(config_dict.get("model_type"), config_cls)
    if source is None:
        loaded, unused = config_cls.from_pretrained(config, return_unused_kwargs=True, **hub, **kwargs)
    else:
        exported = source.from_dict(config_dict).export_config(config_cls)
        loaded, unused = config_cls.from_dict(exported.to_dict(), return_unused_kwargs=True, **kwargs)
    return loaded, unused, exporter


def check_saved_preprocessor(path: str, hub: dict) -> None:
    """A preprocessor_config.json shipped with the weights is part of the checkpoint (see `check_preprocessor`)."""
    processor_file = _resolve(path, "preprocessor_config.json", hub)
    if processor_file:
        check_preprocessor(json.loads(Path(processor_file).read_text()), processor_file)


def read_saved_config(path: str, hub: dict) -> dict:
    """The checkpoint's config.json as saved (empty when it has none)."""
    saved_file = _resolve(path, "config.json", hub)
    return json.loads(Path(saved_file).read_text()) if saved_file else {}


def task_changes(saved: dict, config: PreTrainedConfig, model_name: str) -> tuple[bool, bool]:
    """(new_labels, new_task): does `config` ask for another label set than the saved config's, and is the
    checkpoint one of another architecture (a backbone or pre-training checkpoint into a classifier)?"""
    saved_labels = saved.get("id2label")
    saved_count = len(saved_labels) if saved_labels else saved.get("num_labels")
    num_labels, id2label = _label_set(config)
    new_labels = (saved_count is not None and saved_count != num_labels) or bool(
        saved_labels and id2label is not None and {int(k): str(v) for k, v in saved_labels.items()} != id2label)
    return new_labels, model_name not in (saved.get("architectures") or [])

"""Base class shared by every family: what makes a checkpoint self-contained and loadable anywhere.

- `save_pretrained` also writes the model's source (this package, flattened: the Hub's remote-code loader only
  follows single-dot relative imports in one folder), an `auto_map` for every Auto class the model fits, and
  the image processor config, so `AutoModel.from_pretrained(dir, trust_remote_code=True)` needs nothing else.
- `adapt_state_dict` is the one hook through which a checkpoint is reshaped on load (position embeddings at a
  new resolution, an MAE encoder loaded into a classifier). `from_pretrained` reads the checkpoint itself, applies
  the hook and the checks, and hands the result to transformers' public `from_pretrained(None, state_dict=...)`:
  no private transformers API is used here, so the shipped remote code survives transformers' internal changes.
"""
from __future__ import annotations

import contextlib
import contextvars
import hashlib
import importlib.util
import inspect
import json
import math
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path
from typing import ClassVar

import torch
from torch.nn import functional as F
from transformers import PreTrainedConfig, PreTrainedModel

from .config_checks import CheckpointRefusedError, check_preprocessor
from .layers.block import Encoder
from .requirements import MIN_TRANSFORMERS

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


def remote_code_sources(model_cls: type, config_cls: type) -> dict[str, str]:
    """File name -> flattened source of `model_cls`, `config_cls` and everything they import relatively."""
    files = _module_source_files(model_cls.__module__)
    files.update(_module_source_files(config_cls.__module__))
    return {name: _flatten_imports(path.read_text()) for name, path in sorted(files.items())}


def write_remote_code(model_cls: type, config_cls: type, save_directory: str | os.PathLike) -> list[str]:
    """Copy the flattened source of `model_cls` and `config_cls` (and what they import) into the folder."""
    sources = remote_code_sources(model_cls, config_cls)
    for name, text in sources.items():
        _replace_file(Path(save_directory) / name, text.encode())
    return list(sources)


def _replace_file(path: Path, data: bytes) -> None:
    """Write `path` as a fresh regular file: a symlink there is replaced, never written through."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)  # renames over the directory entry: a link's target is left untouched
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# transformers' weight files: model.safetensors, its shards model-00001-of-00003.safetensors and their index.
_WEIGHT_FILE = re.compile(r"model(-\d{5}-of-\d{5})?\.safetensors(\.index\.json)?")
CONFIG_NAME, PROCESSOR_NAME = "config.json", "preprocessor_config.json"
# config.json fields written by save_pretrained (not config attributes: __init__ never sees or validates them)
FILES_FIELD, FLOOR_FIELD = "hf_vision_files", "hf_vision_min_transformers"


def _previous_save(folder: Path) -> dict[str, str] | None:
    """{file name: sha256} recorded by an earlier hf-vision save into `folder`, or None if it holds none."""
    config = folder / CONFIG_NAME
    if config.is_symlink() or not config.is_file():
        return None
    try:
        recorded = json.loads(config.read_text()).get(FILES_FIELD)
    except (ValueError, UnicodeDecodeError, AttributeError):
        return None
    return recorded if isinstance(recorded, dict) else None


def foreign_files(folder: Path, outputs: list[str]) -> list[str]:
    """Names in `folder` that a save is about to replace or delete but that an earlier hf-vision save did not write.

    Ours: config.json holding our file record (FILES_FIELD); weight files beside such a config.json; a source
    or processor file whose sha256 is the one recorded (unchanged since we wrote it). Foreign: any symlink; any
    other existing file among `outputs` or transformers' weight names (a user's same-named .py, an edited file,
    another model's checkpoint).
    """
    previous = _previous_save(folder)
    names = set(outputs) | {p.name for p in folder.iterdir() if _WEIGHT_FILE.fullmatch(p.name)}
    foreign = []
    for name in sorted(names):
        path = folder / name
        if not os.path.lexists(path):
            continue
        if path.is_symlink() or previous is None or not path.is_file():
            foreign.append(name)
        elif name != CONFIG_NAME and not _WEIGHT_FILE.fullmatch(name) and previous.get(name) != _sha256(path):
            foreign.append(name)
    return foreign


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
# backbone's per-stage output norms). Issue #16's policy: such a head starts fresh only when the caller asked for
# it (another label set than the checkpoint's, or a checkpoint of another task: a backbone or MAE checkpoint into
# a classifier); a headless model drops the checkpoint's head. Everything else must match exactly.
HEAD_MODULES = ("classifier", "head", "head_norm", "fc_norm", "hidden_states_norms")
# The module whose rows are the labels: a new label set (num_labels/id2label other than the checkpoint's) restarts it.
LABEL_MODULE = "classifier"

# `from_pretrained` keywords that belong to transformers' loader, not to the config.
_LOADER_KWARGS = (
    "dtype", "torch_dtype", "device_map", "max_memory", "offload_folder", "offload_buffers", "quantization_config",
    "output_loading_info", "ignore_mismatched_sizes", "trust_remote_code", "_from_auto", "_from_pipeline",
    "adapter_kwargs", "adapter_name", "use_safetensors", "weights_only", "key_mapping", "tqdm_class", "use_kernels",
    "kernel_config", "distributed_config", "device_mesh", "tp_plan", "tp_size", "attn_implementation",
    "low_cpu_mem_usage", "generation_config",
)
_HUB_KWARGS = ("cache_dir", "force_download", "proxies", "local_files_only", "token", "revision", "subfolder")

_STRICT_LOADING: contextvars.ContextVar[bool] = contextvars.ContextVar("hf_vision_strict_loading", default=True)


@contextlib.contextmanager
def lenient_loading(enabled: bool = True):
    """Inside this block `from_pretrained` behaves as with `strict=False` (kept for callers of the old API)."""
    token = _STRICT_LOADING.set(not enabled)
    try:
        yield
    finally:
        _STRICT_LOADING.reset(token)


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
    heads = tuple(model._head_modules)
    own = model.state_dict()
    ignore_missing = [re.compile(p) for p in (model._keys_to_ignore_on_load_missing or [])]
    ignore_unexpected = [re.compile(p) for p in (model._keys_to_ignore_on_load_unexpected or [])]
    head_in_checkpoint = {_head_of(k, heads) for k in state_dict} - {None}
    own_modules = {module.rpartition(".")[2] for module, _ in model.named_modules()}

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
                          stacklevel=3)
        fresh.extend(missing)
    fresh_set = set(fresh)
    kept = {k: v for k, v in state_dict.items() if k in own and k not in fresh_set}
    return kept, sorted(fresh)


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
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """transformers' `from_pretrained`, plus this package's loading step through public APIs only: the
        checkpoint is read here, reshaped by `adapt_state_dict`, checked (`plan_loading`, issue #16's policy) and
        handed to transformers as `state_dict=`.

        Extra keywords: strict=False turns missing/unexpected weights into a warning; allow_nonfinite=True
        accepts NaN/inf weights. A head starts fresh only for a new label set or task (see `HEAD_MODULES`).
        """
        strict = kwargs.pop("strict", None)
        strict = _STRICT_LOADING.get() if strict is None else bool(strict)
        allow_nonfinite = bool(kwargs.pop("allow_nonfinite", False))
        if pretrained_model_name_or_path is None or kwargs.get("state_dict") is not None or kwargs.get("gguf_file"):
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        path = str(pretrained_model_name_or_path)
        hub = {k: kwargs.pop(k) for k in _HUB_KWARGS if k in kwargs}
        loader = {k: kwargs.pop(k) for k in _LOADER_KWARGS if k in kwargs}
        variant = kwargs.pop("variant", None)
        config = kwargs.pop("config", None)
        if not isinstance(config, PreTrainedConfig):
            config, kwargs = cls.config_class.from_pretrained(config if config is not None else path,
                                                              return_unused_kwargs=True, **hub, **kwargs)
        processor_file = _resolve(path, "preprocessor_config.json", hub)
        if processor_file:
            check_preprocessor(json.loads(Path(processor_file).read_text()), processor_file)
        saved_file = _resolve(path, "config.json", hub)
        saved = json.loads(Path(saved_file).read_text()) if saved_file else {}
        saved_labels = saved.get("id2label")
        saved_count = len(saved_labels) if saved_labels else saved.get("num_labels")
        num_labels, id2label = _label_set(config)
        new_labels = (saved_count is not None and saved_count != num_labels) or bool(
            saved_labels and id2label is not None and {int(k): str(v) for k, v in saved_labels.items()} != id2label)
        new_task = cls.__name__ not in (saved.get("architectures") or [])

        with torch.device("meta"):  # names, shapes and dtypes only: the hook and the checks need nothing else
            skeleton = cls(config, *model_args, **kwargs)
        # Fresh allocations: tensors viewed out of a mapped file sit at unaligned offsets, which makes CPU GEMMs
        # pick other (slower, numerically different) kernels than for a freshly built model.
        state = {k: v.clone() for k, v in skeleton.adapt_state_dict(
            fit_base_prefix(skeleton, read_checkpoint(path, hub, variant=variant))).items()}
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

    def auto_map(self) -> dict[str, str]:
        """The `auto_map` entries that make this checkpoint loadable as remote code."""
        model_module = type(self).__module__.rpartition(".")[2]
        config_cls = type(self.config)
        entries = {"AutoConfig": f"{config_cls.__module__.rpartition('.')[2]}.{config_cls.__name__}"}
        entries.update({auto: f"{model_module}.{name}" for auto, name in self._auto_classes.items()})
        return entries

    def image_processor(self):
        """The evaluation preprocessing this model expects: resize the shorter side to size / crop_pct, centre-crop
        to the config's size, normalise with its mean/std (BitImageProcessor is the transformers processor that
        resizes by the shorter side and centre-crops). `crop_pct`, `interpolation` and `crop_mode` are optional
        config fields (default 0.875, bicubic, "center", as timm and the papers evaluate; "squash" resizes straight
        to the model size, as transformers' ViT processor); converters carry the source's values over."""
        from transformers import BitImageProcessor

        size = self.config.image_size
        height, width = (size, size) if isinstance(size, int) else size
        crop_pct = float(getattr(self.config, "crop_pct", None) or DEFAULT_CROP_PCT)
        if not 0 < crop_pct <= 1:
            raise ValueError(f"config.crop_pct={crop_pct} must be in (0, 1]")
        interpolation = getattr(self.config, "interpolation", None) or DEFAULT_INTERPOLATION
        if interpolation not in PIL_RESAMPLE:
            raise ValueError(f"config.interpolation={interpolation!r} is not one of {', '.join(PIL_RESAMPLE)}")
        crop_mode = getattr(self.config, "crop_mode", None) or "center"
        if crop_mode not in CROP_MODES:
            raise ValueError(f"config.crop_mode={crop_mode!r} is not one of {', '.join(CROP_MODES)}")
        if crop_mode == "squash":
            resize = {"height": height, "width": width}
        elif height == width:  # the shorter side (the aspect ratio is kept), then the centre crop
            resize = {"shortest_edge": math.floor(height / crop_pct)}
        else:
            resize = {"height": math.floor(height / crop_pct), "width": math.floor(width / crop_pct)}
        return BitImageProcessor(
            do_resize=True,
            size=resize,
            resample=PIL_RESAMPLE[interpolation],
            do_center_crop=crop_mode == "center",
            crop_size={"height": height, "width": width},
            do_rescale=True,
            do_normalize=True,
            image_mean=list(self.config.image_mean),
            image_std=list(self.config.image_std),
            do_convert_rgb=True,
        )

    def write_owned_files(self, save_directory: str | os.PathLike) -> dict[str, str]:
        """The files besides weights and config that make the folder loadable as remote code: source, processor.

        Each is written as a fresh file renamed into place (never through a symlink); returns {name: sha256}.
        """
        written: dict[str, str] = {}
        sources = remote_code_sources(type(self), type(self.config))
        for name, text in {**sources, PROCESSOR_NAME: self.image_processor().to_json_string()}.items():
            data = text.encode()
            _replace_file(Path(save_directory) / name, data)
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
                if entry.is_symlink() and (entry.name in outputs or _WEIGHT_FILE.fullmatch(entry.name)):
                    entry.unlink()
        super().save_pretrained(save_directory, *args, **kwargs)
        if main_process:
            written = self.write_owned_files(save_directory)
            config = json.loads((folder / CONFIG_NAME).read_text())
            config[FLOOR_FIELD] = MIN_TRANSFORMERS
            config[FILES_FIELD] = written
            _replace_file(folder / CONFIG_NAME, (json.dumps(config, indent=2, sort_keys=True) + "\n").encode())
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
        if PUBLISHER is not None:
            return PUBLISHER(self, folder, repo_id, **options)
        options["tags"] = [*(self.model_tags or []), *(options.get("tags") or [])] or None
        return upload_folder_in_one_commit(folder, repo_id, **options)


# Hub options `save_pretrained(..., push_to_hub=True, **options)` accepts (the rest go to transformers).
HUB_OPTIONS = ("repo_id", "commit_message", "commit_description", "private", "token", "revision", "create_pr", "tags")
DEFAULT_CROP_PCT = 0.875
DEFAULT_INTERPOLATION = "bicubic"
CROP_MODES = ("center", "squash")
PIL_RESAMPLE = {"nearest": 0, "bilinear": 2, "bicubic": 3}  # PIL.Image.Resampling values, as processors store them

# Set by hf_vision (`hf_vision.hub.publish_folder`, which writes its validated model card): every push of our
# models goes through it. Remote code running without hf_vision uploads the folder as it is.
PUBLISHER = None


def set_publisher(publisher) -> None:
    """Route every push of our models through `publisher(model, folder, repo_id, **hub_options)`."""
    global PUBLISHER
    PUBLISHER = publisher


def upload_folder_in_one_commit(folder: str | os.PathLike, repo_id: str, *, commit_message: str | None = None,
                                commit_description: str | None = None, private: bool | None = None,
                                token: bool | str | None = None, revision: str | None = None,
                                create_pr: bool = False, tags: list[str] | None = None):
    """The folder as saved, in one commit (through transformers' Hub client), for remote code without hf_vision;
    without a README.md it gets transformers' own card, as transformers' push_to_hub writes it."""
    from transformers.utils.hub import create_and_tag_model_card, hf_api

    api = hf_api()
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True, token=token).repo_id
    if not (Path(folder) / "README.md").exists():
        create_and_tag_model_card(repo_id, tags, token=token).save(Path(folder) / "README.md")
    if revision and revision != "main" and not create_pr:
        api.create_branch(repo_id, branch=revision, exist_ok=True, token=token)
    return api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message or "Upload model",
                             commit_description=commit_description, revision=revision, create_pr=create_pr,
                             token=token)

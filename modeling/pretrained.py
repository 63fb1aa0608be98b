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
from transformers import PreTrainedModel
from transformers.modeling_utils import load_state_dict

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

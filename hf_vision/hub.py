"""Share and fetch checkpoints: push to the Hub in one commit, pull ours or anybody's through one call.

A pushed repo holds everything `AutoModel.from_pretrained(repo, trust_remote_code=True)` needs without our
package: safetensors weights, config.json with an `auto_map` entry for each Auto class the model fits, the
flattened `modeling/` source, preprocessor_config.json and a model card (README.md). With `hf_vision` imported
the registered classes win and no remote code runs.

`from_pretrained` reads config.json (local folder, Hub, or the local cache when offline) and dispatches:
our model_type -> our classes; timm's config (it has "architecture") -> timm model -> `convert.from_timm`;
a transformers model_type -> transformers model -> `convert.from_transformers`; a single released file
(.npz/.pth/...) with `preset=` -> `convert.load_official`. The push side is `hf_vision/publish.py` (re-exported here);
the way out to timm/transformers folders is `export_checkpoint`.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from huggingface_hub import hf_hub_download
from huggingface_hub import constants as hub_constants
from huggingface_hub.errors import (
    HFValidationError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import validate_repo_id

from . import convert
from .model_card import card_for_model, validate_card
from .modeling.config_checks import pair

# The push side lives in publish.py (which registers our models' publisher); hf_vision.hub stays the one address
# of the Hub API, so these names are re-exported here.
from .publish import (DEFAULT_IGNORE, TRAINER_CARD_TAG, check_checkpoint_folder, is_generated_card,  # noqa: F401
                      publish_folder, push_folder, push_to_hub, save_with_card)

OUR_MODEL_TYPE_PREFIX = "hfv_"

PROCESSOR_FILE = "preprocessor_config.json"
OFFICIAL_SUFFIXES = (".npz", ".pth", ".pt", ".bin", ".safetensors", ".ckpt")


def check_local_path(name_or_path: str | os.PathLike) -> None:
    """Fail before any Hub lookup when `name_or_path` can only mean a local path and nothing exists there.

    A Path object, or a string that is not a valid Hub repo id ("./my-vit", "my_dir/", "a/b/c", "~/ckpt"), is a
    local path; a valid repo id ("org/name", "my-vit") that is not a local folder goes on to the Hub.
    """
    text = os.fspath(name_or_path)
    if Path(text).expanduser().exists():
        return
    if not isinstance(name_or_path, str):
        raise FileNotFoundError(f"{text} does not exist")
    try:
        validate_repo_id(text)
    except HFValidationError:
        raise FileNotFoundError(f"{text} does not exist (no such local file or folder, and not a Hub repo id "
                                "of the form 'name' or 'org/name')") from None


def hub_error(name: str, error: Exception, *, revision: str | None = None,
              cache_dir: str | os.PathLike | None = None, local_files_only: bool = False) -> OSError:
    """One sentence for a failed Hub lookup of `name`: what was tried, which cache was searched, what to do."""
    cache = cache_dir or hub_constants.HF_HUB_CACHE
    where = f"{name!r} is not a local folder (in {Path.cwd()})"
    if isinstance(error, RepositoryNotFoundError):
        return OSError(f"{where}, and the Hub ({hub_constants.ENDPOINT}) has no repo {name!r} that this token can "
                       "read (private or gated repos need `hf auth login` or token=)")
    if isinstance(error, RevisionNotFoundError):
        return OSError(f"{where}, and the Hub repo {name!r} has no revision {revision!r}")
    if isinstance(error, LocalEntryNotFoundError):
        if hub_constants.HF_HUB_OFFLINE or local_files_only:
            switch = "HF_HUB_OFFLINE=1" if hub_constants.HF_HUB_OFFLINE else "local_files_only=True"
            return OSError(f"{where}, and the Hub repo {name!r} is not in the cache {cache} (offline: {switch}); "
                           "download it once online (unset HF_HUB_OFFLINE / drop local_files_only) or pass a "
                           "local folder")
        return OSError(f"{where}, the Hub ({hub_constants.ENDPOINT}) could not be reached for {name!r} and the "
                       f"cache {cache} does not hold it: check the network, or pass a local folder (HF_HUB_OFFLINE=1 "
                       "skips the Hub's retries when working from the cache)")
    return OSError(f"{where}, and fetching {name!r} from the Hub failed: {str(error).splitlines()[0]}")


def from_pretrained(
    name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    auto_class: str | None = None,
    preset: str | None = None,
    strict: bool = True,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    **kwargs: Any,
):
    """Our model from any supported checkpoint: ours (Hub name, folder, cache), timm, transformers, or official.

    auto_class: e.g. "AutoModel" to get the backbone of a classification checkpoint (default: the saved
        architecture). preset: the preset name of an official release file (e.g. "vit-base-patch16-224").
    strict: False turns missing/unexpected-weight errors into warnings.
    kwargs: config overrides and `from_pretrained` options (num_labels=10, image_size=384,
        ignore_mismatched_sizes=True, ...); for foreign checkpoints they apply after conversion.
    """
    from hf_vision.modeling.pretrained import lenient_loading

    hub = dict(revision=revision, token=token, cache_dir=cache_dir, local_files_only=local_files_only)
    check_local_path(name_or_path)
    path = Path(name_or_path)
    if path.is_file():
        if preset is None:
            raise ValueError(f"{path} is a single checkpoint file: pass preset=<name> (see hf_vision.preset_names())")
        return convert.load_official(path, preset, **kwargs)
    if path.suffix in OFFICIAL_SUFFIXES:  # meant as a file, not a Hub name
        raise FileNotFoundError(f"checkpoint file {path} does not exist")
    config = _read_json(str(name_or_path), "config.json", **hub)
    if config is None:
        raise ValueError(f"{name_or_path} has no config.json (neither a local folder nor a Hub repo with one)")
    with lenient_loading(not strict):
        if (config.get("model_type") or "").startswith(OUR_MODEL_TYPE_PREFIX):
            cls = _our_class(config, auto_class)
            return cls.from_pretrained(name_or_path, **_drop_none(hub), **kwargs)
        kind, source = load_source(str(name_or_path), config, **hub)
        preprocessor = _read_processor(str(name_or_path), kind, hub)
        return _reload_with(convert_source(source, preprocessor), auto_class, kwargs)


def load_source(name_or_path: str, config: dict | None = None, **hub: Any):
    """("timm" | "transformers", the foreign model with its released weights) for a foreign checkpoint."""
    config = config if config is not None else _read_json(name_or_path, "config.json", **hub)
    if config is None:
        raise ValueError(f"{name_or_path} has no config.json")
    if "architecture" in config:  # timm's Hub format
        return "timm", _timm_source(name_or_path, config, hub)
    if config.get("model_type"):
        return "transformers", _transformers_source(name_or_path, config, hub)
    raise ValueError(f"{name_or_path}: config.json has neither model_type nor timm's architecture field")


def convert_source(source, preprocessor: dict[str, Any] | None = None):
    """Our model from a timm or transformers model (the family converters registered in hf_vision.convert);
    `preprocessor`: a transformers checkpoint's preprocessor_config.json, carried over to our processor."""
    if type(source).__module__.startswith("timm."):
        return convert.from_timm(source)
    return convert.from_transformers(source, preprocessor=preprocessor)


def _drop_none(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if v is not None}


def _read_json(name_or_path: str, filename: str, **hub: Any) -> dict | None:
    local = Path(name_or_path)
    if local.is_dir():
        file = local / filename
        return json.loads(file.read_text()) if file.is_file() else None
    check_local_path(name_or_path)
    try:
        file = hf_hub_download(name_or_path, filename, **_drop_none(hub))
    except RemoteEntryNotFoundError:  # the repo exists without this file
        return None
    except OSError as error:  # offline miss, unreachable Hub, unknown repo or revision
        raise hub_error(name_or_path, error, revision=hub.get("revision"), cache_dir=hub.get("cache_dir"),
                        local_files_only=bool(hub.get("local_files_only"))) from error
    return json.loads(Path(file).read_text())


def _read_processor(name_or_path: str, kind: str, hub: dict[str, Any]) -> dict | None:
    """A transformers checkpoint's preprocessor_config.json, or None where it has (or the cache holds) none."""
    if kind != "transformers":
        return None
    try:
        return _read_json(name_or_path, PROCESSOR_FILE, **hub)
    except OSError:  # config.json came from here, so: offline and not cached; our default preprocessing stays
        return None


def read_config(name_or_path: str | os.PathLike, **hub: Any) -> dict:
    """config.json of a local folder or Hub repo; errors name what was typed (see check_local_path, hub_error)."""
    config = _read_json(os.fspath(name_or_path), "config.json", **hub)
    if config is None:
        raise ValueError(f"{name_or_path} has no config.json (neither a local folder nor a Hub repo with one)")
    return config


def _our_class(config: dict, auto_class: str | None):
    from .auto import FAMILIES

    for config_cls, models in FAMILIES:
        if config_cls.model_type != config["model_type"]:
            continue
        if auto_class is not None:
            if auto_class not in models:
                raise ValueError(f"{config['model_type']} has no {auto_class}; available: {', '.join(sorted(models))}")
            return models[auto_class]
        by_name = {cls.__name__: cls for cls in models.values()}
        for architecture in config.get("architectures") or []:
            if architecture in by_name:
                return by_name[architecture]
        return models["AutoModel"]
    raise ValueError(f"model_type={config['model_type']!r} is not registered by this version of hf_vision")


def _timm_source(name_or_path: str, config: dict, hub: dict):
    """timm's Hub layout (config.json with architecture/pretrained_cfg/model_args + weights), read by timm itself."""
    try:
        import timm
    except ImportError as error:
        raise ImportError(f"{name_or_path} is a timm checkpoint: `pip install timm` to convert it") from error
    if not convert.TIMM_CONVERTERS:
        raise ValueError(f"{name_or_path} is a timm checkpoint but no timm converter is registered in hf_vision.convert")
    if Path(name_or_path).is_dir():
        source = f"local-dir:{name_or_path}"
    else:
        source = f"hf-hub:{name_or_path}" + (f"@{hub['revision']}" if hub.get("revision") else "")
    options = {"cache_dir": hub["cache_dir"]} if hub.get("cache_dir") else {}
    return timm.create_model(source, pretrained=True, **options).eval()


def _transformers_source(name_or_path: str, config: dict, hub: dict):
    import transformers

    model_type = config["model_type"]
    if model_type not in convert.TRANSFORMERS_CONVERTERS:
        raise ValueError(
            f"{name_or_path}: no converter for transformers model_type={model_type!r} "
            f"(registered: {', '.join(sorted(convert.TRANSFORMERS_CONVERTERS)) or 'none'})"
        )
    architecture = (config.get("architectures") or ["AutoModel"])[0]
    cls = getattr(transformers, architecture, None) or transformers.AutoModel
    return cls.from_pretrained(name_or_path, **_drop_none(hub)).eval()


def _reload_with(model, auto_class: str | None, kwargs: dict[str, Any]):
    """Apply config overrides / another Auto class to a converted model through our own loading path."""
    if not kwargs and auto_class is None:
        return model
    with tempfile.TemporaryDirectory(prefix="hfv-convert-") as folder:
        model.save_pretrained(folder)
        config = json.loads((Path(folder) / "config.json").read_text())
        cls = _our_class(config, auto_class)
        return cls.from_pretrained(folder, **kwargs)


# ------------------------------------------------------------------------------------------------------ convert


def convert_checkpoint(
    source: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    preset: str | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    verify: bool = True,
    atol: float = 1e-4,
    license: str = "apache-2.0",
) -> dict[str, Any]:
    """Convert a foreign checkpoint (file, folder or Hub name) into our format in `output_dir`, with a card.

    With the source library installed (timm, transformers) the converted model's outputs are compared with the
    source model's on a random batch; a difference above `atol` raises. Returns a small report.
    """
    hub = dict(revision=revision, cache_dir=cache_dir)
    check_local_path(source)
    path = Path(source)
    reference, kind = None, "official"
    if path.is_file():
        if preset is None:
            raise ValueError(f"{path} is a single checkpoint file: pass preset=<name> (see hf_vision.preset_names())")
        model = convert.load_official(path, preset)
    else:
        kind, reference = load_source(str(source), **hub)
        preprocessor = _read_processor(str(source), kind, hub)
        model = convert_source(reference, preprocessor)
    model.eval()
    model.save_pretrained(output_dir)
    on_hub = not path.exists()
    card = card_for_model(model, preset=preset, base_model=str(source) if on_hub else None, license=license,
                          description=f"Converted to the hf-vision format from the {kind} checkpoint `{source}`.")
    validate_card(card)
    card.save(Path(output_dir) / "README.md")
    report: dict[str, Any] = {"source": str(source), "kind": kind, "output_dir": str(output_dir),
                              "architecture": type(model).__name__, "verified": False, "max_abs_diff": None}
    if verify and reference is not None:
        field, diff = compare_outputs(reference, model)
        report.update(verified=True, compared=field, max_abs_diff=diff)
        if diff > atol:
            raise ValueError(f"converted {field} differs from the {kind} model by {diff:.3g} > atol={atol}")
    (Path(output_dir) / "conversion.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


EXPORT_TARGETS = ("hf_vision", "timm", "transformers")


def export_checkpoint(
    model,
    output_dir: str | os.PathLike,
    *,
    to: str,
    verify: bool = True,
    atol: float = 1e-4,
) -> dict[str, Any]:
    """Write our model in timm's or transformers' own checkpoint format (`to`), checked against ours.

    timm: model.safetensors + timm's config.json (architecture, model_args, pretrained_cfg with our preprocessing),
    written by timm's `save_for_hf`; load with `timm.create_model("local-dir:<dir>", pretrained=True)` or
    `timm.create_model(architecture, pretrained=True, **model_args,
    pretrained_cfg_overlay=dict(pretrained_cfg, file="<dir>/model.safetensors"))` (the file alone leaves timm the
    architecture's 1000-class cfg, and it drops another head size as "adapted"). transformers: the transformers
    model's `save_pretrained` plus our image processor.
    """
    if to not in EXPORT_TARGETS[1:]:
        raise ValueError(f"to={to!r} is not supported; accepted: {', '.join(map(repr, EXPORT_TARGETS[1:]))}")
    output_dir = Path(output_dir)
    model.eval()
    if to == "timm":
        from timm.models import save_for_hf

        target = convert.to_timm(model)
        try:
            save_for_hf(target, str(output_dir), safe_serialization=True)
        except ValueError as error:  # timm names the argument (e.g. norm_layer for a non-default layer_norm_eps)
            raise ValueError(f"timm cannot record this model in its config.json: {error} (a layer_norm_eps other "
                             "than timm's default, or a hybrid trunk with no registered timm architecture, can only "
                             "be rebuilt in Python: use hf_vision.convert.to_timm)") from error
    else:
        target = convert.to_transformers(model)
        target.save_pretrained(output_dir)
        model.image_processor().save_pretrained(output_dir)
    report: dict[str, Any] = {"to": to, "output_dir": str(output_dir), "architecture": type(target).__name__,
                              "verified": False, "max_abs_diff": None}
    if verify:
        field, diff = compare_outputs(target, _unmasked_if_mae(model, target))
        report.update(verified=True, compared=field, max_abs_diff=diff)
        if diff > atol:
            raise ValueError(f"exported {field} differs from ours by {diff:.3g} > atol={atol}")
    (output_dir / "export.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _unmasked_if_mae(model, target):
    """For MAE exported to a timm ViT (which never masks): a copy of ours that keeps every patch in image order
    and pools like the timm model, so the two are comparable."""
    import copy
    from types import SimpleNamespace

    import torch
    from torch import nn

    from .modeling.mae.modeling_mae import MAEForPreTraining, MAEModel

    if not isinstance(model, (MAEModel, MAEForPreTraining)) or not type(target).__module__.startswith("timm."):
        return model
    encoder = copy.deepcopy(model.vit if isinstance(model, MAEForPreTraining) else model)
    encoder.config.mask_ratio = 0.0

    class Unmasked(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder, self.config = encoder, encoder.config

        def forward(self, pixel_values):
            patches = encoder.config.grid_size[0] * encoder.config.grid_size[1]
            # increasing noise keeps patches in image order: (L,) -> (B, L)
            order = torch.arange(patches, dtype=torch.float32).expand(pixel_values.shape[0], patches) / patches
            tokens = encoder(pixel_values, order).last_hidden_state
            pooled = tokens[:, 1:].mean(1) if target.global_pool == "avg" else tokens[:, 0]
            return SimpleNamespace(pooler_output=pooled, last_hidden_state=tokens)

    return Unmasked().eval()


def compare_outputs(reference, model, *, batch: int = 2, seed: int = 0) -> tuple[str, float]:
    """(field compared, max |difference|) between a source model and its conversion on one random batch."""
    import inspect

    import torch

    config = model.config
    height, width = pair(config.image_size)
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randn(batch, config.num_channels, height, width, generator=generator)
    kwargs = {}
    takes_noise = all("noise" in inspect.signature(m.forward).parameters for m in (reference, model))
    if takes_noise:  # MAE: the same random masking on both sides
        patches = (height // config.patch_size) * (width // config.patch_size)
        kwargs["noise"] = torch.rand(batch, patches, generator=generator)
    with torch.no_grad():
        theirs, ours = reference(pixels, **kwargs), model(pixels, **kwargs)
    for field in ("logits", "last_hidden_state", "pooler_output"):
        a = theirs if isinstance(theirs, torch.Tensor) else getattr(theirs, field, None)
        b = getattr(ours, field, None)
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape:
            return field, (a.float() - b.float()).abs().max().item()
    theirs_maps, our_maps = getattr(theirs, "feature_maps", None), getattr(ours, "feature_maps", None)
    if theirs_maps is not None and our_maps is not None and len(theirs_maps) == len(our_maps):  # backbones
        return "feature_maps", max((a.float() - b.float()).abs().max().item() for a, b in zip(theirs_maps, our_maps))
    raise ValueError(f"no comparable output between {type(reference).__name__} and {type(model).__name__}")

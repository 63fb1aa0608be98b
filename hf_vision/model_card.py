"""Model cards for every saved or pushed checkpoint, built with huggingface_hub's `ModelCard`/`ModelCardData`.

The metadata is what the Hub indexes (license, pipeline_tag, tags with the papers' arXiv ids, datasets, base_model,
`model-index` results); the body says what the model is, how it was trained, how well it did, how to load it and
what to cite. `validate_card` runs the Hub's metadata checks that matter here without a network.
"""
from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .modeling.config_checks import pair

LIBRARY_NAME = "transformers"  # our checkpoints load through transformers (remote code or registered classes)
OUR_CARD_TAG = "hf-vision"  # marks a card this package built (kept as is on upload)
UNPUBLISHED_LOCATION = "path/to/checkpoint"  # a card written before its push names this; the push fills the repo id

# The Hub's license identifiers most model repos use (https://huggingface.co/docs/hub/repositories-licenses).
HUB_LICENSES = frozenset({
    "apache-2.0", "mit", "bsd", "bsd-2-clause", "bsd-3-clause", "bsd-3-clause-clear", "cc0-1.0", "cc-by-2.0",
    "cc-by-2.5", "cc-by-3.0", "cc-by-4.0", "cc-by-sa-3.0", "cc-by-sa-4.0", "cc-by-nc-2.0", "cc-by-nc-3.0",
    "cc-by-nc-4.0", "cc-by-nd-4.0", "cc-by-nc-nd-3.0", "cc-by-nc-nd-4.0", "cc-by-nc-sa-2.0", "cc-by-nc-sa-3.0",
    "cc-by-nc-sa-4.0", "gpl", "gpl-2.0", "gpl-3.0", "lgpl-2.1", "lgpl-3.0", "agpl-3.0", "mpl-2.0", "openrail",
    "creativeml-openrail-m", "bigscience-openrail-m", "openrail++", "llama2", "llama3", "gemma", "unlicense",
    "afl-3.0", "artistic-2.0", "bsl-1.0", "ecl-2.0", "epl-1.0", "epl-2.0", "eupl-1.1", "isc", "ms-pl", "ncsa",
    "odbl", "ofl-1.1", "osl-3.0", "postgresql", "wtfpl", "zlib", "other", "unknown",
})
# The Hub's pipeline tags for vision models (the subset a vision checkpoint can carry). huggingface_hub ships no
# list of pipeline tags; tests check that the tags our cards emit are transformers pipeline tasks.
HUB_VISION_PIPELINES = frozenset({
    "image-classification", "image-feature-extraction", "image-segmentation", "object-detection",
    "zero-shot-image-classification", "mask-generation", "image-to-image", "depth-estimation",
    "unconditional-image-generation", "keypoint-detection", "video-classification",
})

# Metrics written by Trainer/our scripts that are bookkeeping, not results.
_NOT_RESULTS = ("runtime", "samples_per_second", "steps_per_second", "epoch", "total_flos", "step", "learning_rate")


@dataclass(frozen=True)
class Family:
    name: str
    title: str
    arxiv: tuple[str, ...]
    citation: str


_VIT_BIB = """@inproceedings{dosovitskiy2021vit,
  title     = {An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale},
  author    = {Dosovitskiy, Alexey and Beyer, Lucas and Kolesnikov, Alexander and Weissenborn, Dirk and
               Zhai, Xiaohua and Unterthiner, Thomas and Dehghani, Mostafa and Minderer, Matthias and
               Heigold, Georg and Gelly, Sylvain and Uszkoreit, Jakob and Houlsby, Neil},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2021}
}"""
_BIT_BIB = """@inproceedings{kolesnikov2020bit,
  title     = {Big Transfer (BiT): General Visual Representation Learning},
  author    = {Kolesnikov, Alexander and Beyer, Lucas and Zhai, Xiaohua and Puigcerver, Joan and Yung, Jessica and
               Gelly, Sylvain and Houlsby, Neil},
  booktitle = {European Conference on Computer Vision (ECCV)},
  year      = {2020}
}"""
_MAE_BIB = """@inproceedings{he2022mae,
  title     = {Masked Autoencoders Are Scalable Vision Learners},
  author    = {He, Kaiming and Chen, Xinlei and Xie, Saining and Li, Yanghao and Doll{\\'a}r, Piotr and Girshick, Ross},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2022}
}"""
_SWIN_BIB = """@inproceedings{liu2021swin,
  title     = {Swin Transformer: Hierarchical Vision Transformer using Shifted Windows},
  author    = {Liu, Ze and Lin, Yutong and Cao, Yue and Hu, Han and Wei, Yixuan and Zhang, Zheng and Lin, Stephen and
               Guo, Baining},
  booktitle = {IEEE/CVF International Conference on Computer Vision (ICCV)},
  year      = {2021}
}"""

FAMILIES: dict[str, Family] = {
    "hfv_vit": Family("vit", "Vision Transformer (ViT)", ("2010.11929",), _VIT_BIB),
    "hfv_hybrid": Family("vit-hybrid", "ResNet + Vision Transformer hybrid", ("2010.11929", "1912.11370"),
                         _VIT_BIB + "\n\n" + _BIT_BIB),
    "hfv_mae": Family("mae", "Masked Autoencoder (MAE)", ("2111.06377", "2010.11929"), _MAE_BIB + "\n\n" + _VIT_BIB),
    "hfv_swin": Family("swin", "Swin Transformer", ("2103.14030",), _SWIN_BIB),
}


def _config_dict(config: Any) -> dict[str, Any]:
    return dict(config) if isinstance(config, Mapping) else config.to_dict()


def _family(config: dict[str, Any]) -> Family:
    model_type = config.get("model_type")
    if model_type not in FAMILIES:
        raise ValueError(f"model_type={model_type!r} has no model card family; known: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[model_type]


# pipeline tag -> task name: the only tasks our cards name (pipeline_tag and model-index task.type alike).
CARD_TASKS = {"image-classification": "Image Classification", "image-feature-extraction": "Image Feature Extraction"}


def _task(config: dict[str, Any]) -> tuple[str, str]:
    """(pipeline tag = model-index task type, task name) from the saved architecture. An MAE pre-training
    checkpoint is an image feature extractor: its AutoModel encodes the whole, unmasked image."""
    architecture = (config.get("architectures") or [""])[0]
    tag = "image-classification" if architecture.endswith("ForImageClassification") else "image-feature-extraction"
    return tag, CARD_TASKS[tag]


def min_transformers_version() -> str | None:
    """The transformers floor hf-vision declares (its installed metadata), e.g. "5.0"; None when not installed."""
    from importlib import metadata

    try:
        requirements = metadata.requires("hf-vision") or []
    except metadata.PackageNotFoundError:
        return None
    for requirement in requirements:
        name, _, spec = requirement.partition(";")[0].replace(" ", "").partition("transformers")
        if name == "" and spec[:1] in ("<", ">", "=", "!", "~", ","):
            for part in spec.split(","):
                if part.startswith(">="):
                    return part[2:]
    return None


def match_preset(config: dict[str, Any]) -> str | None:
    """The named preset whose architecture this config has (head size and regularisation aside)."""
    from .presets import PRESETS

    for name, preset in sorted(PRESETS.items()):
        if getattr(preset.config_class, "model_type", None) != config.get("model_type"):
            continue
        if all(_same(config.get(key), value) for key, value in preset.kwargs.items()):
            return name
    return None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b


def count_parameters(folder: str | Path) -> int:
    """Parameters stored in a checkpoint folder's safetensors files (read from their headers only)."""
    from safetensors import safe_open

    total = 0
    for file in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                total += math.prod(f.get_slice(key).get_shape())
    return total


def result_metrics(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    """Trainer-style metrics ({"eval_accuracy": 0.81, "eval_runtime": 3.2}) -> results ({"accuracy": 0.81}).

    Only what was measured on the evaluation split: `train_*` values (training loss) are training statistics
    (see `training_metrics`), bookkeeping (runtimes, throughput, epoch, flos) is dropped."""
    return {name: value for name, value in _numbers(metrics).items() if not name.startswith("train_")}


def training_metrics(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    """The `train_*` statistics of a run ({"train_loss": 0.3}), reported in the card's training section."""
    return {name: value for name, value in _numbers(metrics).items() if name.startswith("train_")}


def _numbers(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in (metrics or {}).items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            continue
        name = key
        for prefix in ("eval_", "test_", "validation_"):
            name = name.removeprefix(prefix)
        if any(name.endswith(skip) for skip in _NOT_RESULTS):
            continue
        out[name] = float(value)
    return out


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text.replace("|", "\\|")


def _architecture_rows(config: dict[str, Any], family: Family, preset: str | None, num_parameters: int | None):
    rows = [("Family", family.title), ("Preset", preset or "custom"), ("Model type", config.get("model_type"))]
    rows.append(("Architecture", ", ".join(config.get("architectures") or []) or "n/a"))
    if num_parameters is not None:
        rows.append(("Parameters", f"{num_parameters / 1e6:.2f} M ({num_parameters:,})"))
    height, width = pair(config.get("image_size"))
    rows.append(("Resolution", f"{height}x{width}"))
    for key, label in (("patch_size", "Patch size"), ("window_size", "Window size"), ("hidden_size", "Width"),
                       ("embed_dim", "Embedding width"), ("num_hidden_layers", "Layers"), ("depths", "Stage depths"),
                       ("num_attention_heads", "Heads"), ("num_heads", "Heads per stage"),
                       ("backbone_layers", "ResNet stage depths"), ("mask_ratio", "Mask ratio"),
                       ("decoder_num_hidden_layers", "Decoder layers"), ("pooling", "Pooling"),
                       ("num_labels", "Classes")):
        if config.get(key) is not None:
            rows.append((label, config[key]))
    if "id2label" in config and "num_labels" not in config:
        rows.append(("Classes", len(config["id2label"])))
    return rows


def build_model_card(
    config: Any,
    *,
    repo_id: str | None = None,
    num_parameters: int | None = None,
    preset: str | None = None,
    base_model: str | None = None,
    datasets: list[str] | str | None = None,
    eval_dataset: str | None = None,
    eval_split: str | None = None,
    metrics: Mapping[str, Any] | None = None,
    training_args: Mapping[str, Any] | None = None,
    license: str = "apache-2.0",
    tags: list[str] | tuple[str, ...] = (),
    model_name: str | None = None,
    description: str | None = None,
    local_data: str | None = None,
) -> ModelCard:
    """A card for a checkpoint with this `config` (a config object or config.json's dict).

    datasets: Hub dataset ids only. Data that is not on the Hub is described in words by `local_data` (the
        card then names no dataset id and carries no model-index, whose dataset.type must be a Hub id).
    metrics: the run's metrics (Trainer-style keys are fine). Those measured on the evaluation split become
        `model-index` entries on `eval_dataset` (default: the first of `datasets`) / `eval_split` and the results
        table; `train_*` values (training loss) go to the training section.
    training_args: the run's resolved arguments, printed as the training recipe.
    """
    config = _config_dict(config)
    family = _family(config)
    pipeline_tag, task_name = _task(config)
    preset = preset or match_preset(config)
    datasets = [datasets] if isinstance(datasets, str) else list(datasets or [])
    eval_dataset = eval_dataset or (datasets[0] if datasets else None)
    results, train_stats = result_metrics(metrics), training_metrics(metrics)
    name = model_name or (repo_id.split("/")[-1] if repo_id else preset or family.name)

    eval_results = None
    if results and eval_dataset and local_data is None:
        eval_results = [
            EvalResult(task_type=pipeline_tag, task_name=task_name, dataset_type=eval_dataset,
                       dataset_name=eval_dataset, dataset_split=eval_split, metric_type=metric, metric_name=metric,
                       metric_value=value)
            for metric, value in results.items()
        ]
    card_tags = [OUR_CARD_TAG, "vision", "custom_code", family.name, pipeline_tag]
    card_tags += [f"arxiv:{a}" for a in family.arxiv] + [t for t in tags if t not in card_tags]
    data = ModelCardData(
        license=license, library_name=LIBRARY_NAME, pipeline_tag=pipeline_tag, tags=card_tags,
        datasets=datasets or None, metrics=sorted(results) or None, base_model=base_model,
        model_name=name, eval_results=eval_results,
    )
    body = _body(config, family, name, repo_id, preset, num_parameters, base_model, datasets, eval_dataset,
                 eval_split, results, train_stats, training_args, pipeline_tag, description, local_data)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")


def _body(config, family, name, repo_id, preset, num_parameters, base_model, datasets, eval_dataset, eval_split,
          results, train_stats, training_args, pipeline_tag, description, local_data) -> str:
    where = repo_id or UNPUBLISHED_LOCATION
    height, width = pair(config.get("image_size") or 224)
    papers = ", ".join(f"[arXiv:{a}](https://arxiv.org/abs/{a})" for a in family.arxiv)
    floor = min_transformers_version()
    requirement = f"transformers>={floor}" if floor else "transformers"
    lines = [f"# {name}", ""]
    lines.append(description or f"A {family.title} checkpoint in the hf-vision format ({papers}).")
    if base_model:
        lines.append(f"Fine-tuned from [{base_model}](https://huggingface.co/{base_model}).")
    if datasets:
        lines.append(f"Trained on: {', '.join(datasets)}.")
    if local_data:
        lines.append(f"Trained on local data that is not a Hub dataset: {local_data}.")
    lines += ["", "## Architecture", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {_format_value(v)} |" for k, v in
              _architecture_rows(config, family, preset, num_parameters)]
    lines += ["", "## Training recipe", ""]
    if training_args:
        lines += ["The run's resolved arguments:", "", "| argument | value |", "|---|---|"]
        lines += [f"| {k} | {_format_value(v)} |" for k, v in sorted(training_args.items())]
    else:
        lines.append("Not recorded with this checkpoint (converted or saved without a training run).")
    if train_stats:
        lines += ["", "Training statistics (measured on the training data, not results):", "",
                  "| statistic | value |", "|---|---|"]
        lines += [f"| {k} | {v:.6g} |" for k, v in train_stats.items()]
    lines += ["", "## Results", ""]
    if results:
        split = f", split `{eval_split}`" if eval_split else ""
        where_measured = eval_dataset or local_data or "the evaluation set"
        lines += [f"Measured on {where_measured}{split}:", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.6g} |" for k, v in results.items()]
    else:
        lines.append("No evaluation results were recorded for this checkpoint.")
    lines += [
        "", "## How to use", "",
        f"Needs `{requirement}` and Pillow. With transformers alone (the modeling code travels with the "
        "checkpoint, hence `trust_remote_code=True`):", "",
        "```python", "from PIL import Image", "from transformers import pipeline", "",
        f'pipe = pipeline("{pipeline_tag}", model="{where}", trust_remote_code=True)',
        f'image = Image.new("RGB", ({width}, {height}), "gray")  # your image here',
        f"print({_USAGE_OUTPUT[pipeline_tag]})", "```", "",
        "With hf-vision installed (its classes are registered, no remote code runs):", "",
        "```python", "import hf_vision", "", f'model = hf_vision.from_pretrained("{where}")', "```", "",
        "## Citation", "", "```bibtex", family.citation, "```", "",
    ]
    return "\n".join(lines)


# What the usage snippet prints: the top prediction, or the shape of the features (tokens x width).
_USAGE_OUTPUT = {"image-classification": "pipe(image)[0]",
                 "image-feature-extraction": "len(pipe(image)[0]), len(pipe(image)[0][0])"}


def card_for_model(model, **kwargs: Any) -> ModelCard:
    """The card of an in-memory model (its config, parameter count and architecture)."""
    config = model.config.to_dict()
    if not config.get("architectures"):
        config["architectures"] = [type(model).__name__]
    kwargs.setdefault("num_parameters", sum(p.numel() for p in model.parameters()))
    return build_model_card(config, **kwargs)


# Files a training run leaves next to the checkpoint, read for the card when present.
RUN_METRICS_FILES = ("all_results.json", "eval_results.json", "metrics.json")
RUN_ARGS_FILES = ("run_args.json", "args.json", "training_args.json")


def card_for_folder(folder: str | Path, **kwargs: Any) -> ModelCard:
    """The card of a saved checkpoint folder; the run's metrics and arguments are picked up from its json files."""
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    kwargs.setdefault("num_parameters", count_parameters(folder) or None)
    if kwargs.get("metrics") is None:  # a run's files: only split-prefixed values (eval_*, train_*) are metrics
        kwargs["metrics"] = {k: v for k, v in (_first_json(folder, RUN_METRICS_FILES) or {}).items()
                             if k.startswith(("eval_", "test_", "validation_", "train_"))}
    if kwargs.get("training_args") is None:
        kwargs["training_args"] = _first_json(folder, RUN_ARGS_FILES)
    return build_model_card(config, **kwargs)


# The embedded demo data is scikit-learn's bundled digits, not a Hub dataset.
DIGITS_STATEMENT = ("scikit-learn's bundled 8x8 handwritten digits (`sklearn.datasets.load_digits`, 1,797 images, "
                    "10 classes), stored as 32x32 RGB images with a fixed train/test split")


def data_statement(dataset: str | None) -> tuple[list[str] | None, str | None]:
    """(Hub dataset ids, local-data statement) for a run's --dataset: a local folder or file and the embedded
    digits are described in words, anything else is taken as a Hub dataset id."""
    from .data.sources import EMBEDDED_NAMES

    if not dataset:
        return None, None
    if dataset in EMBEDDED_NAMES:
        return None, DIGITS_STATEMENT
    if Path(dataset).exists():
        return None, f"the local files `{Path(dataset).name}`"
    return [dataset], None


def _first_json(folder: Path, names: tuple[str, ...]) -> dict[str, Any] | None:
    for name in names:
        if (folder / name).is_file():
            data = json.loads((folder / name).read_text())
            if isinstance(data, dict):
                return data
    return None


def validate_card(card: ModelCard | str) -> None:
    """The Hub's metadata checks that apply to our cards, offline. Raises ValueError naming the field."""
    text = str(card)
    parsed = ModelCard(text, ignore_metadata_errors=False)  # YAML front matter and model-index must parse
    meta = parsed.data.to_dict()
    if not text.startswith("---"):
        raise ValueError("the card has no YAML metadata block")
    for key in ("license", "pipeline_tag", "library_name", "license_name", "model_name"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            raise ValueError(f"{key} must be a string, got {meta[key]!r}")
    license_ = meta.get("license")
    if license_ is not None and license_ not in HUB_LICENSES:
        raise ValueError(f"license={license_!r} is not a Hub license identifier (e.g. apache-2.0, mit, other)")
    if license_ == "other" and not meta.get("license_name"):
        raise ValueError("license='other' needs license_name")
    pipeline_tag = meta.get("pipeline_tag")
    if pipeline_tag is not None and pipeline_tag not in HUB_VISION_PIPELINES:
        raise ValueError(f"pipeline_tag={pipeline_tag!r} is not one of {', '.join(sorted(HUB_VISION_PIPELINES))}")
    for key in ("tags", "datasets", "metrics", "base_model"):
        value = meta.get(key)
        values = [value] if isinstance(value, str) else value
        if value is not None and (not isinstance(values, list) or not all(isinstance(v, str) and v for v in values)):
            raise ValueError(f"{key} must be a string or a list of non-empty strings, got {value!r}")
    for result in parsed.data.eval_results or []:
        if not isinstance(result.metric_value, (int, float)) or isinstance(result.metric_value, bool):
            raise ValueError(f"model-index metric {result.metric_type!r} has a non-numeric value {result.metric_value!r}")
        if not (result.task_type and result.dataset_type and result.dataset_name and result.metric_type):
            raise ValueError("every model-index result needs task.type, dataset.type, dataset.name and metric.type")
    if "model-index" in meta and not parsed.data.eval_results:
        raise ValueError("model-index is present but holds no parsable results")

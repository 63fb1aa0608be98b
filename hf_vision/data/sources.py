"""Where images come from: a Hub dataset name, a local folder or file (image folder, parquet, webdataset tar
shards), or the embedded digits. All go through `datasets.load_dataset(..., streaming=True)`, so a laptop run
on the embedded data exercises the code path of a cluster run on a Hub dataset.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .embedded import digits_dir, digits_num_examples

EMBEDDED_NAMES = ("digits", "embedded", "embedded:digits")
IMAGE_COLUMN_GUESSES = ("image", "img", "jpg", "jpeg", "png", "webp", "pixel_values")
LABEL_COLUMN_GUESSES = ("label", "labels", "cls", "class", "fine_label", "target")
_FILE_BUILDERS = {".parquet": "parquet", ".tar": "webdataset", ".arrow": "arrow"}


@dataclass
class ImageSource:
    """A streamed split with its image column cast to `Image(decode=False)` (we decode, see decode.py)."""

    dataset: "datasets.IterableDataset"  # noqa: F821
    image_column: str
    label_column: str | None
    class_names: list[str] | None
    num_examples: int | None
    name: str
    split: str
    key_column: str | None = None  # an example id when the format has one (webdataset's __key__)

    @property
    def num_labels(self) -> int | None:
        return len(self.class_names) if self.class_names else None


def _load(source: str, split: str, *, config_name: str | None, streaming: bool):
    from datasets import load_dataset

    if source in EMBEDDED_NAMES:
        return load_dataset(str(digits_dir()), split=split, streaming=streaming)
    path = Path(source).expanduser()
    if path.is_file():
        builder = _FILE_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise ValueError(
                f"dataset file {source!r}: unsupported extension {path.suffix!r}; accepted: "
                f"{', '.join(_FILE_BUILDERS)} (or a folder, or a Hub dataset name)"
            )
        return load_dataset(builder, data_files={split: str(path)}, split=split, streaming=streaming)
    if path.is_dir():
        # datasets picks the builder from the files (parquet, tar shards, images) and splits from their names.
        return load_dataset(str(path), split=split, streaming=streaming)
    return load_dataset(source, config_name, split=split, streaming=streaming)


def _find_column(features, wanted: str | None, guesses: tuple[str, ...], kind: str, type_name: str) -> str | None:
    names = list(features) if features is not None else []
    if wanted is not None:
        if features is not None and wanted not in names:
            raise ValueError(f"{kind}_column={wanted!r} is not a column; columns: {', '.join(names)}")
        return wanted
    if features is None:
        return None
    typed = [name for name, feature in features.items() if type(feature).__name__ == type_name]
    if typed:
        return typed[0]
    return next((name for name in guesses if name in names), None)


def load_image_source(
    source: str | None = None,
    split: str = "train",
    *,
    config_name: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    streaming: bool = True,
    with_labels: bool = True,
) -> ImageSource:
    """Open one split. `source=None` means the embedded digits.

    Columns are found by feature type (Image, ClassLabel), then by common names; pass them to override.
    """
    from datasets import Image

    source = source or "digits"
    dataset = _load(source, split, config_name=config_name, streaming=streaming)
    features = dataset.features
    if features is None:  # e.g. some webdataset shards: resolve types from the first records
        dataset = dataset._resolve_features()
        features = dataset.features
    image_col = _find_column(features, image_column, IMAGE_COLUMN_GUESSES, "image", "Image")
    if image_col is None:
        raise ValueError(
            f"no image column in {source!r} (columns: {', '.join(features or [])}); pass image_column="
        )
    label_col = _find_column(features, label_column, LABEL_COLUMN_GUESSES, "label", "ClassLabel") if with_labels \
        else None
    key_col = "__key__" if features is not None and "__key__" in features else None  # webdataset's example id
    keep = [image_col] + ([label_col] if label_col else []) + ([key_col] if key_col else [])
    dataset = dataset.select_columns(keep).cast_column(image_col, Image(decode=False))
    class_names = None
    if label_col is not None and type(features[label_col]).__name__ == "ClassLabel":
        class_names = list(features[label_col].names)
    num_examples = None
    if source in EMBEDDED_NAMES:
        num_examples = digits_num_examples().get(split)
    elif dataset.info.splits and split in dataset.info.splits:
        num_examples = dataset.info.splits[split].num_examples or None
    return ImageSource(dataset, image_col, label_col, class_names, num_examples, source, split, key_col)


def available_splits(source: str | None, config_name: str | None = None) -> list[str]:
    """Split names of a source (used to find an evaluation split: validation, then test)."""
    source = source or "digits"
    if source in EMBEDDED_NAMES:
        return ["train", "test"]
    path = Path(source).expanduser()
    if path.is_file():
        return ["train"]
    from datasets import get_dataset_split_names

    return list(get_dataset_split_names(str(path) if path.is_dir() else source, config_name))

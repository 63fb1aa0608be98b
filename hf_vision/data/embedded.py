"""The offline default dataset: scikit-learn's bundled handwritten digits (1,797 real 8x8 scans, 10 classes).

They are upscaled to 32x32 RGB PNGs and written once to webdataset tar shards under the cache directory
(`$HF_VISION_CACHE`, default ~/.cache/hf_vision), with a fixed stratified train/test split. Scripts then read
the folder through `datasets.load_dataset(folder, streaming=True)`, exactly as a user's own shards or a Hub
dataset. (Tar rather than parquet: `datasets` pauses 5 s at the end of every shuffled parquet pass, an
Arrow-bug workaround, which would dominate the epochs of a dataset this small.)
"""
from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from ..paths import cache_dir

DIGITS_VERSION = "v3"
DIGITS_IMAGE_SIZE = 32
TRAIN_SHARDS = 4  # divisible by 1, 2 and 4 processes, so `split_dataset_by_node` splits by shards
TEST_SHARDS = 2
TEST_FRACTION = 0.2
SPLIT_SEED = 0


def _digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images uint8 (N, 8, 8) in 0..255, labels (N,), is_test (N,) bool): a stratified, seeded split."""
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)  # 17 grey levels -> 0..255
    labels = digits.target.astype(np.int64)
    rng = np.random.RandomState(SPLIT_SEED)
    is_test = np.zeros(len(labels), dtype=bool)
    for cls in range(10):
        members = np.flatnonzero(labels == cls)
        is_test[rng.permutation(members)[: round(len(members) * TEST_FRACTION)]] = True
    return images, labels, is_test


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    # White digits on black, as scanned; bicubic upscaling gives smooth strokes at 32x32.
    big = Image.fromarray(image, mode="L").resize((DIGITS_IMAGE_SIZE, DIGITS_IMAGE_SIZE), Image.BICUBIC)
    buffer = io.BytesIO()
    big.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


_CARD = """---
dataset_info:
  features:
  - name: __key__
    dtype: string
  - name: png
    dtype: image
  - name: cls
    dtype:
      class_label:
        names:
{names}
---
# digits (hf-vision embedded default)

scikit-learn's bundled UCI handwritten digits, upscaled from 8x8 to {size}x{size} RGB, as webdataset shards.
"""


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _write(folder: Path) -> None:
    """Webdataset tar shards (`<key>.png` + `<key>.cls`) and a card whose YAML declares the class names."""
    images, labels, is_test = _digits_split()
    rng = np.random.RandomState(SPLIT_SEED + 1)
    for split, mask, shards in (("train", ~is_test, TRAIN_SHARDS), ("test", is_test, TEST_SHARDS)):
        indices = np.flatnonzero(mask)
        indices = indices[rng.permutation(len(indices))]  # classes mixed within every shard
        for shard, part in enumerate(np.array_split(indices, shards)):
            with tarfile.open(folder / f"{split}-{shard:05d}-of-{shards:05d}.tar", "w") as tar:
                for i in part:
                    _add(tar, f"digit{i:05d}.png", _png(images[i]))
                    _add(tar, f"digit{i:05d}.cls", str(int(labels[i])).encode())
    names = "\n".join(f"          '{i}': '{i}'" for i in range(10))
    (folder / "README.md").write_text(_CARD.format(names=names, size=DIGITS_IMAGE_SIZE))


def digits_dir() -> Path:
    """The folder of digits parquet shards, written on first use (atomically: temp dir, then rename)."""
    target = cache_dir() / "digits" / DIGITS_VERSION
    if (target / "COMPLETE").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".digits-", dir=target.parent))
    try:
        _write(tmp)
        (tmp / "COMPLETE").write_text("ok\n")
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first
            if not (target / "COMPLETE").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def digits_num_examples() -> dict[str, int]:
    _, _, is_test = _digits_split()
    return {"train": int((~is_test).sum()), "test": int(is_test.sum())}

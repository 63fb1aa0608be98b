"""Decode + augment throughput per CPU core: our pipeline against transformers' `run_mae.py` example pipeline.

Run it through the CLI: `python scripts/benchmark.py --data` (see `--help` for --data_images etc.).

Both sides start from the same JPEG bytes (real photographs from scikit-image, re-encoded at ImageNet-like
sizes) and end with a normalised float batch, single-threaded. Throughput is images per CPU-second of the
benchmarking process (`time.process_time`), i.e. per core, and unaffected by other processes queueing for the
CPU on a shared machine:
- reference (run_mae.py): `PIL.Image.open` + load (what `datasets`' Image feature does), then
  Compose([convert RGB, RandomResizedCrop(scale=(0.2, 1), bicubic), RandomHorizontalFlip, ToTensor, Normalize])
  per image, and a stacking collate;
- ours: `open_image` + `pretrain_transform` (crop drawn from the header, reduced-size JPEG decoding when the
  crop allows it, uint8 tensor ops) and `Collate` (one vectorised normalisation per batch).
The fine-tuning and evaluation recipes are timed the same way against their run_image_classification-style
Compose equivalents. Repeats alternate between the pipelines so a noisy machine slows both alike.
"""
from __future__ import annotations

import io
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image

from hf_vision.modeling.config_checks import IMAGENET_MEAN, IMAGENET_STD

from ..data.decode import open_image
from ..data.transforms import Collate, PreprocessSpec, eval_transform, finetune_transform, pretrain_transform

_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left", "immunohistochemistry", "hubble_deep_field")


def sample_jpegs(count: int = 48, *, long_side: tuple[int, int] = (400, 640), seed: int = 0,
                 quality: int = 90) -> list[bytes]:
    """`count` JPEGs: random crops of scikit-image's bundled photographs, long side in `long_side`."""
    import skimage.data

    rng = np.random.default_rng(seed)
    photos = []
    for name in _PHOTOS:
        loader = getattr(skimage.data, name, None)
        if loader is None:
            continue
        try:
            array = loader()
        except Exception:  # some datasets need a download (pooch): skip them
            continue
        image = Image.fromarray(array if array.ndim == 3 else np.stack([array] * 3, -1)).convert("RGB")
        photos.append(image)
    if not photos:
        raise RuntimeError("no scikit-image photographs available")
    out = []
    for i in range(count):
        photo = photos[i % len(photos)]
        w, h = photo.size
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = photo.crop((left, top, left + cw, top + ch))
        target = int(rng.integers(*long_side))
        scale = target / max(crop.size)
        crop = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))), Image.BICUBIC)
        buffer = io.BytesIO()
        crop.save(buffer, format="JPEG", quality=quality)
        out.append(buffer.getvalue())
    return out


def reference_pipeline(kind: str, size: int) -> Callable[[bytes], torch.Tensor]:
    """transformers' example pipelines (PIL + torchvision v1 Compose), image bytes -> normalised tensor."""
    from torchvision import transforms as T

    bicubic = T.InterpolationMode.BICUBIC
    to_rgb = T.Lambda(lambda im: im.convert("RGB") if im.mode != "RGB" else im)
    tail = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if kind == "pretrain":  # run_mae.py
        compose = T.Compose([to_rgb, T.RandomResizedCrop(size, scale=(0.2, 1.0), interpolation=bicubic),
                             T.RandomHorizontalFlip(), *tail])
    elif kind == "finetune":  # run_image_classification.py + RandAugment, as MAE's fine-tuning adds
        compose = T.Compose([to_rgb, T.RandomResizedCrop(size, interpolation=bicubic), T.RandomHorizontalFlip(),
                             T.RandAugment(2, 9), *tail])
    else:  # evaluation: resize + center crop
        compose = T.Compose([to_rgb, T.Resize(int(size / 0.875), interpolation=bicubic), T.CenterCrop(size), *tail])

    def run(data: bytes) -> torch.Tensor:
        image = Image.open(io.BytesIO(data))
        image.load()
        return compose(image)

    return run


def our_pipeline(kind: str, size: int) -> Callable[[bytes], torch.Tensor]:
    spec = PreprocessSpec((size, size), IMAGENET_MEAN, IMAGENET_STD)
    transform = {"pretrain": pretrain_transform, "finetune": finetune_transform, "eval": eval_transform}[kind](spec)
    return lambda data: transform(open_image(data))


def _time_batches(pipeline: Callable[[bytes], torch.Tensor], collate: Callable[[list], torch.Tensor],
                  images: list[bytes], batch_size: int) -> float:
    """Images per CPU-second of this process over all `images`, in batches (per-image work + collate)."""
    start = time.process_time()
    for i in range(0, len(images), batch_size):
        collate([pipeline(data) for data in images[i:i + batch_size]])
    return len(images) / max(time.process_time() - start, 1e-9)


def run_data_benchmark(*, kinds: tuple[str, ...] = ("pretrain", "finetune", "eval"), size: int = 224,
                       num_images: int = 48, batch_size: int = 16, repeats: int = 5, threads: int = 1,
                       long_side: tuple[int, int] = (400, 640), seed: int = 0,
                       progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """{"settings": ..., "results": {kind: {"ours": [img/s per repeat], "run_mae.py": [...], "ratio": median}}}."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run_data_benchmark(kinds, size, num_images, batch_size, repeats, threads, long_side, seed, progress)
    finally:  # a library call must not change its caller's process-wide settings
        torch.set_num_threads(previous_threads)


def _run_data_benchmark(kinds, size, num_images, batch_size, repeats, threads, long_side, seed, progress):
    images = sample_jpegs(num_images, long_side=long_side, seed=seed)
    ours_collate = Collate(IMAGENET_MEAN, IMAGENET_STD)

    def collate_ours(pixels: list[torch.Tensor]) -> torch.Tensor:
        return ours_collate([{"pixel_values": p} for p in pixels])["pixel_values"]

    results: dict[str, Any] = {}
    for kind in kinds:
        contenders = {"ours": (our_pipeline(kind, size), collate_ours),
                      "reference": (reference_pipeline(kind, size), torch.stack)}
        for pipeline, collate in contenders.values():  # warm-up (lazy imports, allocator)
            _time_batches(pipeline, collate, images[:batch_size], batch_size)
        runs: dict[str, list[float]] = {name: [] for name in contenders}
        for r in range(repeats):
            order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
            for name in order:
                torch.manual_seed(seed + r)
                runs[name].append(_time_batches(*contenders[name], images, batch_size))
        ratio = statistics.median(runs["ours"]) / statistics.median(runs["reference"])
        results[kind] = {**runs, "ratio": ratio}
        if progress:
            progress(f"{kind}: ours {statistics.median(runs['ours']):.1f} img/s, reference "
                     f"{statistics.median(runs['reference']):.1f} img/s, x{ratio:.2f}")
    settings = dict(size=size, num_images=num_images, batch_size=batch_size, repeats=repeats, threads=threads,
                    image_sizes=sorted({Image.open(io.BytesIO(d)).size for d in images})[:3])
    return {"settings": settings, "results": results}


def format_data_table(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [f"decode + augment, images per CPU-second, {s['threads']} thread(s), output {s['size']}px, {s['num_images']} JPEGs "
             f"(e.g. {s['image_sizes']}), batch {s['batch_size']}, median of {s['repeats']} (min-max)",
             f"{'recipe':<10} {'ours img/s':>22} {'reference img/s':>22} {'ours/reference':>15}"]
    for kind, r in report["results"].items():
        cells = []
        for name in ("ours", "reference"):
            values = r[name]
            cells.append(f"{statistics.median(values):8.1f} ({min(values):.0f}-{max(values):.0f})")
        lines.append(f"{kind:<10} {cells[0]:>22} {cells[1]:>22} {r['ratio']:>14.2f}x")
    lines.append("reference = transformers' run_mae.py pipeline (pretrain), run_image_classification-style Compose "
                 "(finetune with RandAugment, eval)")
    return "\n".join(lines)

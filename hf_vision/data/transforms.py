"""Augmentation recipes on torchvision.transforms.v2, arranged for throughput.

Per image we work on uint8 tensors: the random crop is drawn from the JPEG header's size *before* decoding,
so the decoder can skip DCT detail the crop would throw away (`draft`), and RandomResizedCrop/RandAugment run
on uint8. Conversion to float and normalisation happen once per batch in `Collate`; the batch-level recipes
(RandomErasing on normalised pixels, Mixup/CutMix, label smoothing) in `BatchAugment`, on training batches.

- pre-training (MAE): RandomResizedCrop(scale=(0.2, 1.0), bicubic) + horizontal flip;
- fine-tuning: RandomResizedCrop(scale=(0.08, 1.0), bicubic) + flip + RandAugment(2, 9), then per batch
  RandomErasing(0.25), Mixup(0.8)/CutMix(1.0) and label smoothing 0.1;
- evaluation: resize to size / crop_pct (bicubic) + center crop.
Mean, std and size come from the model's image processor (`PreprocessSpec.from_model`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from .decode import load_uint8

BICUBIC = v2.InterpolationMode.BICUBIC
# PIL resample codes (what image processors store) -> torchvision modes, for the evaluation resize
RESAMPLE_MODES = {0: v2.InterpolationMode.NEAREST, 2: v2.InterpolationMode.BILINEAR, 3: BICUBIC}


@dataclass(frozen=True)
class PreprocessSpec:
    """What the model expects: input size (height, width), normalisation, and the eval crop ratio."""

    size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pct: float = 0.875
    resample: int = 3  # PIL code of the evaluation resize (3 bicubic, 2 bilinear, 0 nearest)
    squash: bool = False  # resize straight to `size` (no aspect ratio, no crop), as a processor without a crop

    def __post_init__(self) -> None:
        # a zero (or non-finite) std divides pixels into inf/NaN: refuse it where a processor config is read
        if len(self.mean) != len(self.std):
            raise ValueError(f"image_mean={list(self.mean)} and image_std={list(self.std)} need one value per channel each")
        if not all(0.0 < s < float("inf") for s in self.std):
            raise ValueError(f"image_std={list(self.std)} must hold finite positive numbers")

    @classmethod
    def from_processor(cls, processor: Any, *, crop_pct: float | None = None) -> "PreprocessSpec":
        """From an image processor (`model.image_processor()`, `AutoImageProcessor.from_pretrained`). A centre-
        cropping processor gives the crop size and its crop fraction (crop / resized size) unless `crop_pct` is set."""
        resize = _as_dict(processor.size)
        if getattr(processor, "do_center_crop", False):
            crop = _as_dict(processor.crop_size)
            size = (crop["height"], crop["width"])
            resized = resize.get("shortest_edge") or resize.get("height")
            crop_pct = crop_pct if crop_pct is not None else size[0] / resized
        else:  # resized straight to the size: crop_pct 1 and no aspect ratio kept
            size = (resize["height"], resize["width"]) if resize.get("height") else (resize["shortest_edge"],) * 2
            crop_pct = 1.0
        resample = int(getattr(processor, "resample", 3) if getattr(processor, "resample", None) is not None else 3)
        if resample not in RESAMPLE_MODES:
            raise ValueError(f"processor resample={resample} is not one of {sorted(RESAMPLE_MODES)} (PIL codes)")
        squash = not getattr(processor, "do_center_crop", False) and "height" in resize
        return cls(tuple(size), tuple(processor.image_mean), tuple(processor.image_std),
                   0.875 if crop_pct is None else crop_pct, resample, squash)

    @classmethod
    def from_model(cls, model: Any, *, crop_pct: float | None = None) -> "PreprocessSpec":
        """From the model's own image processor (crop fraction and interpolation included)."""
        if crop_pct is None and getattr(model.config, "crop_mode", None) != "squash":
            crop_pct = getattr(model.config, "crop_pct", None)
        return cls.from_processor(model.image_processor(), crop_pct=crop_pct)


def _as_dict(size: Any) -> dict[str, int]:
    """A processor's size (a dict or transformers' SizeDict) as a plain dict of its set fields."""
    if isinstance(size, dict):
        return {k: v for k, v in size.items() if v is not None}
    return {k: getattr(size, k) for k in ("height", "width", "shortest_edge", "longest_edge")
            if getattr(size, k, None) is not None}


def pil_to_uint8(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> uint8 (3, H, W) view of an (H, W, 3) tensor: channels-last, the layout torch's uint8
    antialiased resize kernels are fastest on.

    The pixels are copied into torch-allocated memory: with numpy-owned buffers (`np.array(image)`) kept until
    a batch is collated, the fine-tuning benchmark took ~20-40 minor page faults per image (0.05-0.08 ms of
    system time per image), none this way.
    """
    array = np.asarray(image)  # (H, W, 3) read-only view of PIL's packed bytes
    out = torch.empty(array.shape, dtype=torch.uint8)
    out.numpy()[...] = array
    # (H, W, 3) -> (3, H, W)
    return out.permute(2, 0, 1)


def dense_channels_last(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 (3, H, W) of any strides -> the same image stored as dense (H, W, 3) bytes, viewed as (3, H, W).

    A no-op for decoder output; a crop view of it costs one cheap copy of the crop's rows.
    """
    # (3, H, W) -> (H, W, 3) contiguous -> (3, H, W) view
    return pixels.permute(1, 2, 0).contiguous().permute(2, 0, 1)


def uint8_to_pil(pixels: torch.Tensor) -> Image.Image:
    """uint8 (3, H, W) -> RGB PIL image; from channels-last storage the (H, W, 3) array needs no transposition
    (`TF.to_pil_image` on the same tensor measured 0.16 ms per 224px image, this about 0.02 ms)."""
    # (3, H, W) -> (H, W, 3)
    return Image.fromarray(np.ascontiguousarray(pixels.permute(1, 2, 0).numpy()))


class RandomResizedCropDecode:
    """Lazily opened PIL image -> augmented uint8 (3, H, W): crop drawn from the header, reduced decode."""

    def __init__(
        self,
        size: tuple[int, int],
        *,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        hflip: float = 0.5,
        randaugment: tuple[int, int] | None = None,
        reduced_decode: bool = True,
    ) -> None:
        self.size = tuple(size)
        self.crop = v2.RandomResizedCrop(self.size, scale=scale, ratio=ratio, interpolation=BICUBIC, antialias=True)
        self.flip = v2.RandomHorizontalFlip(hflip) if hflip > 0 else None
        # RandAugment runs on PIL images: its PIL kernels are about twice as fast as the uint8 tensor ones.
        self.randaugment = (v2.RandAugment(num_ops=randaugment[0], magnitude=randaugment[1])
                            if randaugment is not None else None)
        self.reduced_decode = reduced_decode

    def __call__(self, image: Image.Image) -> torch.Tensor:
        full_w, full_h = image.size
        params = self.crop.make_params([image])  # needs only the size: pixels are not decoded yet
        top, left, height, width = params["top"], params["left"], params["height"], params["width"]
        min_size = None
        if self.reduced_decode:
            # Largest reduction that keeps the crop at least as large as the output (never upsample).
            factor = max(1.0, min(height / self.size[0], width / self.size[1]))
            min_size = (full_w / factor, full_h / factor)
        pixels, factor = load_uint8(image, min_size=min_size)  # (3, h, w), h/w possibly reduced by the decoder
        if factor != 1.0:
            # Decoded pixel i covers original pixels [i * factor, (i + 1) * factor): map each edge of the box and
            # round it, so every edge stays within half a decoded pixel of where torchvision drew it.
            h, w = pixels.shape[1:]
            top, bottom = min(round(top / factor), h - 1), round((top + height) / factor)
            left, right = min(round(left / factor), w - 1), round((left + width) / factor)
            height, width = max(1, min(bottom, h) - top), max(1, min(right, w) - left)
        crop = dense_channels_last(TF.crop(pixels, top, left, height, width))
        # A dense channels-last input keeps torchvision's resize channels-last (and about 25% faster than on the
        # strided crop view), so the HWC bytes PIL needs for RandAugment are a free view.
        out = TF.resize(crop, list(self.size), interpolation=BICUBIC, antialias=True)
        if self.flip is not None:
            out = self.flip(out)
        if self.randaugment is not None:
            out = pil_to_uint8(self.randaugment(uint8_to_pil(out)))
        return out


class ResizeCenterCropDecode:
    """Lazily opened PIL image -> uint8 (3, H, W): resize to size / crop_pct, then center crop (evaluation)."""

    def __init__(self, size: tuple[int, int], *, crop_pct: float = 0.875, resample: int = 3, squash: bool = False,
                 reduced_decode: bool = True) -> None:
        if not 0 < crop_pct <= 1:
            raise ValueError(f"crop_pct={crop_pct} must be in (0, 1]")
        if resample not in RESAMPLE_MODES:
            raise ValueError(f"resample={resample} is not one of {sorted(RESAMPLE_MODES)} (PIL codes)")
        self.size = tuple(size)
        # floor(size / crop_pct), as the saved processor; the epsilon absorbs a crop_pct recovered as a ratio
        self.resize_to = tuple(math.floor(s / crop_pct + 1e-6) for s in self.size)
        self.interpolation = RESAMPLE_MODES[resample]
        self.squash = squash
        self.reduced_decode = reduced_decode

    def __call__(self, image: Image.Image) -> torch.Tensor:
        w, h = image.size
        if self.squash:
            target = self.size
        elif self.size[0] == self.size[1]:  # square output: shorter side -> resize_to, keeping the aspect ratio
            short = self.resize_to[0]
            # the longer side truncated, as transformers' image processors compute it (so they agree exactly)
            target = (int(h * short / w), short) if w <= h else (short, int(w * short / h))
        else:
            target = self.resize_to  # (height, width)
        min_size = (target[1], target[0]) if self.reduced_decode else None
        pixels, _ = load_uint8(image, min_size=min_size)
        pixels = TF.resize(pixels, list(target), interpolation=self.interpolation, antialias=True)
        return TF.center_crop(pixels, list(self.size))


# MAE Table 1e's pre-training augmentations; "crop-random" is the paper's (and our) default.
PRETRAIN_AUGMENTATIONS = ("none", "crop-fixed", "crop-random", "crop-color")


class ColorJitterAfter:
    """A uint8 (3, H, W) transform followed by colour jitter (MAE Table 1e's "crop + color jit")."""

    def __init__(self, transform: Any, *, strength: float = 0.4) -> None:
        self.transform = transform
        self.jitter = v2.ColorJitter(brightness=strength, contrast=strength, saturation=strength)

    def __call__(self, image: Any) -> torch.Tensor:
        return self.jitter(self.transform(image))


def pretrain_transform(spec: PreprocessSpec, *, augmentation: str = "crop-random",
                       scale: tuple[float, float] = (0.2, 1.0), hflip: float = 0.5, reduced_decode: bool = True):
    """MAE pre-training: RandomResizedCrop(scale (0.2, 1), bicubic) + horizontal flip, or another of MAE Table 1e's
    `augmentation`s: "none" (the evaluation resize + centre crop, no flip), "crop-fixed" (a fixed-size random crop
    of 0.766 of the area, as 224 of 256, + flip) or "crop-color" (the default + colour jitter 0.4)."""
    if augmentation not in PRETRAIN_AUGMENTATIONS:
        raise ValueError(f"augmentation={augmentation!r} is not one of {', '.join(PRETRAIN_AUGMENTATIONS)}")
    if augmentation == "none":
        return eval_transform(spec, reduced_decode=reduced_decode)
    if augmentation == "crop-fixed":
        return RandomResizedCropDecode(spec.size, scale=(0.766, 0.766), ratio=(1.0, 1.0), hflip=hflip,
                                       reduced_decode=reduced_decode)
    crop = RandomResizedCropDecode(spec.size, scale=scale, hflip=hflip, reduced_decode=reduced_decode)
    return ColorJitterAfter(crop) if augmentation == "crop-color" else crop


def finetune_transform(spec: PreprocessSpec, *, scale: tuple[float, float] = (0.08, 1.0), hflip: float = 0.5,
                       randaugment: tuple[int, int] | None = (2, 9), reduced_decode: bool = True
                       ) -> RandomResizedCropDecode:
    """MAE fine-tuning, per image: RandomResizedCrop + flip + RandAugment (num_ops, magnitude)."""
    return RandomResizedCropDecode(spec.size, scale=scale, hflip=hflip, randaugment=randaugment,
                                   reduced_decode=reduced_decode)


def eval_transform(spec: PreprocessSpec, *, reduced_decode: bool = True) -> ResizeCenterCropDecode:
    return ResizeCenterCropDecode(spec.size, crop_pct=spec.crop_pct, resample=spec.resample, squash=spec.squash,
                                  reduced_decode=reduced_decode)


class Collate:
    """Examples {"pixel_values": uint8 (3, H, W), "labels": int} -> {"pixel_values": normalised float32 (B, 3, H, W),
    "labels": long (B,)}. Normalising once per batch is cheaper than per image."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * 255.0
        self.inv_std = 1.0 / (torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1) * 255.0)

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> float32 normalised (a new tensor; `pixels` is left untouched).

        In place on a fresh copy: with one thread, torch's out-of-place broadcast `(x - mean) * inv_std`
        measured about 25x slower than these in-place ops on (16, 3, 224, 224) (0.5 vs 0.02 ms per image).
        """
        return pixels.to(torch.float32, copy=True).sub_(self.mean).mul_(self.inv_std)

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = {"pixel_values": self.normalize(torch.stack([e["pixel_values"] for e in examples]))}
        if "labels" in examples[0]:
            batch["labels"] = torch.tensor([e["labels"] for e in examples], dtype=torch.long)
        return batch


class BatchAugment:
    """MAE fine-tuning's batch-level augmentation, applied to training batches only (evaluation sees none).

    RandomErasing on normalised pixels (random-normal fill, MAE's "pixel" mode, a box per sample), then Mixup
    or CutMix (one of them per batch, with equal probability when both are on) and label smoothing. Labels
    become soft targets (B, num_classes), which our classification models' loss accepts.
    """

    def __init__(self, num_classes: int, *, random_erasing: float = 0.0, mixup_alpha: float = 0.0,
                 cutmix_alpha: float = 0.0, label_smoothing: float = 0.0) -> None:
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing={label_smoothing} must be in [0, 1)")
        if num_classes < 2:
            raise ValueError(f"num_classes={num_classes} must be >= 2 for batch-level augmentation")
        self.erase = v2.RandomErasing(p=random_erasing, value="random") if random_erasing > 0 else None
        mixers = []
        if mixup_alpha > 0:
            mixers.append(v2.MixUp(alpha=mixup_alpha, num_classes=num_classes))
        if cutmix_alpha > 0:
            mixers.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
        self.mix = v2.RandomChoice(mixers) if mixers else None
        self.num_classes, self.label_smoothing = num_classes, label_smoothing

    @property
    def active(self) -> bool:
        return self.erase is not None or self.mix is not None or self.label_smoothing > 0

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        pixels, labels = batch["pixel_values"], batch.get("labels")
        if self.erase is not None:
            pixels = torch.stack([self.erase(p) for p in pixels])
        if labels is not None and labels.ndim == 1:
            if self.mix is not None:
                pixels, labels = self.mix(pixels, labels)
            if self.label_smoothing > 0:
                if labels.ndim == 1:
                    labels = torch.nn.functional.one_hot(labels, self.num_classes).float()
                labels = labels * (1.0 - self.label_smoothing) + self.label_smoothing / self.num_classes
        out = dict(batch)
        out["pixel_values"] = pixels
        if labels is not None:
            out["labels"] = labels
        return out

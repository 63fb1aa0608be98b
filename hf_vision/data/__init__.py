"""Data: sources (Hub, local files, embedded digits) -> decoded, augmented, sharded, resumable batches."""
from __future__ import annotations

from .decode import UndecodableImage, load_rgb, open_image, to_rgb
from .embedded import digits_dir
from .loader import BadImage, ImageStream, StreamLoader
from .sources import ImageSource, available_splits, load_image_source
from .transforms import (
    BatchAugment,
    Collate,
    PreprocessSpec,
    RandomResizedCropDecode,
    ResizeCenterCropDecode,
    eval_transform,
    finetune_transform,
    pretrain_transform,
)

__all__ = [
    "UndecodableImage", "load_rgb", "open_image", "to_rgb", "digits_dir",
    "BadImage", "ImageStream", "StreamLoader", "ImageSource", "available_splits", "load_image_source",
    "BatchAugment", "Collate", "PreprocessSpec", "RandomResizedCropDecode", "ResizeCenterCropDecode",
    "eval_transform", "finetune_transform", "pretrain_transform",
]

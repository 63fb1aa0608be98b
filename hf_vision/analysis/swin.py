"""Swin analyses: per-window attention of one stage and the shifted-window partition with its region mask.

Waiting for modeling/swin; until then every entry point raises NotImplementedError.
"""
from __future__ import annotations


def swin_figures(model, pixel_values, display, names, output_dir, *, stage: int = 0, progress: bool = True):
    raise NotImplementedError("Swin window analyses are not implemented yet (modeling/swin has not landed)")

"""The papers' analyses, one call away for any hf-vision model (ViT Figures 6-7, MAE Figures 2-4, Swin windows).

Computations (`embeddings`, `attention`, `swin`, `mae`) return numpy arrays; `plots` draws them with matplotlib
(imported only when drawing); `report.visualize` runs everything that fits a model and writes an index.html.
"""
from __future__ import annotations

from .attention import attention_distances, attention_rollout, patch_distances, rollout_map
from .embeddings import patch_embedding_components, position_embedding_similarity
from .inspect_model import (
    AnalysisNotApplicable,
    describe,
    encoder_attentions,
    patch_projection_weight,
    position_embedding_table,
    preprocess,
)
from .mae import reconstruction_panels
from .report import FigureRecord, Skipped, default_model_dir, load_images, load_model, visualize, write_index
from .swin import (
    all_stage_windows,
    region_attention_mask,
    shift_regions,
    shifted_window_index,
    stage_windows,
    window_attention_distances,
    window_attention_map,
    window_index,
)

__all__ = [
    "AnalysisNotApplicable", "FigureRecord", "Skipped",
    "attention_distances", "attention_rollout", "describe", "encoder_attentions", "load_images", "load_model",
    "patch_distances", "patch_embedding_components", "patch_projection_weight", "position_embedding_similarity",
    "position_embedding_table", "preprocess", "rollout_map", "visualize", "write_index",
    "reconstruction_panels", "default_model_dir",
    "all_stage_windows", "region_attention_mask", "shift_regions", "shifted_window_index", "stage_windows",
    "window_attention_distances", "window_attention_map", "window_index",
]

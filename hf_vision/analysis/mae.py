"""MAE reconstruction grids (MAE Figures 2-4). Waiting for modeling/mae's `reconstruct`."""
from __future__ import annotations


def mae_figures(model, pixel_values, names, output_dir, *, mask_ratios=(0.5, 0.75, 0.9), seed=0, progress=True):
    raise NotImplementedError("MAE reconstruction grids are not implemented yet (modeling/mae has not landed)")

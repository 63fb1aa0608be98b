"""MAE reconstruction grids (MAE Figures 2-4): original / masked / reconstruction / reconstruction + visible,
for several images and mask ratios, through the model's own `reconstruct`."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .inspect_model import AnalysisNotApplicable, image_mean_std, with_mask_ratio


def reconstruction_panels(
    model: nn.Module, pixel_values: torch.Tensor, mask_ratio: float, *, noise: torch.Tensor | None = None
) -> np.ndarray:
    """(B, 4, H, W, C) images in [0, 1]: original, masked input, reconstruction, reconstruction + visible."""
    if not hasattr(model, "reconstruct"):
        raise AnalysisNotApplicable(
            f"{type(model).__name__} has no `reconstruct`: load the MAE checkpoint as MAEForPreTraining "
            "(the decoder is needed to reconstruct)"
        )
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio={mask_ratio} must be in [0, 1)")
    out = with_mask_ratio(model, mask_ratio).reconstruct(pixel_values, noise)
    mean, std = image_mean_std(model)
    # (B, C, H, W) -> (B, H, W, C)
    original = np.clip(pixel_values.permute(0, 2, 3, 1).cpu().numpy() * std + mean, 0, 1)
    panels = [original] + [
        getattr(out, name).permute(0, 2, 3, 1).float().cpu().numpy() for name in ("masked", "reconstruction", "pasted")
    ]
    masked = panels[1].copy()
    keep = out.mask.permute(0, 2, 3, 1).cpu().numpy() < 0.5  # (B, H, W, 1): grey where a patch was removed
    panels[1] = np.where(keep, masked, 0.5)
    return np.stack(panels, axis=1)


def mae_figures(
    model: nn.Module,
    pixel_values: torch.Tensor,
    names: list[str],
    output_dir: str | Path,
    *,
    mask_ratios: Sequence[float] = (0.5, 0.75, 0.9),
    seed: int = 0,
    progress: bool = True,
) -> list:
    """One PNG per mask ratio; the same noise per image for every ratio, so the grids differ only by ratio."""
    from . import plots
    from .report import FigureRecord

    generator = torch.Generator().manual_seed(seed)
    patch = model.config.patch_size
    num_patches = (pixel_values.shape[-2] // patch) * (pixel_values.shape[-1] // patch)
    noise = torch.rand(pixel_values.shape[0], num_patches, generator=generator)
    per_ratio: dict[float, list[np.ndarray]] = {r: [] for r in mask_ratios}
    for i in tqdm(range(pixel_values.shape[0]), desc="MAE reconstructions", unit="image", disable=not progress):
        for ratio in mask_ratios:
            per_ratio[ratio].append(reconstruction_panels(model, pixel_values[i:i + 1], ratio, noise=noise[i:i + 1]))
    records = []
    for ratio in mask_ratios:
        file = f"mae_reconstruction_mask{round(100 * ratio):02d}.png"
        fig = plots.plot_mae_reconstruction(np.concatenate(per_ratio[ratio]), names, mask_ratio=ratio)
        plots.save_figure(fig, Path(output_dir) / file)
        records.append(FigureRecord(file, f"MAE at mask ratio {ratio:.2f}: original, masked input (grey = removed), "
                                          "reconstruction, and reconstruction with the visible patches pasted back."))
    return records

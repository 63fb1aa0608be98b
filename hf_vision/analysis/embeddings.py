"""What the first layers learned (ViT paper, Figure 7 left and centre), as arrays.

- `patch_embedding_components`: principal components of the patch projection's filters. Each filter maps a
  C x p x p pixel patch to one embedding channel; the leading components of the D filters look like smooth
  basis functions (colour blobs, low-frequency gratings), which is the paper's point.
- `position_embedding_similarity`: cosine similarity of every position's embedding with every other; learned
  embeddings rediscover the 2-D grid (high similarity along the same row and column).
"""
from __future__ import annotations

import numpy as np
import torch


def patch_embedding_components(
    weight: torch.Tensor, num_components: int = 28
) -> tuple[np.ndarray, np.ndarray]:
    """Principal components of the patch filters.

    weight: (D, C, ph, pw), one filter per embedding channel (a Conv2d patch projection's weight).
    Returns (components (k, ph, pw, C), explained variance ratio (k,)) with k = min(num_components, rank bound),
    components ordered by decreasing variance, each a unit vector in filter space, signed so that its entry of
    largest magnitude is positive (PCA components are defined only up to sign).
    """
    if weight.ndim != 4:
        raise ValueError(
            f"patch projection weight must be (dim, channels, patch_h, patch_w), got {tuple(weight.shape)}"
        )
    if num_components < 1:
        raise ValueError(f"num_components={num_components} must be a positive integer")
    d, c, ph, pw = weight.shape
    # (D, C, ph, pw) -> (D, C*ph*pw): one row per filter
    filters = weight.detach().to(torch.float64).cpu().reshape(d, c * ph * pw)
    centred = filters - filters.mean(dim=0, keepdim=True)
    _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
    variance = singular**2
    k = min(num_components, vh.shape[0])
    components = vh[:k]
    peak = components.gather(1, components.abs().argmax(dim=1, keepdim=True))
    components = components * torch.sign(peak)
    ratio = (variance[:k] / variance.sum().clamp_min(torch.finfo(torch.float64).tiny)).numpy()
    # (k, C*ph*pw) -> (k, ph, pw, C): image layout for drawing
    return components.reshape(k, c, ph, pw).permute(0, 2, 3, 1).numpy(), ratio


def position_embedding_similarity(
    pos_embed: torch.Tensor, grid_size: tuple[int, int], *, num_prefix_tokens: int = 0
) -> np.ndarray:
    """Cosine similarity between the position embeddings of every pair of grid positions.

    pos_embed: (prefix + H*W, C) or (1, prefix + H*W, C), row-major over the grid; prefix tokens are dropped.
    Returns (H, W, H, W): entry [i, j] is the (H, W) similarity map of position (i, j) with all positions.
    """
    table = pos_embed.detach().to(torch.float64).cpu()
    if table.ndim == 3:
        table = table[0]
    gh, gw = grid_size
    grid = table[num_prefix_tokens:]
    if grid.shape[0] != gh * gw:
        raise ValueError(
            f"position embedding has {grid.shape[0]} grid positions after {num_prefix_tokens} prefix token(s), "
            f"expected grid_size {gh}x{gw}={gh * gw}"
        )
    unit = grid / grid.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    # (H*W, H*W) -> (H, W, H, W)
    return (unit @ unit.T).reshape(gh, gw, gh, gw).numpy()

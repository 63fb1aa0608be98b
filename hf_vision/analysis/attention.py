"""Where the heads look: mean attention distance (ViT Figure 7 right) and attention rollout (Figure 6).

Both take the per-layer attention weights a model returns with `output_attentions=True`: a sequence of
(B, heads, N, N) tensors over prefix tokens (class token) followed by a row-major H x W grid of patches.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

HEAD_FUSIONS = ("mean", "max", "min")
ROLLOUT_SOURCES = ("cls", "mean")


def patch_distances(grid_size: tuple[int, int], patch_size: int | tuple[int, int]) -> torch.Tensor:
    """(H*W, H*W) Euclidean distance in pixels between patch centres, row-major over the grid."""
    gh, gw = grid_size
    sy, sx = (patch_size, patch_size) if isinstance(patch_size, int) else patch_size
    rows, cols = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    # (H, W) x2 -> (H*W, 2) pixel coordinates of the patch centres (the common offset cancels)
    centres = torch.stack([rows.reshape(-1) * sy, cols.reshape(-1) * sx], dim=1).to(torch.float64)
    return torch.cdist(centres, centres)


def attention_distances(
    attentions: Sequence[torch.Tensor],
    grid_size: tuple[int, int],
    patch_size: int | tuple[int, int],
    *,
    num_prefix_tokens: int = 0,
) -> np.ndarray:
    """Mean attention distance per image, layer and head: (B, layers, heads), in pixels.

    For each query patch, the attention-weighted average of the distance to the patches it attends to, then the
    mean over query patches. Prefix tokens have no position: their rows and columns are dropped and each
    query's weights over patches renormalised to sum to one (so attention parked on the class token counts
    neither as near nor as far).
    """
    if not attentions:
        raise ValueError("attentions is empty: run the model with output_attentions=True")
    dist = patch_distances(grid_size, patch_size)
    n = dist.shape[0]
    per_layer = []
    for layer, weights in enumerate(attentions):
        if weights.ndim != 4 or weights.shape[-1] != weights.shape[-2]:
            raise ValueError(f"attentions[{layer}] must be (batch, heads, tokens, tokens), got {tuple(weights.shape)}")
        if weights.shape[-1] != num_prefix_tokens + n:
            raise ValueError(
                f"attentions[{layer}] covers {weights.shape[-1]} tokens, expected {num_prefix_tokens} prefix + "
                f"{grid_size[0]}x{grid_size[1]} patches (global attention over the whole grid)"
            )
        patch = weights.detach().to(torch.float64).cpu()[..., num_prefix_tokens:, num_prefix_tokens:]
        patch = patch / patch.sum(dim=-1, keepdim=True).clamp_min(1e-12)
        # (B, heads, Nq, Nk) * (Nq, Nk) -> (B, heads): distance per query, then the mean over queries
        per_layer.append((patch * dist).sum(dim=-1).mean(dim=-1))
    return torch.stack(per_layer, dim=1).numpy()


def attention_rollout(
    attentions: Sequence[torch.Tensor], *, head_fusion: str = "mean", residual: bool = True
) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020): how much each input token flows into each output token.

    Per layer the heads are fused (the ViT paper averages them), the residual connection is modelled as
    0.5 * A + 0.5 * I with rows renormalised, and the layers are multiplied: R = A_L @ ... @ A_1.
    Returns (B, N, N); row i says where token i of the last layer draws from in the input.
    """
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion={head_fusion!r} is not supported; accepted values: {HEAD_FUSIONS}")
    if not attentions:
        raise ValueError("attentions is empty: run the model with output_attentions=True")
    result = None
    for weights in attentions:
        w = weights.detach().to(torch.float64).cpu()
        fused = {"mean": w.mean(dim=1), "max": w.amax(dim=1), "min": w.amin(dim=1)}[head_fusion]
        if residual:
            eye = torch.eye(fused.shape[-1], dtype=fused.dtype)
            fused = 0.5 * fused + 0.5 * eye
        fused = fused / fused.sum(dim=-1, keepdim=True).clamp_min(1e-12)
        if result is not None and result.shape != fused.shape:
            raise ValueError(
                f"layers attend over different token sets ({tuple(result.shape)} vs {tuple(fused.shape)}): "
                "rollout needs one global token sequence through all layers"
            )
        result = fused if result is None else fused @ result
    return result


def rollout_map(
    rollout: torch.Tensor, grid_size: tuple[int, int], *, num_prefix_tokens: int, source: str = "cls"
) -> np.ndarray:
    """(B, N, N) rollout -> (B, H, W) relevance of each input patch, normalised to max 1 per image.

    source "cls" reads the class token's row; "mean" averages the patch tokens' rows (what global average
    pooling feeds the head).
    """
    if source not in ROLLOUT_SOURCES:
        raise ValueError(f"source={source!r} is not supported; accepted values: {ROLLOUT_SOURCES}")
    if source == "cls" and num_prefix_tokens < 1:
        raise ValueError("source='cls' needs a class token (num_prefix_tokens >= 1); use source='mean' for GAP")
    gh, gw = grid_size
    if rollout.shape[-1] != num_prefix_tokens + gh * gw:
        raise ValueError(
            f"rollout covers {rollout.shape[-1]} tokens, expected {num_prefix_tokens} + {gh}x{gw} patches"
        )
    rows = rollout[:, 0] if source == "cls" else rollout[:, num_prefix_tokens:].mean(dim=1)
    patch = rows[:, num_prefix_tokens:]
    patch = patch / patch.amax(dim=-1, keepdim=True).clamp_min(1e-12)
    # (B, H*W) -> (B, H, W)
    return patch.reshape(-1, gh, gw).numpy()

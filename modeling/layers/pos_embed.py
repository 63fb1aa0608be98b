"""Position-embedding helpers: fixed 2-D sin-cos tables and bicubic resampling of learned grids.

The sin-cos layout follows the official MAE code (first half of the channels encodes the column, second
half the row; prefix tokens get zeros), so converted MAE checkpoints stay exact.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def sincos_1d(dim: int, positions: torch.Tensor, *, temperature: float = 10000.0) -> torch.Tensor:
    """(N,) positions -> (N, dim) with [sin | cos] halves."""
    if dim % 2:
        raise ValueError(f"sin-cos dim={dim} must be even")
    omega = 1.0 / temperature ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
    angles = positions.to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_2d(
    dim: int, grid_size: tuple[int, int], *, num_prefix_tokens: int = 0, temperature: float = 10000.0
) -> torch.Tensor:
    """Fixed table (1, prefix + H*W, dim), row-major over the (H, W) grid, zeros for prefix tokens."""
    if dim % 4:
        raise ValueError(f"2-D sin-cos needs hidden size divisible by 4, got {dim}")
    gh, gw = grid_size
    rows, cols = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    emb = torch.cat(
        [sincos_1d(dim // 2, cols.reshape(-1), temperature=temperature),
         sincos_1d(dim // 2, rows.reshape(-1), temperature=temperature)],
        dim=1,
    )
    emb = torch.cat([torch.zeros(num_prefix_tokens, dim, dtype=emb.dtype), emb], dim=0)
    return emb.float().unsqueeze(0)


def resample_pos_embed(
    pos_embed: torch.Tensor, new_size: tuple[int, int], old_size: tuple[int, int], *, num_prefix_tokens: int = 1
) -> torch.Tensor:
    """Bicubically resize the grid part of (1, prefix + H*W, C) to another (H', W'), keeping prefix tokens.

    Used both at forward time (`interpolate_pos_encoding`) and when a checkpoint is loaded at a new resolution.
    """
    if tuple(new_size) == tuple(old_size):
        return pos_embed
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    oh, ow = old_size
    if grid.shape[1] != oh * ow:
        raise ValueError(f"position embedding has {grid.shape[1]} grid tokens, expected {oh}x{ow}")
    dim = grid.shape[-1]
    dtype = grid.dtype
    # (1, H*W, C) -> (1, C, H, W)
    grid = grid.reshape(1, oh, ow, dim).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=tuple(new_size), mode="bicubic", align_corners=False)
    # (1, C, H', W') -> (1, H'*W', C)
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, dim).to(dtype)
    return torch.cat([prefix, grid], dim=1)

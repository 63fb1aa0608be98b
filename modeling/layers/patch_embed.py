"""Non-overlapping patch projection: a strided conv turns an image into a grid of tokens."""
from __future__ import annotations

import torch
from torch import nn


class PatchEmbed(nn.Module):
    """(B, C_in, H, W) -> (B, dim, H / patch, W / patch); the caller flattens, so hybrids can share the interface."""

    def __init__(self, in_channels: int, dim: int, patch_size: int | tuple[int, int], *, bias: bool = True) -> None:
        super().__init__()
        self.patch_size = (patch_size, patch_size) if isinstance(patch_size, int) else tuple(patch_size)
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=self.patch_size, stride=self.patch_size, bias=bias)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        h, w = pixel_values.shape[-2:]
        ph, pw = self.patch_size
        if h % ph or w % pw:
            raise ValueError(f"input size ({h}, {w}) must be divisible by patch_size={self.patch_size}")
        return self.proj(pixel_values)

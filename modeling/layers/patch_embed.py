"""Non-overlapping patch projection: a strided conv turns an image into a grid of tokens."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config_checks import pair


class PatchEmbed(nn.Module):
    """(B, C_in, H, W) -> (B, dim, H / patch, W / patch); the caller flattens, so hybrids can share the interface."""

    def __init__(self, in_channels: int, dim: int, patch_size: int | tuple[int, int], *, bias: bool = True) -> None:
        super().__init__()
        self.patch_size = pair(patch_size, "patch_size")
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=self.patch_size, stride=self.patch_size, bias=bias)

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """(rows, columns) of patches of an image; sides must be multiples of the patch size."""
        ph, pw = self.patch_size
        if height % ph or width % pw:
            raise ValueError(f"input size ({height}, {width}) must be divisible by patch_size={self.patch_size}")
        return height // ph, width // pw

    def forward(self, pixel_values: torch.Tensor, *, index: torch.Tensor | None = None) -> torch.Tensor:
        """`index` (B, K): only those patches, (B, K, dim) (see `embed_patches`). Callers go through the module
        call either way, so hooks on it (e.g. transformers' `enable_input_require_grads`) see every embedding."""
        if index is not None:
            return self.embed_patches(pixel_values, index)
        self.grid(*pixel_values.shape[-2:])
        return self.proj(pixel_values)

    def embed_patches(self, pixel_values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W), index (B, K) into the row-major patch grid -> (B, K, dim): only those patches projected.
        The projection acts on each patch alone, so this equals `forward`, flattened, then gathered (MAE's encoder
        needs 25% of the patches: a quarter of the work)."""
        b, c, h, w = pixel_values.shape
        (gh, gw), (ph, pw) = self.grid(h, w), self.patch_size
        # (B, C, H, W) -> (B, C, gh, ph, gw, pw) -> (B, gh, gw, C, ph, pw): a view; indexing copies only those patches
        patches = pixel_values.view(b, c, gh, ph, gw, pw).permute(0, 2, 4, 1, 3, 5)
        patches = patches[torch.arange(b, device=index.device)[:, None], index // gw, index % gw]
        weight = self.proj.weight
        # (B, K, C, ph, pw) -> (B, K, C*ph*pw) and (dim, C, ph, pw) -> (dim, C*ph*pw): the same flattening order
        return F.linear(patches.reshape(b, index.shape[1], -1), weight.view(weight.shape[0], -1), self.proj.bias)

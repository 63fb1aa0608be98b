"""Swin's layers: channels-last patch embedding, patch merging, window attention with the relative-position
bias, the (shifted-)window block and a stage of blocks. Shapes are (B, H, W, C) between blocks."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

from ..layers.attention import Attention
from ..layers.drop_path import DropPath
from ..layers.mlp import Mlp
from ..layers.patch_embed import PatchEmbed
from .windows import WindowCache, WindowPlan, effective_window, permute_tokens


class SwinPatchEmbed(PatchEmbed):
    """(B, C_in, H, W) -> (B, H/p, W/p, dim), channels-last; sides that are not multiples of p are zero-padded."""

    def __init__(self, in_channels: int, dim: int, patch_size: int, *, norm: bool = True, eps: float = 1e-5) -> None:
        super().__init__(in_channels, dim, patch_size)
        self.norm = nn.LayerNorm(dim, eps=eps) if norm else nn.Identity()

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        h, w = pixel_values.shape[-2:]
        ph, pw = self.patch_size
        if h % ph or w % pw:
            pixel_values = F.pad(pixel_values, (0, -w % pw, 0, -h % ph))
        # (B, dim, H', W') -> (B, H', W', dim)
        return self.norm(self.proj(pixel_values).permute(0, 2, 3, 1))


class PatchMerging(nn.Module):
    """(B, H, W, C) -> (B, ceil(H/2), ceil(W/2), 2C): concatenate each 2x2 neighbourhood, LayerNorm, Linear."""

    def __init__(self, dim: int, *, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim, eps=eps)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
            h, w = h + h % 2, w + w % 2
        # (B, H, W, C) -> (B, H/2, 2[row], W/2, 2[col], C) -> (B, H/2, W/2, 2[col], 2[row], C) -> (B, H/2, W/2, 4C):
        # the official concat order x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]
        x = x.view(b, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 4, 2, 5).reshape(b, h // 2, w // 2, 4 * c)
        return self.reduction(self.norm(x))


class WindowAttention(Attention):
    """The shared `Attention` on windows folded into the batch axis, plus the learned relative-position bias
    table ((2M-1)^2, heads) that is added, with the shift mask, as a per-window `attn_bias` (`groups` windows).

    Fused kernels (sdpa) need the bias at batch size, one copy per image. When the attention weights are
    materialised anyway (eager, `output_attentions`, or CPU training, where sdpa has no fused kernel for a
    bias that needs a gradient and runs the same math), `forward` takes the eager path, which broadcasts the
    per-window bias over the batch instead, as the official code does, and skips that copy. The same holds for
    an eval-mode forward with gradients enabled (the table still needs one); there the fused path would also
    break `torch.onnx.export` (dynamo), which records the kernel's output layout at trace time and decomposes
    sdpa to another layout.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, *, qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, relative_position_bias: bool = True) -> None:
        super().__init__(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop)
        self.window_size = window_size
        self.relative_position_bias_table = (
            nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads)) if relative_position_bias else None
        )

    def window_bias(self, plan: WindowPlan) -> torch.Tensor | None:
        """Relative bias (heads, N, N) plus shift mask (nW, N, N) -> (nW | 1, heads | 1, N, N), or None."""
        n = plan.window * plan.window
        bias = None
        if self.relative_position_bias_table is not None:
            # (N*N, heads) -> (N, N, heads) -> (1, heads, N, N)
            bias = self.relative_position_bias_table[plan.index].view(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        if plan.mask is None:
            return bias
        mask = plan.mask.unsqueeze(1)  # (nW, 1, N, N)
        return mask if bias is None else mask + bias.to(mask.dtype)

    def forward(
        self,
        x: torch.Tensor,
        plan: WindowPlan,
        *,
        attn_implementation: str = "sdpa",
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B*nW, N, C) windows -> (B*nW, N, C), plus weights (B, nW, heads, N, N) when asked for."""
        num_windows = (plan.padded[0] // plan.window) * (plan.padded[1] // plan.window)
        table = self.relative_position_bias_table
        if x.device.type == "cpu" and torch.is_grad_enabled() and (
                self.training or (table is not None and table.requires_grad)):
            attn_implementation = "eager"
        return super().forward(x, self.window_bias(plan), attn_implementation=attn_implementation,
                               output_attentions=output_attentions, groups=num_windows)


class SwinBlock(GradientCheckpointingLayer):
    """(B, H, W, C) -> (B, H, W, C): x + DropPath(W-MSA(LN(x))), then x + DropPath(MLP(LN(x)))."""

    def __init__(self, dim: int, num_heads: int, window_size: int, mlp_hidden_dim: int, *, shifted: bool,
                 qkv_bias: bool = True, act: str = "gelu", drop: float = 0.0, attn_drop: float = 0.0,
                 drop_path: float = 0.0, eps: float = 1e-5, relative_position_bias: bool = True) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift_size = window_size // 2 if shifted else 0  # the configured shift; the used one is per call
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = WindowAttention(dim, num_heads, window_size, qkv_bias=qkv_bias, attn_drop=attn_drop,
                                    proj_drop=drop, relative_position_bias=relative_position_bias)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, mlp_hidden_dim, act=act, drop=drop)

    def plan(self, height: int, width: int, cache: WindowCache, device: torch.device, dtype: torch.dtype, *,
             always_partition: bool = False) -> WindowPlan:
        window, shift = effective_window(height, width, self.window_size, self.shift_size,
                                         always_partition=always_partition)
        padded = (-(-height // window) * window, -(-width // window) * window)  # integer ceil: SymInt-safe
        index = cache.index(window, self.window_size, device) if self.attn.relative_position_bias_table is not None \
            else None
        mask = cache.mask(*padded, window, shift, device, dtype) if shift else None
        order, inverse = cache.order(*padded, window, shift, device)
        return WindowPlan(window, shift, padded, index, mask, order, inverse)

    def forward(self, x: torch.Tensor, plan: WindowPlan, *, attn_implementation: str = "sdpa",
                output_attentions: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, h, w, c = x.shape
        (hp, wp), window, shift = plan.padded, plan.window, plan.shift
        y = self.norm1(x)
        if (hp, wp) != (h, w):
            y = F.pad(y, (0, 0, 0, wp - w, 0, hp - h))
        # (B, Hp, Wp, C) -> (B, Hp*Wp, C) in shifted-window order -> (B*nW, w*w, C)
        windows = permute_tokens(y.reshape(b, hp * wp, c), plan.order, plan.inverse).view(-1, window * window, c)
        out, weights = self.attn(windows, plan, attn_implementation=attn_implementation,
                                 output_attentions=output_attentions)
        # (B*nW, w*w, C) -> (B, Hp*Wp, C) row-major, shift undone -> (B, Hp, Wp, C)
        y = permute_tokens(out.view(b, hp * wp, c), plan.inverse, plan.order).view(b, hp, wp, c)
        if (hp, wp) != (h, w):
            y = y[:, :h, :w]
        x = x + self.drop_path(y)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x, weights  # weights: (B, nW, heads, N, N) or None


class SwinStage(nn.Module):
    """Blocks alternating regular and shifted windows, then (except the last stage) patch merging."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, mlp_hidden_dim: int, *,
                 downsample: bool, shifted_windows: bool = True, drop_path: list[float] | None = None,
                 **block_kwargs) -> None:
        super().__init__()
        drop_path = drop_path or [0.0] * depth
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window_size, mlp_hidden_dim, shifted=shifted_windows and i % 2 == 1,
                      drop_path=drop_path[i], **block_kwargs)
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim, eps=block_kwargs.get("eps", 1e-5)) if downsample else None

    def forward(self, x: torch.Tensor, cache: WindowCache, *, always_partition: bool = False,
                attn_implementation: str = "sdpa", output_attentions: bool = False,
                hidden_views: list | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
        """Returns (output after merging, output before merging (this stage's features), attentions).
        `hidden_views`: a list to which the features' (flat, channels-first) views are appended (see
        `graph_views`)."""
        _, h, w, _ = x.shape
        plans: dict[bool, WindowPlan] = {}
        attentions = ()
        for block in self.blocks:
            key = bool(block.shift_size)
            if key not in plans:  # one plan per kind of block: masks and index are shared by the stage
                plans[key] = block.plan(h, w, cache, x.device, x.dtype, always_partition=always_partition)
            x, weights = block(x, plans[key], attn_implementation=attn_implementation,
                               output_attentions=output_attentions)
            if output_attentions:
                attentions += (weights,)
        if hidden_views is not None:
            x = graph_views(x, hidden_views)
        features = x
        if self.downsample is not None:
            x = self.downsample(x)
        return x, features, attentions


def graph_views(x: torch.Tensor, views: list) -> torch.Tensor:
    """Append x's (B, H*W, C) and (B, C, H, W) views to `views` and return x (B, H, W, C) again as a view of
    them: whatever reads the result goes through both, so returned hidden states are on the graph (as in
    transformers' Swin, `retain_grad()` on them gets a gradient). Views only: no copy."""
    _, h, w, _ = x.shape
    flat = x.flatten(1, 2)  # (B, H, W, C) -> (B, H*W, C)
    reshaped = flat.unflatten(1, (h, w)).permute(0, 3, 1, 2)  # (B, H*W, C) -> (B, H, W, C) -> (B, C, H, W)
    views.append((flat, reshaped))
    return reshaped.permute(0, 2, 3, 1)  # (B, C, H, W) -> (B, H, W, C)

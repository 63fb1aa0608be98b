"""Pre-norm transformer block and the plain encoder stack that ViT, the hybrid and MAE share."""
from __future__ import annotations

import torch
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

from .attention import Attention
from .drop_path import DropPath
from .mlp import Mlp


class Block(GradientCheckpointingLayer):
    """x + DropPath(Attn(LN(x))), then x + DropPath(MLP(LN(x))); (B, N, dim) -> (B, N, dim)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_hidden_dim: int,
        *,
        qkv_bias: bool = True,
        act: str = "gelu",
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, mlp_hidden_dim, act=act, drop=drop)

    def forward(
        self,
        x: torch.Tensor,
        attn_bias: torch.Tensor | None = None,
        *,
        attn_implementation: str = "sdpa",
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        y, weights = self.attn(
            self.norm1(x), attn_bias, attn_implementation=attn_implementation, output_attentions=output_attentions
        )
        x = x + self.drop_path(y)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x, weights


class Encoder(nn.Module):
    """A stack of `Block`s with a linearly increasing drop-path rate, collecting optional per-layer outputs."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        mlp_hidden_dim: int,
        *,
        qkv_bias: bool = True,
        act: str = "gelu",
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path_rate: float = 0.0,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(
            Block(dim, num_heads, mlp_hidden_dim, qkv_bias=qkv_bias, act=act, drop=drop, attn_drop=attn_drop,
                  drop_path=rate, eps=eps)
            for rate in rates
        )

    def forward(
        self,
        x: torch.Tensor,
        *,
        attn_implementation: str = "sdpa",
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None, tuple[torch.Tensor, ...] | None]:
        """Returns (last, hidden_states incl. the input, attentions); the tuples are None unless asked for."""
        hidden_states = (x,) if output_hidden_states else None
        attentions = () if output_attentions else None
        for block in self.blocks:
            x, weights = block(x, None, attn_implementation=attn_implementation, output_attentions=output_attentions)
            if output_hidden_states:
                hidden_states += (x,)
            if output_attentions:
                attentions += (weights,)
        return x, hidden_states, attentions

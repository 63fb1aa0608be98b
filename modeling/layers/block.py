"""Pre-norm transformer block and the plain encoder stack that ViT, the hybrid and MAE share."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

from .attention import Attention
from .drop_path import DropPath
from .mlp import Mlp


class Block(GradientCheckpointingLayer):
    """x + DropPath(Attn(LN(x))), then x + DropPath(MLP(LN(x))); (B, N, dim) -> (B, N, dim)."""

    def __init__(self, dim: int, num_heads: int, mlp_hidden_dim: int, *, qkv_bias: bool = True, act: str = "gelu",
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, mlp_hidden_dim, act=act, drop=drop)

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor | None = None, *, num_queries: int | None = None,
                **attn_options: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`num_queries`: return only the first that many tokens (they still attend to all); see Attention, which
        also takes `attn_options` (attn_implementation, output_attentions) as they are."""
        y, weights = self.attn(self.norm1(x), attn_bias, num_queries=num_queries, **attn_options)
        if num_queries is not None:
            x = x[:, :num_queries]
        x = self.residual(x, self.drop_path(y))
        return self.residual(x, self.drop_path(self.mlp(self.norm2(x)))), weights

    def residual(self, x: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        """x + branch: one place where a subclass may change how residuals are added (hf_vision's CPU opt-in)."""
        return x + branch


class Encoder(nn.Module):
    """A stack of `Block`s with a linearly increasing drop-path rate, collecting optional per-layer outputs."""

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_hidden_dim: int, *, drop_path_rate: float = 0.0,
                 **block_options: Any) -> None:
        """`block_options`: `Block`'s keyword flags (qkv_bias, act, drop, attn_drop, eps), the same for every
        block; only the drop-path rate varies with depth."""
        super().__init__()
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(
            Block(dim, num_heads, mlp_hidden_dim, drop_path=rate, **block_options) for rate in rates
        )

    def forward(
        self,
        x: torch.Tensor,
        *,
        attn_implementation: str = "sdpa",
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        last_block_queries: int | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None, tuple[torch.Tensor, ...] | None]:
        """Returns (last, hidden_states incl. the input, attentions); the tuples are None unless asked for.

        `last_block_queries=k`: the last block computes only the first k tokens (e.g. the class token when that
        is all a classifier reads), saving most of one block; `last` is then (B, k, dim). Ignored when hidden
        states or attentions are requested, since those promise every token.
        """
        hidden_states = (x,) if output_hidden_states else None
        attentions = () if output_attentions else None
        if output_hidden_states or output_attentions:
            last_block_queries = None
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x, weights = block(x, None, attn_implementation=attn_implementation, output_attentions=output_attentions,
                               num_queries=last_block_queries if i == last else None)
            if output_hidden_states:
                hidden_states += (x,)
            if output_attentions:
                attentions += (weights,)
        return x, hidden_states, attentions

"""Multi-head self-attention shared by every family.

ViT, the hybrid and both halves of MAE call it on whole token sequences; Swin calls it on windows folded
into the batch axis and passes its relative-position bias (plus the shift mask) as `attn_bias`.
Dispatch goes through transformers' attention interface so `attn_implementation` works as users expect;
asking for the weights always takes the eager path, because fused kernels never materialise them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS



def eager_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    groups: int | None = None,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, heads, N, d) x3 -> output (B, N, heads, d) and weights (B, heads, N, M), transformers' contract.

    `groups=G`: the batch is B/G images of G windows each (Swin). The mask is then per window, (G | 1, heads | 1,
    N, M), broadcast over the images instead of copied to batch size, and the weights come back as
    (B/G, G, heads, N, M): the tensor the product reads (through a view), so `retain_grad()` on it works.
    """
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query * scaling, key.transpose(-2, -1))  # (B, heads, N, M)
    if groups is not None:
        scores = scores.unflatten(0, (-1, groups))  # (B, heads, N, M) -> (B/G, G, heads, N, M)
    if attention_mask is not None:
        scores = scores + attention_mask
    weights = scores.softmax(dim=-1, dtype=torch.float32).to(query.dtype)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    # (B/G, G, heads, N, M) -> (B, heads, N, M): a view, so the returned weights are the ones used
    used = weights.flatten(0, 1) if groups is not None else weights
    # (B, heads, N, d) -> (B, N, heads, d)
    return torch.matmul(used, value).transpose(1, 2), weights


def batch_bias(attn_bias: torch.Tensor | None, batch: int, groups: int | None) -> torch.Tensor | None:
    """A per-window bias (G, heads | 1, N, M) repeated for every image: (batch = images*G, heads | 1, N, M), as
    fused kernels need; a bias that already broadcasts (one row, or none) is returned as it is."""
    if attn_bias is None or groups is None or attn_bias.shape[0] == 1:
        return attn_bias
    # (G, h, N, M) -> (images, G, h, N, M) -> (images*G, h, N, M): window-major within each image
    return attn_bias.expand(batch // groups, *attn_bias.shape).flatten(0, 1)


class Attention(nn.Module):
    """(B, N, dim) -> (B, N, dim), plus the attention weights when asked for them."""

    is_causal = False  # read by transformers' sdpa wrapper: vision attention is bidirectional

    def __init__(self, dim: int, num_heads: int, *, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.scaling = self.head_dim**-0.5
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(
        self,
        x: torch.Tensor,
        attn_bias: torch.Tensor | None = None,
        *,
        attn_implementation: str = "sdpa",
        output_attentions: bool = False,
        num_queries: int | None = None,
        groups: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`num_queries`: only the first that many tokens attend and are returned (all tokens are still keys and
        values); the classifier's last block needs just the class token. `attn_bias` rows are cut to match.
        `groups`: x holds windows, `groups` per image, and `attn_bias` is per window (see `eager_attention`)."""
        b, n, c = x.shape
        # (B, N, 3*C) -> 3 x (B, N, heads, head_dim) -> 3 x (B, heads, N, head_dim). Unbinding before the
        # transpose (rather than permuting to (3, B, heads, N, d) first) lets backward stack the three gradients
        # straight into the (B, N, 3*C) layout of the qkv output: one copy per layer instead of two.
        q, k, v = (t.transpose(1, 2) for t in self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).unbind(2))
        if num_queries is not None and num_queries < n:
            q = q[:, :, :num_queries]
            if attn_bias is not None and attn_bias.shape[-2] == n:
                attn_bias = attn_bias[..., :num_queries, :]
        n_out = q.shape[2]
        impl = "eager" if output_attentions else (attn_implementation or "sdpa")
        attention = ALL_ATTENTION_FUNCTIONS.get_interface(impl, eager_attention)
        dropout = self.attn_drop if self.training else 0.0
        if attention is eager_attention:
            out, weights = eager_attention(self, q, k, v, attn_bias, scaling=self.scaling, dropout=dropout,
                                           groups=groups)
        elif attention is sdpa_attention_forward:
            # transformers' own sdpa wrapper, minus its decoder-only bookkeeping: same kernel, same result.
            # (B, heads, N, head_dim) -> (B, N, heads, head_dim); the CPU/CUDA kernels already lay it out this way
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=batch_bias(attn_bias, b, groups), dropout_p=dropout, scale=self.scaling
            ).transpose(1, 2)
            weights = None
        else:
            out, weights = attention(self, q, k, v, batch_bias(attn_bias, b, groups), scaling=self.scaling,
                                     dropout=dropout)
        # (B, N, heads, head_dim) -> (B, N, C)
        out = self.proj_drop(self.proj(out.reshape(b, n_out, c)))
        return out, (weights if output_attentions else None)

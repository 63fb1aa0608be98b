"""Transformer feed-forward block (Linear -> activation -> Linear), shared by every family."""
from __future__ import annotations

import torch
from torch import nn
from transformers.activations import ACT2FN



class Mlp(nn.Module):
    """(..., dim) -> (..., dim) through a hidden width; attribute names fc1/fc2 are the checkpoint format."""

    def __init__(self, dim: int, hidden_dim: int, *, act: str = "gelu", drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = ACT2FN[act]
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)
        # exact GELU can overwrite fc1's output when nothing keeps it for backward (the widest tensor of a block)
        self.exact_gelu = act == "gelu"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        if self.exact_gelu and not torch.is_grad_enabled() and type(self.act) is _GELU:
            h = torch.ops.aten.gelu_(h)
        else:
            h = self.act(h)
        return self.drop(self.fc2(self.drop(h)))


_GELU = type(ACT2FN["gelu"])

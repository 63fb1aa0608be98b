"""Stochastic depth: drop a residual branch per sample, as ViT fine-tuning, MAE and Swin all do."""
from __future__ import annotations

import torch
from torch import nn


class DropPath(nn.Module):
    """(batch, ...) -> (batch, ...); identity at eval or when prob is 0."""

    def __init__(self, prob: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= prob < 1.0:
            raise ValueError(f"drop path prob={prob} must be in [0, 1)")
        self.prob = prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.prob
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        return x * x.new_empty(shape).bernoulli_(keep).div_(keep)

    def extra_repr(self) -> str:
        return f"prob={self.prob}"

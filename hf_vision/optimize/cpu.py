"""`optimize_for_cpu`: opt-in CPU speed-ups applied to a built model in place, in the spirit of `ipex.optimize`.

The models in `modeling/` are plain PyTorch (they travel to the Hub as remote code and must work with every
tool). The CPU tricks live here and are applied to an instance by changing the class of some modules to a
subclass that only overrides how it computes (`forward`, or `Block.residual`): parameters, buffers, hooks, the state dict and `save_pretrained`'s
files are untouched, and `enable=False` changes the classes back. Modules that are not exactly the plain class
(PEFT's LoRA layers, quantized or otherwise replaced Linears, user subclasses) are left alone.

What it does (fp32 on CPU; anything else falls back to the plain computation inside the same modules):
- every `nn.Linear` may compute with oneDNN (`onednn_linear.Linear`): per problem it times oneDNN against
  F.linear once per process and keeps the faster, so the swap is safe on CPUs where MKL's sgemm wins (Intel);
- the shared transformer `Block` adds its residuals in place without autograd (one allocation fewer per add).
"""
from __future__ import annotations

import torch
from torch import nn

from hf_vision.modeling.layers.block import Block

from .onednn_linear import Linear as OneDNNLinear


def _in_place_residual(x: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
    """x + branch; without autograd (and outside tracing) it adds into `branch`, a fresh tensor made by the
    branch, to skip one allocation. With autograd it stays out of place: `branch` is often a view of a matmul
    output, and an in-place add on it would make backward copy the gradient. A branch that shares storage with
    `x` (an Identity, a pruned MLP) is never written into."""
    if (torch.is_grad_enabled() or torch.compiler.is_compiling() or branch.shape != x.shape
            or branch.dtype != x.dtype
            or branch.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()):
        return x + branch
    return branch.add_(x)


class CPUBlock(Block):
    """`Block` with in-place residual adds under `torch.no_grad()`; same parameters and results."""

    def residual(self, x: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        return _in_place_residual(x, branch)


# plain class -> its CPU subclass; a module is swapped only when its type is exactly the plain class
_SWAPS: dict[type[nn.Module], type[nn.Module]] = {nn.Linear: OneDNNLinear, Block: CPUBlock}


def optimize_for_cpu(model: nn.Module, *, enable: bool = True) -> nn.Module:
    """Apply (or with `enable=False` undo) the CPU speed-ups in place and return `model`.

    Helps for fp32 inference and training on CPUs where oneDNN beats MKL's sgemm (measured per layer shape on
    first use; elsewhere the Linears keep F.linear); on GPU, in bf16/fp16 or under autocast the swapped modules
    compute exactly as the plain ones. Undoing restores the exact plain types.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    swaps = _SWAPS if enable else {fast: plain for plain, fast in _SWAPS.items()}
    for module in model.modules():
        target = swaps.get(type(module))
        if target is not None:
            module.__class__ = target
    return model


def is_optimized_for_cpu(model: nn.Module) -> bool:
    """Whether any module of `model` currently carries one of `optimize_for_cpu`'s swaps."""
    fast = set(_SWAPS.values())
    return any(type(module) in fast for module in model.modules())

"""Opt-in speed-ups that stay outside the model definitions (see `cpu.optimize_for_cpu`), and the AdamW our
training loops and the benchmark build (`optimizer.adamw`: fused where torch has the kernel)."""
from .cpu import is_optimized_for_cpu, optimize_for_cpu
from .optimizer import adamw

__all__ = ["optimize_for_cpu", "is_optimized_for_cpu", "adamw"]

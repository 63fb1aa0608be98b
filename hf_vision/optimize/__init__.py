"""Opt-in speed-ups that stay outside the model definitions (see `cpu.optimize_for_cpu`)."""
from .cpu import is_optimized_for_cpu, optimize_for_cpu

__all__ = ["optimize_for_cpu", "is_optimized_for_cpu"]

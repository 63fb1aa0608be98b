"""Swin Transformer family."""

"""Shared building blocks with explicit sizes; model files import the concrete modules, not this package."""

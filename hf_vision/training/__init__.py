"""Training utilities: optimiser parameter groups and the pieces training scripts share."""

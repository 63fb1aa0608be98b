"""The classification loss every classifier shares (transformers' `problem_type` conventions)."""
from __future__ import annotations

import torch
from torch.nn import functional as F


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, config) -> torch.Tensor:
    """transformers' problem_type conventions: regression, single- or multi-label classification."""
    if config.problem_type is None:
        if config.num_labels == 1:
            config.problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            config.problem_type = "single_label_classification"
        else:
            config.problem_type = "multi_label_classification"
    labels = labels.to(logits.device)
    if config.problem_type == "regression":
        return F.mse_loss(logits.squeeze(-1), labels.squeeze(-1).to(logits.dtype)) if config.num_labels == 1 \
            else F.mse_loss(logits, labels.to(logits.dtype))
    if config.problem_type == "single_label_classification":
        if labels.ndim == 2 and labels.shape == logits.shape:  # soft targets (Mixup/CutMix, label smoothing)
            return torch.sum(-labels.to(logits.dtype) * F.log_softmax(logits, dim=-1), dim=-1).mean()
        return F.cross_entropy(logits.view(-1, config.num_labels), labels.view(-1))
    if config.problem_type == "multi_label_classification":
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    raise ValueError(
        f"problem_type={config.problem_type!r} is not one of 'regression', 'single_label_classification', "
        "'multi_label_classification'"
    )


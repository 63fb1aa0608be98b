"""Optimiser parameter groups for fine-tuning any of our ViT-family models, as MAE fine-tuning does.

- Layer-wise learning-rate decay (BEiT/MAE): the embeddings are layer 0, transformer block i is layer i + 1,
  everything after the last block (norms, head) is layer L + 1; layer k trains at lr * decay ** (L + 1 - k).
- No weight decay on biases, norm weights, class/mask tokens and position tables.
- `freeze_except_last_blocks`: the paper's partial fine-tuning (train the last N blocks and the head).

Blocks are found structurally (the innermost gradient-checkpointing layers of the base model that hold an
attention module, in parameter order), so ViT, the hybrid (its ResNet stem counts as embeddings), MAE's encoder
and Swin's stages all work without per-family tables.
"""
from __future__ import annotations

from typing import Any

from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

# Parameter names (last component) never weight-decayed, besides every tensor with ndim <= 1.
NO_WEIGHT_DECAY = frozenset(
    {"cls_token", "mask_token", "position_embeddings", "pos_embed", "absolute_pos_embed",
     "relative_position_bias_table"}
)


def transformer_blocks(model: nn.Module) -> list[str]:
    """Module names of the base model's transformer blocks, in the order of `named_parameters` (forward order).

    A pre-training decoder (MAE's) sits outside the base model and is not counted.
    """
    base = getattr(model, "base_model", model)
    prefix = next((name + "." for name, module in model.named_modules() if module is base and name), "")
    layers = [(name, m) for name, m in base.named_modules() if isinstance(m, GradientCheckpointingLayer)]
    blocks = [
        name for name, m in layers
        if not any(isinstance(c, GradientCheckpointingLayer) for c in m.modules() if c is not m)
        and any(type(c).__name__.endswith("Attention") for c in m.modules())  # not a ResNet stem's bottleneck
    ]
    return [prefix + name for name in blocks]


def layer_ids(model: nn.Module) -> tuple[dict[str, int], int]:
    """({parameter name: layer id}, number of blocks L). Parameters between blocks (Swin's patch merging)
    belong to the next block; those before the first block to 0, after the last to L + 1."""
    blocks = transformer_blocks(model)
    index = {name: i for i, name in enumerate(blocks)}
    owner: list[tuple[str, int | None]] = []
    for name, _ in model.named_parameters():
        parts = name.split(".")
        block = next((index[".".join(parts[:k])] for k in range(len(parts) - 1, 0, -1)
                      if ".".join(parts[:k]) in index), None)
        owner.append((name, block))
    ids: dict[str, int] = {}
    following = len(blocks) + 1  # walking backwards: the layer id of the next block (L + 1 after the last)
    for name, block in reversed(owner):
        if block is not None:
            following = block + 1
        ids[name] = following
    for name, block in owner:  # parameters before the first block are the embeddings
        if block is not None:
            break
        ids[name] = 0
    return ids, len(blocks)


def param_groups(
    model: nn.Module,
    *,
    lr: float | None = None,
    weight_decay: float = 0.05,
    layer_decay: float = 0.75,
    no_weight_decay: frozenset[str] | set[str] = NO_WEIGHT_DECAY,
) -> list[dict[str, Any]]:
    """Groups for `torch.optim.AdamW(param_groups(model, lr=...))`, one per (layer, decayed or not).

    Each group carries `lr_scale` (and `lr` when given), `weight_decay`, `layer_id` and the parameter `names`;
    frozen parameters are left out. layer_decay=1 gives a plain weight-decay split.
    """
    if not 0.0 < layer_decay <= 1.0:
        raise ValueError(f"layer_decay={layer_decay} must be in (0, 1]")
    ids, num_blocks = layer_ids(model)
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decay = param.ndim > 1 and name.rpartition(".")[2] not in no_weight_decay
        layer = ids[name]
        if (layer, decay) not in groups:
            scale = layer_decay ** (num_blocks + 1 - layer)
            groups[(layer, decay)] = {
                "params": [], "names": [], "layer_id": layer, "lr_scale": scale,
                "weight_decay": weight_decay if decay else 0.0, **({"lr": lr * scale} if lr is not None else {}),
            }
        groups[(layer, decay)]["params"].append(param)
        groups[(layer, decay)]["names"].append(name)
    return [groups[key] for key in sorted(groups)]


def freeze_except_last_blocks(model: nn.Module, num_blocks: int) -> list[str]:
    """Partial fine-tuning: freeze everything except the last `num_blocks` blocks and what follows them (final
    norms and head). 0 trains the head only; all blocks is full fine-tuning. Returns the trainable names."""
    blocks = transformer_blocks(model)
    if not 0 <= num_blocks <= len(blocks):
        raise ValueError(f"num_blocks={num_blocks} must be in [0, {len(blocks)}] (the model has {len(blocks)} blocks)")
    ids, total = layer_ids(model)
    # layer ids >= this stay trainable; all blocks means full fine-tuning, embeddings included
    first_trained = 0 if num_blocks == total else total - num_blocks + 1
    trainable = []
    for name, param in model.named_parameters():
        param.requires_grad_(ids[name] >= first_trained)
        if param.requires_grad:
            trainable.append(name)
    return trainable

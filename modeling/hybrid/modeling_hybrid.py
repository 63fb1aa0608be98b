"""R50+ViT hybrid (Dosovitskiy et al. 2020, section 3.1): ViT whose patch embedding is a ResNet trunk + projection.

Built by composition: `HybridModel` is `ViTModel` with another `make_patch_embed`; the class token, position
embedding, encoder, pooling and heads are ViT's own modules, unchanged.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import initialization as init

from ..vit.modeling_vit import ViTForImageClassification, ViTModel
from .bit_resnet import ResNetV2Trunk, StdConv2d, ZeroInitGroupNorm
from .configuration_hybrid import HybridConfig


class HybridPatchEmbed(nn.Module):
    """(B, C, H, W) -> (B, dim, H/grid_stride, W/grid_stride): ResNet feature map, then a patch_size conv.

    For inputs not divisible by the trunk's stride, 'SAME' padding rounds the feature map up (ceil), as in TF.
    """

    def __init__(self, backbone: ResNetV2Trunk, dim: int, patch_size: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.patch_size = patch_size
        self.proj = nn.Conv2d(backbone.out_channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        features = self.backbone(pixel_values)
        h, w = features.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(
                f"the backbone's {h}x{w} feature map (input {tuple(pixel_values.shape[-2:])}) is not divisible by "
                f"patch_size={self.patch_size}"
            )
        return self.proj(features)


def _init_hybrid_weights(model, module: nn.Module) -> None:
    """ResNet parts as in the papers' code (He-normal convs, GroupNorm 1/0, last norm of each block zero so every
    residual block starts as the identity); everything else as ViT."""
    if isinstance(module, StdConv2d):
        init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    elif isinstance(module, nn.GroupNorm):
        (init.zeros_ if isinstance(module, ZeroInitGroupNorm) else init.ones_)(module.weight)
        init.zeros_(module.bias)
    else:
        ViTModel._init_weights(model, module)


class HybridModel(ViTModel):
    """Backbone: every token (last_hidden_state) and the pooled representation (pooler_output)."""

    config_class = HybridConfig
    config: HybridConfig
    _auto_classes = {"AutoModel": "HybridModel", "AutoModelForImageClassification": "HybridForImageClassification"}

    @staticmethod
    def make_patch_embed(config: HybridConfig) -> nn.Module:
        backbone = ResNetV2Trunk(
            config.num_channels,
            tuple(config.backbone_layers),
            config.backbone_width,
            groups=config.backbone_norm_groups,
            norm_eps=config.backbone_norm_eps,
            std_eps=config.backbone_std_eps,
            std_style=config.backbone_std_style,
        )
        return HybridPatchEmbed(backbone, config.hidden_size, config.patch_size)

    def _init_weights(self, module: nn.Module) -> None:
        _init_hybrid_weights(self, module)


class HybridForImageClassification(ViTForImageClassification):
    """HybridModel + the ViT classifier head; loss when labels are given."""

    config_class = HybridConfig
    config: HybridConfig
    base_model_class = HybridModel
    _auto_classes = HybridModel._auto_classes

    def _init_weights(self, module: nn.Module) -> None:
        _init_hybrid_weights(self, module)

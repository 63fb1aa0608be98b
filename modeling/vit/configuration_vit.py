"""ViT configuration (Dosovitskiy et al. 2020), with the paper's ablation switches as fields."""
from __future__ import annotations

import inspect

from transformers import PretrainedConfig

from ..config_checks import (check_choice, check_common, check_divisible, check_positive, check_probability,
                             check_saved_labels, pair)

POOLING = ("cls", "gap")
POSITION_EMBEDDING_TYPES = ("learned", "sincos2d", "none")
CLASSIFIER_NORMS = ("none", "batchnorm")
GOOGLE_MEAN_STD = (0.5, 0.5, 0.5)


class ViTEncoderConfig(PretrainedConfig):
    """The fields of a ViT encoder (patch embedding and transformer), in transformers' vocabulary: declared once
    here for every family built on it (`ViTConfig` and through it the hybrid; other families whose encoder is a
    ViT). Not a model type of its own; defaults are ViT-B/16 at 224."""

    ARCHITECTURES = ()  # accepted `architectures` entries, per family

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        """A saved config (config.json, also through AutoConfig) is checked before the caller's overrides apply."""
        config_dict = check_saved_labels(config_dict, overrides=kwargs)
        return super().from_dict(config_dict, **kwargs)

    def __init__(
        self,
        image_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        num_channels: int = 3,
        hidden_size: int = 768,
        num_hidden_layers: int = 12,
        num_attention_heads: int = 12,
        intermediate_size: int = 3072,
        hidden_act: str = "gelu",
        layer_norm_eps: float = 1e-6,
        qkv_bias: bool = True,
        hidden_dropout_prob: float = 0.0,
        attention_probs_dropout_prob: float = 0.0,
        drop_path_rate: float = 0.0,
        initializer_range: float = 0.02,
        image_mean: tuple[float, ...] = GOOGLE_MEAN_STD,
        image_std: tuple[float, ...] = GOOGLE_MEAN_STD,
        **kwargs,
    ) -> None:
        self.image_size = list(image_size) if isinstance(image_size, (tuple, list)) else image_size
        self.patch_size = patch_size
        self.num_channels = num_channels
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.layer_norm_eps = layer_norm_eps
        self.qkv_bias = qkv_bias
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.drop_path_rate = drop_path_rate
        self.initializer_range = initializer_range
        self.image_mean = list(image_mean)
        self.image_std = list(image_std)
        check_saved_labels(kwargs)  # transformers would replace a disagreeing id2label with LABEL_i names
        super().__init__(**kwargs)
        self.validate_encoder()

    @classmethod
    def encoder_fields(cls) -> tuple[str, ...]:
        """The field names this class declares (what a family built on a ViT encoder shares with ViT)."""
        return tuple(name for name in inspect.signature(ViTEncoderConfig.__init__).parameters
                     if name not in ("self", "kwargs"))

    @property
    def grid_stride(self) -> int:
        """Pixels per token along each side."""
        return self.patch_size

    def validate_encoder(self) -> None:
        check_common(self, self.ARCHITECTURES)
        check_positive(patch_size=self.patch_size, hidden_size=self.hidden_size,
                       num_hidden_layers=self.num_hidden_layers, num_attention_heads=self.num_attention_heads,
                       intermediate_size=self.intermediate_size, num_channels=self.num_channels)
        check_probability(hidden_dropout_prob=self.hidden_dropout_prob,
                          attention_probs_dropout_prob=self.attention_probs_dropout_prob,
                          drop_path_rate=self.drop_path_rate)
        height, width = pair(self.image_size)
        check_divisible("image_size", height, "patch_size", self.grid_stride)
        check_divisible("image_size", width, "patch_size", self.grid_stride)
        check_divisible("hidden_size", self.hidden_size, "num_attention_heads", self.num_attention_heads)
        if len(self.image_mean) != self.num_channels or len(self.image_std) != self.num_channels:
            raise ValueError(f"image_mean and image_std need num_channels={self.num_channels} values each")


class ViTConfig(ViTEncoderConfig):
    """Defaults are ViT-B/16 at 224; the encoder fields are `ViTEncoderConfig`'s, these describe the classifier.

    pooling: "cls" takes the class token, "gap" averages patch tokens (the paper's CLS-vs-GAP ablation).
    class_token: prepend a learned class token (needed by pooling="cls").
    fc_norm: LayerNorm after pooling instead of on every token; None means "gap" uses it.
    position_embedding_type: "learned", "sincos2d" (fixed 2-D sin-cos) or "none".
    representation_size: pre-logits Linear+tanh width used for ImageNet-21k pre-training; None when fine-tuning.
    classifier_norm: "batchnorm" puts a non-affine BatchNorm before the classifier (linear probing).
    """

    model_type = "hfv_vit"
    ARCHITECTURES = ("ViTModel", "ViTForImageClassification")  # accepted `architectures` entries

    def __init__(
        self,
        pooling: str = "cls",
        class_token: bool = True,
        fc_norm: bool | None = None,
        position_embedding_type: str = "learned",
        representation_size: int | None = None,
        classifier_norm: str = "none",
        **kwargs,
    ) -> None:
        self.pooling = pooling
        self.class_token = class_token
        self.fc_norm = fc_norm
        self.position_embedding_type = position_embedding_type
        self.representation_size = representation_size
        self.classifier_norm = classifier_norm
        super().__init__(**kwargs)
        self.validate_vit()

    @property
    def use_fc_norm(self) -> bool:
        return self.pooling == "gap" if self.fc_norm is None else bool(self.fc_norm)

    def validate_vit(self) -> None:
        check_choice("pooling", self.pooling, POOLING)
        check_choice("position_embedding_type", self.position_embedding_type, POSITION_EMBEDDING_TYPES)
        check_choice("classifier_norm", self.classifier_norm, CLASSIFIER_NORMS)
        if self.position_embedding_type == "sincos2d":
            check_divisible("hidden_size", self.hidden_size, "4 (2-D sin-cos position embedding)", 4)
        if self.pooling == "cls" and not self.class_token:
            raise ValueError("pooling='cls' needs class_token=True; use pooling='gap' for a model without one")
        if self.representation_size is not None:
            check_positive(representation_size=self.representation_size)

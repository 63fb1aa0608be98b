"""MAE configuration (He et al. 2021, arXiv:2111.06377), with the paper's ablation switches as fields."""
from __future__ import annotations

from transformers import PretrainedConfig

from ..config_checks import (IMAGENET_MEAN, IMAGENET_STD, check_choice, check_common, check_divisible,
                             check_positive, check_probability, check_saved_labels, pair)

MASK_STRATEGIES = ("random", "block", "grid")


class MAEConfig(PretrainedConfig):
    """Defaults are MAE ViT-B/16 at 224 with the paper's 8 x 512 decoder.

    The encoder fields mean what they mean in `ViTConfig` (a fine-tuned classifier loads the encoder directly).
    mask_ratio: fraction of patches removed per image (0.75 in the paper).
    norm_pix_loss: regress each patch normalised by its own mean and std (the paper's best target).
    mask_strategy: "random" (the paper), "block" (BEiT-style large blocks) or "grid" (keep one patch per s x s
        cell; needs mask_ratio = 1 - 1/s**2), the sampling ablation of the paper's Figure 6.
    encoder_mask_tokens: False is the paper's design (the encoder sees visible patches only); True feeds mask
        tokens to the encoder (the "w/ [M]" ablation of Table 1c).
    """

    model_type = "hfv_mae"
    ARCHITECTURES = ("MAEModel", "MAEForPreTraining")  # accepted `architectures` entries

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
        decoder_hidden_size: int = 512,
        decoder_num_hidden_layers: int = 8,
        decoder_num_attention_heads: int = 16,
        decoder_intermediate_size: int = 2048,
        mask_ratio: float = 0.75,
        norm_pix_loss: bool = False,
        mask_strategy: str = "random",
        encoder_mask_tokens: bool = False,
        image_mean: tuple[float, ...] = IMAGENET_MEAN,
        image_std: tuple[float, ...] = IMAGENET_STD,
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
        self.decoder_hidden_size = decoder_hidden_size
        self.decoder_num_hidden_layers = decoder_num_hidden_layers
        self.decoder_num_attention_heads = decoder_num_attention_heads
        self.decoder_intermediate_size = decoder_intermediate_size
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss
        self.mask_strategy = mask_strategy
        self.encoder_mask_tokens = encoder_mask_tokens
        self.image_mean = list(image_mean)
        self.image_std = list(image_std)
        check_saved_labels(kwargs)  # transformers would replace a disagreeing id2label with LABEL_i names
        super().__init__(**kwargs)
        self.validate_mae()

    @property
    def grid_size(self) -> tuple[int, int]:
        height, width = pair(self.image_size)
        return height // self.patch_size, width // self.patch_size

    @property
    def grid_stride(self) -> int:
        """Side of the cell in which grid masking keeps one patch (2 for the paper's 75%)."""
        return round((1.0 / (1.0 - self.mask_ratio)) ** 0.5)

    def validate_mae(self) -> None:
        check_common(self, self.ARCHITECTURES)
        check_choice("mask_strategy", self.mask_strategy, MASK_STRATEGIES)
        check_positive(patch_size=self.patch_size, hidden_size=self.hidden_size,
                       num_hidden_layers=self.num_hidden_layers, num_attention_heads=self.num_attention_heads,
                       intermediate_size=self.intermediate_size, num_channels=self.num_channels,
                       decoder_hidden_size=self.decoder_hidden_size,
                       decoder_num_hidden_layers=self.decoder_num_hidden_layers,
                       decoder_num_attention_heads=self.decoder_num_attention_heads,
                       decoder_intermediate_size=self.decoder_intermediate_size)
        check_probability(mask_ratio=self.mask_ratio, hidden_dropout_prob=self.hidden_dropout_prob,
                          attention_probs_dropout_prob=self.attention_probs_dropout_prob,
                          drop_path_rate=self.drop_path_rate)
        height, width = pair(self.image_size)
        check_divisible("image_size", height, "patch_size", self.patch_size)
        check_divisible("image_size", width, "patch_size", self.patch_size)
        check_divisible("hidden_size", self.hidden_size, "num_attention_heads", self.num_attention_heads)
        check_divisible("decoder_hidden_size", self.decoder_hidden_size, "decoder_num_attention_heads",
                        self.decoder_num_attention_heads)
        # Both halves use fixed 2-D sin-cos position embeddings (a quarter of the channels per sin/cos and axis).
        check_divisible("hidden_size", self.hidden_size, "4 (2-D sin-cos position embedding)", 4)
        check_divisible("decoder_hidden_size", self.decoder_hidden_size, "4 (2-D sin-cos position embedding)", 4)
        if self.mask_strategy == "grid" and abs(1.0 - 1.0 / self.grid_stride**2 - self.mask_ratio) > 1e-6:
            raise ValueError(
                f"mask_ratio={self.mask_ratio} is impossible with mask_strategy='grid', which keeps one patch per "
                "s x s cell; use mask_ratio = 1 - 1/s**2 (0.75, 0.888..., ...)"
            )
        if len(self.image_mean) != self.num_channels or len(self.image_std) != self.num_channels:
            raise ValueError(f"image_mean and image_std need num_channels={self.num_channels} values each")

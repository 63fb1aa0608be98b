"""MAE configuration (He et al. 2021, arXiv:2111.06377), with the paper's ablation switches as fields.

The encoder is a ViT, so `MAEConfig` extends `ViTEncoderConfig` (whose fields `ViTConfig` extends with the
classifier's): the encoder fields are declared once, and `vit_config` exports the classifier config that
fine-tuning starts from. ViT knows nothing of MAE: a classifier loads an MAE checkpoint because the loader
(modeling/loading.py) asks the checkpoint's config class, found by its model_type, for `export_config` and
`export_state_dict`.
"""
from __future__ import annotations

import torch

from ..config_checks import (IMAGENET_MEAN, IMAGENET_STD, check_choice, check_divisible, check_positive,
                             check_probability, pair)
from ..vit.configuration_vit import ViTConfig, ViTEncoderConfig

MASK_STRATEGIES = ("random", "block", "grid")
# The classifier the official fine-tuning puts on the encoder: average pooling (with fc_norm), a learned table.
FINETUNING = {"pooling": "gap", "position_embedding_type": "learned"}
# Config attributes every transformers config carries that an exported config keeps.
GENERIC_FIELDS = ("dtype", "output_attentions", "output_hidden_states")


class MAEConfig(ViTEncoderConfig):
    """Defaults are MAE ViT-B/16 at 224 with the paper's 8 x 512 decoder.

    Encoder fields: those of `ViTEncoderConfig` (declared once, for ViT and MAE alike); the encoder always has a
    class token and fixed 2-D sin-cos position embeddings.
    mask_ratio: fraction of patches removed per image (0.75 in the paper).
    norm_pix_loss: regress each patch normalised by its own mean and std (the paper's best target).
    mask_strategy: "random" (the paper), "block" (BEiT-style large blocks) or "grid" (keep one patch per s x s
        cell; needs mask_ratio = 1 - 1/s**2), the sampling ablation of the paper's Figure 6.
    encoder_mask_tokens: False is the paper's design (the encoder sees visible patches only); True feeds mask
        tokens to the encoder (the "w/ [M]" ablation of Table 1c).
    """

    model_type = "hfv_mae"
    ARCHITECTURES = ("MAEModel", "MAEForPreTraining")  # accepted `architectures` entries

    def __init__(
        self,
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
        self.decoder_hidden_size = decoder_hidden_size
        self.decoder_num_hidden_layers = decoder_num_hidden_layers
        self.decoder_num_attention_heads = decoder_num_attention_heads
        self.decoder_intermediate_size = decoder_intermediate_size
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss
        self.mask_strategy = mask_strategy
        self.encoder_mask_tokens = encoder_mask_tokens
        super().__init__(image_mean=image_mean, image_std=image_std, **kwargs)
        self.validate_mae()

    @property
    def grid_size(self) -> tuple[int, int]:
        height, width = pair(self.image_size)
        return height // self.patch_size, width // self.patch_size

    @property
    def mask_grid_stride(self) -> int:
        """Side of the cell in which grid masking keeps one patch (2 for the paper's 75%)."""
        return round((1.0 / (1.0 - self.mask_ratio)) ** 0.5)

    def validate_mae(self) -> None:
        check_choice("mask_strategy", self.mask_strategy, MASK_STRATEGIES)
        check_positive(decoder_hidden_size=self.decoder_hidden_size,
                       decoder_num_hidden_layers=self.decoder_num_hidden_layers,
                       decoder_num_attention_heads=self.decoder_num_attention_heads,
                       decoder_intermediate_size=self.decoder_intermediate_size)
        check_probability(mask_ratio=self.mask_ratio)
        check_divisible("decoder_hidden_size", self.decoder_hidden_size, "decoder_num_attention_heads",
                        self.decoder_num_attention_heads)
        # Both halves use fixed 2-D sin-cos position embeddings (a quarter of the channels per sin/cos and axis).
        check_divisible("hidden_size", self.hidden_size, "4 (2-D sin-cos position embedding)", 4)
        check_divisible("decoder_hidden_size", self.decoder_hidden_size, "4 (2-D sin-cos position embedding)", 4)
        if self.mask_strategy == "grid" and abs(1.0 - 1.0 / self.mask_grid_stride**2 - self.mask_ratio) > 1e-6:
            raise ValueError(
                f"mask_ratio={self.mask_ratio} is impossible with mask_strategy='grid', which keeps one patch per "
                "s x s cell; use mask_ratio = 1 - 1/s**2 (0.75, 0.888..., ...)"
            )

    # ---------------------------------------------------------------- the one MAE -> ViT exporter

    def vit_config(self, **overrides) -> ViTConfig:
        """The ViT classifier config that fine-tunes this encoder: the encoder fields, average pooling with
        fc_norm and a learned position table started from the saved sin-cos one (the official fine-tuning);
        `overrides` (labels, recipe fields, another pooling) win. The decoder and masking fields stay behind."""
        return self.export_config(ViTConfig, **overrides)

    def export_config(self, config_cls: type[ViTConfig], **overrides) -> ViTConfig:
        """`vit_config` for the loader (modeling/loading.py), which passes the ViTConfig class it loads into."""
        if getattr(config_cls, "model_type", None) != ViTConfig.model_type:  # by name: remote code has its own class
            raise TypeError(f"an MAE encoder exports to a ViT config ({ViTConfig.model_type}), not to "
                            f"{config_cls.__name__}")
        values = {name: getattr(self, name) for name in self.encoder_fields()}
        values.update({name: getattr(self, name) for name in GENERIC_FIELDS if hasattr(self, name)})
        return config_cls(**{**values, **FINETUNING, **overrides})

    @staticmethod
    def export_state_dict(state_dict: dict[str, torch.Tensor], own_keys, base_model_prefix: str = "vit"
                          ) -> dict[str, torch.Tensor]:
        """An MAE checkpoint as an encoder for a ViT model with state-dict keys `own_keys`: the decoder and mask token
        are dropped, and so is the final `norm` when that model pools with fc_norm instead (the official
        fine-tuning protocol), so that only the new head is reported missing. Key names are unchanged."""
        own = set(own_keys)
        prefix = base_model_prefix + "."

        def unused(key: str) -> bool:
            if key in own or prefix + key in own or key.removeprefix(prefix) in own:
                return False
            name = key.removeprefix(prefix)
            return name.startswith(("decoder.", "norm.")) or name == "embeddings.mask_token"

        return {k: v for k, v in state_dict.items() if not unused(k)}

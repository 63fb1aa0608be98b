"""Vision Transformer (Dosovitskiy et al. 2020): patch embedding, class token, position embedding,
pre-norm encoder, pooling, optional pre-logits, classifier.

`ViTModel` builds its patch embedding through `make_patch_embed`, so the hybrid swaps in a ResNet stem and
reuses everything else unchanged.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPooling, ImageClassifierOutput

from ..config_checks import pair
from ..layers.patch_embed import PatchEmbed
from ..layers.pos_embed import resample_pos_embed, sincos_2d
from ..layers.block import Encoder
from ..losses import classification_loss
from ..pretrained import HFVisionPreTrainedModel
from .configuration_vit import ViTConfig


def vit_encoder(config: ViTConfig) -> Encoder:
    """The transformer encoder described by ViT's field vocabulary (ViT, the hybrid, families composed of ViT)."""
    return Encoder(
        config.hidden_size,
        config.num_hidden_layers,
        config.num_attention_heads,
        config.intermediate_size,
        qkv_bias=config.qkv_bias,
        act=config.hidden_act,
        drop=config.hidden_dropout_prob,
        attn_drop=config.attention_probs_dropout_prob,
        drop_path_rate=config.drop_path_rate,
        eps=config.layer_norm_eps,
    )


class ViTEmbeddings(nn.Module):
    """(B, C, H, W) -> (B, prefix + H'*W', dim): patch tokens, optional class token, position embedding."""

    def __init__(
        self,
        patch_embed: nn.Module,
        dim: int,
        grid_size: tuple[int, int],
        *,
        class_token: bool = True,
        position_embedding_type: str = "learned",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.patch_embed = patch_embed
        self.dim, self.grid_size = dim, tuple(grid_size)
        self.num_prefix_tokens = int(class_token)
        self.position_embedding_type = position_embedding_type
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if class_token else None
        num_positions = self.num_prefix_tokens + self.grid_size[0] * self.grid_size[1]
        if position_embedding_type == "learned":
            self.position_embeddings = nn.Parameter(torch.zeros(1, num_positions, dim))
        elif position_embedding_type == "sincos2d":
            self.register_buffer("position_embeddings", self.sincos_table(), persistent=False)
        else:
            self.position_embeddings = None
        self.dropout = nn.Dropout(dropout)

    def sincos_table(self, grid_size: tuple[int, int] | None = None) -> torch.Tensor:
        return sincos_2d(self.dim, grid_size or self.grid_size, num_prefix_tokens=self.num_prefix_tokens)

    def position_embedding_for(self, grid_size: tuple[int, int], *, interpolate: bool) -> torch.Tensor | None:
        """The table for an input grid; a grid other than the trained one needs `interpolate`."""
        pos = self.position_embeddings
        if pos is None or grid_size == self.grid_size:
            return pos
        if not interpolate:
            raise ValueError(
                f"input gives a {grid_size[0]}x{grid_size[1]} patch grid but the model was built for "
                f"{self.grid_size[0]}x{self.grid_size[1]}; pass interpolate_pos_encoding=True or set image_size"
            )
        if self.position_embedding_type == "sincos2d":  # a fixed function: compute it exactly
            return self.sincos_table(grid_size).to(pos.device, pos.dtype)
        return resample_pos_embed(pos, grid_size, self.grid_size, num_prefix_tokens=self.num_prefix_tokens)

    def forward(self, pixel_values: torch.Tensor, *, interpolate_pos_encoding: bool = False) -> torch.Tensor:
        x = self.patch_embed(pixel_values)
        b, _, gh, gw = x.shape
        # (B, C, H', W') -> (B, H'*W', C)
        x = x.flatten(2).transpose(1, 2)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1)
        pos = self.position_embedding_for((gh, gw), interpolate=interpolate_pos_encoding)
        if pos is not None:
            x = x + pos.to(x.dtype)  # a fixed sin-cos buffer may stay fp32 under from_pretrained(dtype=...)
        return self.dropout(x)


class PreLogits(nn.Module):
    """The Linear+tanh representation layer of ViT's ImageNet-21k pre-training."""

    def __init__(self, dim: int, representation_size: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, representation_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc(x))


class ViTPreTrainedModel(HFVisionPreTrainedModel):
    config_class = ViTConfig
    config: ViTConfig
    base_model_prefix = "vit"
    _no_split_modules = ["ViTEmbeddings", "Block"]
    _auto_classes = {"AutoModel": "ViTModel", "AutoModelForImageClassification": "ViTForImageClassification"}

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, ViTEmbeddings):
            if module.cls_token is not None:
                init.trunc_normal_(module.cls_token, std=std)
            if module.position_embedding_type == "learned":
                init.trunc_normal_(module.position_embeddings, std=std)
            elif module.position_embedding_type == "sincos2d":
                init.copy_(module.position_embeddings, module.sincos_table())
        else:
            super()._init_weights(module)

    def adapt_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Resize learned position embeddings saved at another resolution (e.g. fine-tuning 224 -> 384)."""
        own = {k: v.shape for k, v in self.state_dict().items() if k.endswith("embeddings.position_embeddings")}
        for key, shape in own.items():
            saved = state_dict.get(key)
            if saved is None or saved.shape == shape:
                continue
            embeddings = self.get_submodule(key.rpartition(".")[0])
            prefix = embeddings.num_prefix_tokens
            old = saved.shape[1] - prefix
            side = math.isqrt(old)
            if side * side != old or saved.shape[-1] != shape[-1]:
                raise ValueError(
                    f"{key}: checkpoint shape {tuple(saved.shape)} cannot be resized to {tuple(shape)} "
                    "(the saved grid is not square or the width differs)"
                )
            state_dict[key] = resample_pos_embed(saved, embeddings.grid_size, (side, side), num_prefix_tokens=prefix)
        return super().adapt_state_dict(state_dict)


class ViTModel(ViTPreTrainedModel):
    """Backbone: returns every token (last_hidden_state) and the pooled representation (pooler_output)."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__(config)
        height, width = pair(config.image_size)
        grid = (height // config.grid_stride, width // config.grid_stride)
        self.embeddings = ViTEmbeddings(
            self.make_patch_embed(config),
            config.hidden_size,
            grid,
            class_token=config.class_token,
            position_embedding_type=config.position_embedding_type,
            dropout=config.hidden_dropout_prob,
        )
        self.encoder = vit_encoder(config)
        fc_norm = config.use_fc_norm
        self.norm = nn.Identity() if fc_norm else nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.fc_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if fc_norm else nn.Identity()
        self.pre_logits = (
            PreLogits(config.hidden_size, config.representation_size) if config.representation_size else None
        )
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        """The patch embedding (the hybrid's: its ResNet stem and projection); hooks on it see every input."""
        return self.embeddings.patch_embed

    @staticmethod
    def make_patch_embed(config: ViTConfig) -> nn.Module:
        return PatchEmbed(config.num_channels, config.hidden_size, config.patch_size)

    @property
    def num_features(self) -> int:
        return self.config.representation_size or self.config.hidden_size

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, C) -> (B, num_features): class token or mean of patch tokens, then fc_norm and pre-logits."""
        prefix = self.embeddings.num_prefix_tokens
        pooled = tokens[:, 0] if self.config.pooling == "cls" else tokens[:, prefix:].mean(dim=1)
        pooled = self.fc_norm(pooled)
        return self.pre_logits(pooled) if self.pre_logits is not None else pooled

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        *,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        interpolate_pos_encoding: bool = False,
        return_dict: bool | None = None,
        pooled_only: bool = False,
    ) -> BaseModelOutputWithPooling | tuple:
        """`pooled_only=True` promises that only `pooler_output` will be read (as the classifier does): with
        class-token pooling the last block then computes the class token alone (about 1/15 of the encoder's
        work at 224) and `last_hidden_state` holds just the prefix tokens. Hidden states and attentions, when
        asked for, are always complete."""
        if pixel_values is None:
            raise ValueError("pixel_values is required")
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        weight = self.embeddings.patch_embed.proj.weight
        x = self.embeddings(pixel_values.to(weight.dtype), interpolate_pos_encoding=interpolate_pos_encoding)
        prefix = self.embeddings.num_prefix_tokens
        x, hidden_states, attentions = self.encoder(
            x,
            attn_implementation=self.attn_implementation,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            last_block_queries=prefix if pooled_only and self.config.pooling == "cls" and prefix else None,
        )
        x = self.norm(x)
        out = BaseModelOutputWithPooling(
            last_hidden_state=x, pooler_output=self.pool(x), hidden_states=hidden_states, attentions=attentions
        )
        return out if (self.config.return_dict if return_dict is None else return_dict) else out.to_tuple()


class ViTForImageClassification(ViTPreTrainedModel):
    """ViTModel + optional BatchNorm (linear probing) + Linear classifier; loss when labels are given."""

    base_model_class = ViTModel

    def __init__(self, config: ViTConfig) -> None:
        super().__init__(config)
        self.vit = self.base_model_class(config)
        features = self.vit.num_features
        self.head_norm = (
            nn.BatchNorm1d(features, affine=False, eps=1e-6) if config.classifier_norm == "batchnorm" else nn.Identity()
        )
        self.classifier = nn.Linear(features, config.num_labels) if config.num_labels > 0 else nn.Identity()
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        *,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        interpolate_pos_encoding: bool = False,
        return_dict: bool | None = None,
    ) -> ImageClassifierOutput | tuple:
        out = self.vit(
            pixel_values,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            interpolate_pos_encoding=interpolate_pos_encoding,
            pooled_only=True,
            return_dict=True,
        )
        logits = self.classifier(self.head_norm(out.pooler_output))
        loss = classification_loss(logits, labels, self.config) if labels is not None else None
        result = ImageClassifierOutput(
            loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions
        )
        return result if (self.config.return_dict if return_dict is None else return_dict) else result.to_tuple()

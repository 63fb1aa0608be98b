"""Swin Transformer (Liu et al. 2021): windowed attention with a relative-position bias, shifted windows,
patch merging between stages; a classifier and a multi-scale backbone for detection/segmentation heads.

Attribute names follow Microsoft's release (patch_embed.proj/norm, layers.N.blocks.M.attn.qkv/proj/
relative_position_bias_table, layers.N.downsample.norm/reduction, norm; the head is `classifier`), so conversions are renames.
Layout is channels-last (B, H, W, C) between blocks; a block cuts its (shifted) windows with one cached gather.

Any input size works, and the model holds no per-input state: the effective window and shift of a block are
worked out per call from the feature-map size (a map no larger than the window is one window, unshifted, as in
the paper), padding to whole windows is cropped back, and the shape-only tensors (shift masks, relative index,
the gather that shifts and partitions a map) come from a small per-model cache keyed by geometry and device, so
they are built once and never mutate a module. Files: `windows.py` (window geometry and that cache),
`swin_layers.py` (patch embedding, merging, window attention, block, stage), this one (outputs and models).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.backbone_utils import BackboneMixin
from transformers.modeling_outputs import BackboneOutput
from transformers.utils import ModelOutput

from ..config_checks import pair
from ..layers.pos_embed import resample_pos_embed
from ..pretrained import HFVisionPreTrainedModel, classification_loss
from .configuration_swin import SwinConfig
from .swin_layers import SwinPatchEmbed, SwinStage, WindowAttention, graph_views
from .windows import WindowCache


@dataclass
class SwinModelOutput(ModelOutput):
    """last_hidden_state (B, L, C) after the final norm; pooler_output (B, C) its token mean.

    hidden_states: the embedding output and each stage's output before patch merging, (B, H_i*W_i, C_i);
    reshaped_hidden_states: the same as (B, C_i, H_i, W_i); attentions: one (B, nW, heads, N, N) per block.
    """

    last_hidden_state: torch.Tensor | None = None
    pooler_output: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    reshaped_hidden_states: tuple[torch.Tensor, ...] | None = None


@dataclass
class SwinImageClassifierOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    reshaped_hidden_states: tuple[torch.Tensor, ...] | None = None


# ----------------------------------------------------------------------------------------------- models
class SwinPreTrainedModel(HFVisionPreTrainedModel):
    config_class = SwinConfig
    config: SwinConfig
    base_model_prefix = "swin"
    _no_split_modules = ["SwinBlock", "PatchMerging"]
    _auto_classes = {"AutoModel": "SwinModel", "AutoModelForImageClassification": "SwinForImageClassification",
                     "AutoBackbone": "SwinBackbone"}
    # buffers of the official checkpoints that we rebuild from shapes instead of storing
    _keys_to_ignore_on_load_unexpected = [r"relative_position_index", r"attn_mask"]

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, WindowAttention):
            if module.relative_position_bias_table is not None:
                init.trunc_normal_(module.relative_position_bias_table, std=std)
        elif isinstance(module, SwinModel):
            if module.absolute_pos_embed is not None:
                init.trunc_normal_(module.absolute_pos_embed, std=std)
        else:
            super()._init_weights(module)

    def adapt_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Fit a checkpoint saved at another image_size / window_size (224 / 7 -> 384 / 12 fine-tuning):
        bicubically resize relative-position bias tables and absolute position embeddings; drop the
        official release's shape-only buffers; rename the classifier of checkpoints saved before it was called
        `classifier` (`head.weight`, `head.bias`)."""
        for key in [k for k in state_dict if k.endswith(("relative_position_index", "attn_mask"))]:
            del state_dict[key]
        for name in ("weight", "bias"):
            if f"head.{name}" in state_dict and f"classifier.{name}" not in state_dict:
                state_dict[f"classifier.{name}"] = state_dict.pop(f"head.{name}")
        own = self.state_dict()
        for key, saved in list(state_dict.items()):
            target = own.get(key)
            if target is None or saved.shape == target.shape:
                continue
            if key.endswith("relative_position_bias_table"):
                state_dict[key] = resize_relative_position_bias_table(saved, target.shape[0])
            elif key.endswith("absolute_pos_embed"):
                module = self.get_submodule(key.rpartition(".")[0]) if "." in key else self
                old = saved.shape[1]
                side = math.isqrt(old)
                if side * side != old or saved.shape[-1] != target.shape[-1]:
                    raise ValueError(f"{key}: checkpoint shape {tuple(saved.shape)} cannot be resized to "
                                     f"{tuple(target.shape)} (the saved grid is not square or the width differs)")
                state_dict[key] = resample_pos_embed(saved, module.grid_size, (side, side), num_prefix_tokens=0)
        return super().adapt_state_dict(state_dict)


def resize_relative_position_bias_table(table: torch.Tensor, length: int) -> torch.Tensor:
    """((2m-1)^2, heads) -> ((2M-1)^2 = length, heads), bicubic over the 2-D offset grid (official fine-tuning)."""
    old_side, new_side = math.isqrt(table.shape[0]), math.isqrt(length)
    if old_side**2 != table.shape[0] or new_side**2 != length:
        raise ValueError(f"relative_position_bias_table lengths {table.shape[0]} -> {length} are not squares")
    heads = table.shape[1]
    # ((2m-1)^2, heads) -> (1, heads, 2m-1, 2m-1)
    grid = table.float().T.reshape(1, heads, old_side, old_side)
    grid = F.interpolate(grid, size=(new_side, new_side), mode="bicubic", align_corners=False)
    # (1, heads, 2M-1, 2M-1) -> ((2M-1)^2, heads)
    return grid.reshape(heads, length).T.contiguous().to(table.dtype)


class SwinModel(SwinPreTrainedModel):
    """Hierarchical encoder: (B, C, H, W) -> tokens of the last stage, their mean, and per-stage features."""

    def __init__(self, config: SwinConfig, *, final_norm: bool = True) -> None:
        super().__init__(config)
        height, width = pair(config.image_size)
        self.grid_size = (math.ceil(height / config.patch_size), math.ceil(width / config.patch_size))
        self.patch_embed = SwinPatchEmbed(config.num_channels, config.embed_dim, config.patch_size,
                                          norm=config.patch_norm, eps=config.layer_norm_eps)
        self.absolute_pos_embed = (
            nn.Parameter(torch.zeros(1, self.grid_size[0] * self.grid_size[1], config.embed_dim))
            if config.use_absolute_position_embeddings else None
        )
        self.pos_drop = nn.Dropout(config.hidden_dropout_prob)
        total = sum(config.depths)
        rates = [config.drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        self.layers = nn.ModuleList()
        for i, (depth, heads) in enumerate(zip(config.depths, config.num_heads)):
            dim = config.embed_dim * 2**i
            start = sum(config.depths[:i])
            self.layers.append(SwinStage(
                dim, depth, heads, config.window_size, int(dim * config.mlp_ratio),
                downsample=i < len(config.depths) - 1, shifted_windows=config.shifted_windows,
                drop_path=rates[start:start + depth], qkv_bias=config.qkv_bias, act=config.hidden_act,
                drop=config.hidden_dropout_prob, attn_drop=config.attention_probs_dropout_prob,
                eps=config.layer_norm_eps, relative_position_bias=config.use_relative_position_bias,
            ))
        self.num_features = config.hidden_size
        self.norm = nn.LayerNorm(self.num_features, eps=config.layer_norm_eps) if final_norm else None
        self.window_cache = WindowCache()
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        """The patch embedding; hooks on it (e.g. `enable_input_require_grads`) see every input."""
        return self.patch_embed

    def position_embedding_for(self, grid: tuple[int, int]) -> torch.Tensor | None:
        """(1, H'*W', C) for an input grid: the table itself, or a bicubic resample for another grid (per call)."""
        pos = self.absolute_pos_embed
        if pos is None or tuple(grid) == self.grid_size:
            return pos
        return resample_pos_embed(pos, grid, self.grid_size, num_prefix_tokens=0)

    def stage_features(
        self, pixel_values: torch.Tensor, *, always_partition: bool = False, output_attentions: bool = False,
        hidden_views: list | None = None,
    ) -> tuple[list[torch.Tensor], tuple[torch.Tensor, ...]]:
        """Channels-last maps [stem, stage1 (before merging), .., stageN] and the per-block attentions.
        `hidden_views`: a list that receives each map's (flat, channels-first) views, on the graph."""
        x = self.patch_embed(pixel_values.to(self.patch_embed.proj.weight.dtype))  # (B, H', W', C)
        _, gh, gw, c = x.shape
        pos = self.position_embedding_for((gh, gw))
        if pos is not None:
            # (1, H'*W', C) -> (1, H', W', C)
            x = x + pos.view(1, gh, gw, c)
        x = self.pos_drop(x)
        if hidden_views is not None:
            x = graph_views(x, hidden_views)
        features = [x]
        attentions = ()
        for stage in self.layers:
            x, stage_features, stage_attentions = stage(
                x, self.window_cache, always_partition=always_partition, attn_implementation=self.attn_implementation,
                output_attentions=output_attentions, hidden_views=hidden_views,
            )
            features.append(stage_features)
            attentions += stage_attentions
        return features, attentions

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        *,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        always_partition: bool = False,
        return_dict: bool | None = None,
    ) -> SwinModelOutput | tuple:
        """always_partition: keep the configured window and shift on maps no larger than a window (padding
        instead), as detection backbones do; the default shrinks the window to the map (the paper's rule)."""
        if pixel_values is None:
            raise ValueError("pixel_values is required")
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        views = [] if output_hidden_states else None
        features, attentions = self.stage_features(
            pixel_values, always_partition=always_partition, output_attentions=output_attentions, hidden_views=views
        )
        last = features[-1]
        if self.norm is not None:
            last = self.norm(last)
        # (B, H, W, C) -> (B, H*W, C)
        last = last.flatten(1, 2)
        hidden_states = reshaped = None
        if output_hidden_states:
            hidden_states = tuple(flat for flat, _ in views)  # (B, H_i*W_i, C_i)
            reshaped = tuple(channels_first for _, channels_first in views)  # (B, C_i, H_i, W_i)
        out = SwinModelOutput(
            last_hidden_state=last,
            pooler_output=last.mean(dim=1),
            hidden_states=hidden_states,
            attentions=attentions if output_attentions else None,
            reshaped_hidden_states=reshaped,
        )
        return out if (self.config.return_dict if return_dict is None else return_dict) else out.to_tuple()


class SwinForImageClassification(SwinPreTrainedModel):
    """SwinModel + Linear head on the mean-pooled last stage; loss when labels are given."""

    def __init__(self, config: SwinConfig) -> None:
        super().__init__(config)
        self.swin = SwinModel(config)
        # `classifier` as in every family and transformers (checkpoints saved before the rename say `head`)
        self.classifier = (nn.Linear(self.swin.num_features, config.num_labels) if config.num_labels > 0
                           else nn.Identity())
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        *,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> SwinImageClassifierOutput | tuple:
        out = self.swin(pixel_values, output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                        return_dict=True)
        logits = self.classifier(out.pooler_output)
        loss = classification_loss(logits, labels, self.config) if labels is not None else None
        result = SwinImageClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                           attentions=out.attentions, reshaped_hidden_states=out.reshaped_hidden_states)
        return result if (self.config.return_dict if return_dict is None else return_dict) else result.to_tuple()


class SwinBackbone(BackboneMixin, SwinPreTrainedModel):
    """Feature maps (B, C, H, W) of the stages in `config.out_features` ("stem" and "stage1".. at strides
    4, 8, 16, 32 for patch 4), each after its own LayerNorm, for transformers' detection/segmentation heads."""

    def __init__(self, config: SwinConfig) -> None:
        super().__init__(config)
        self.num_features = config.stage_channels
        self.swin = SwinModel(config, final_norm=False)
        self.hidden_states_norms = nn.ModuleDict(
            {stage: nn.LayerNorm(channels, eps=config.layer_norm_eps)
             for stage, channels in zip(self.out_features, self.channels)}
        )
        self.post_init()

    def adapt_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A classification or SwinModel checkpoint ends in one LayerNorm over the last stage: that is exactly
        the backbone's "stage4" output norm, so it becomes that (and is dropped when stage4 is not an output);
        the other stages' norms start fresh, as a new head would."""
        final = {k: k[len("swin.norm."):] for k in state_dict if k.startswith("swin.norm.")}
        if final and not any(k.startswith("hidden_states_norms.") for k in state_dict):
            last = self.stage_names[-1]
            for key, leaf in final.items():
                tensor = state_dict.pop(key)
                if last in self.hidden_states_norms:
                    state_dict[f"hidden_states_norms.{last}.{leaf}"] = tensor
            for stage, norm in self.hidden_states_norms.items():  # the others: a fresh LayerNorm, written out
                if stage != last:
                    state_dict[f"hidden_states_norms.{stage}.weight"] = torch.ones(norm.weight.shape)
                    state_dict[f"hidden_states_norms.{stage}.bias"] = torch.zeros(norm.bias.shape)
        return super().adapt_state_dict(state_dict)

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        *,
        always_partition: bool = True,
    ) -> BackboneOutput | tuple:
        """always_partition (default True, as transformers' and the official detection backbones): small
        maps are padded to a whole shifted window rather than shrinking the window."""
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        views = [] if output_hidden_states else None
        features, attentions = self.swin.stage_features(
            pixel_values, always_partition=always_partition, output_attentions=output_attentions, hidden_views=views
        )
        feature_maps = tuple(
            # (B, H, W, C) -> (B, C, H, W)
            self.hidden_states_norms[stage](stage_map).permute(0, 3, 1, 2).contiguous()
            for stage, stage_map in zip(self.stage_names, features)
            if stage in self.out_features
        )
        # (B, H, W, C) -> (B, C, H, W)
        hidden_states = tuple(channels_first for _, channels_first in views) if output_hidden_states else None
        result = BackboneOutput(feature_maps=feature_maps, hidden_states=hidden_states,
                                attentions=attentions if output_attentions else None)
        return result if (self.config.return_dict if return_dict is None else return_dict) else result.to_tuple()


__all__ = ["SwinModel", "SwinForImageClassification", "SwinBackbone", "SwinPreTrainedModel"]

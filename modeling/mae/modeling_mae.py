"""MAE (He et al. 2021): mask most patches, encode only the visible ones, reconstruct the pixels of the rest.

The encoder is our ViT encoder under the same attribute names (`vit.embeddings.patch_embed.proj`,
`vit.embeddings.cls_token`, `vit.encoder.blocks.N`, `vit.norm`), so `ViTForImageClassification.from_pretrained`
loads a pre-trained MAE checkpoint through MAEConfig's exporter (configuration_mae.py). Both halves use fixed 2-D sin-cos position embeddings, kept as
persistent buffers so that the table travels with the checkpoint (a fine-tuned ViT starts its learned table
from it, as the official fine-tuning does).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch
from torch import nn
from transformers import initialization as init
from transformers.utils import ModelOutput

from ..config_checks import pair
from ..layers.block import Encoder
from ..layers.patch_embed import PatchEmbed
from ..layers.pos_embed import sincos_2d
from ..loading import HEAD_MODULES
from ..pretrained import HFVisionPreTrainedModel
from ..vit.modeling_vit import vit_encoder
from .configuration_mae import MAEConfig


@dataclass
class MAEModelOutput(ModelOutput):
    """last_hidden_state: (B, 1 + visible, C) encoded class + visible tokens (1 + L with encoder_mask_tokens).
    mask: (B, L), 1 for removed patches; ids_restore: (B, L) puts the shuffled sequence back in image order.
    """

    last_hidden_state: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    ids_restore: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class MAEForPreTrainingOutput(ModelOutput):
    """logits: (B, L, patch**2 * C) predicted pixels of every patch (normalised per patch if norm_pix_loss);
    hidden_states and attentions are the encoder's, as in transformers' ViTMAE."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    ids_restore: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class MAEReconstruction(ModelOutput):
    """Images (B, C, H, W) in pixel space, clipped to [0, 1]: what the encoder saw, what the decoder made, and
    the reconstruction with the visible patches pasted back; mask (B, 1, H, W) is 1 where patches were removed."""

    masked: torch.Tensor | None = None
    reconstruction: torch.Tensor | None = None
    pasted: torch.Tensor | None = None
    mask: torch.Tensor | None = None


def patchify(pixel_values: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, L, patch**2 * C), each patch flattened as (row, column, channel) like the official code."""
    b, c, h, w = pixel_values.shape
    if h % patch_size or w % patch_size:
        raise ValueError(f"input size ({h}, {w}) must be divisible by patch_size={patch_size}")
    gh, gw = h // patch_size, w // patch_size
    # (B, C, H, W) -> (B, C, gh, p, gw, p)
    x = pixel_values.reshape(b, c, gh, patch_size, gw, patch_size)
    # (B, C, gh, p, gw, p) -> (B, gh, gw, p, p, C) -> (B, L, p*p*C)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, gh * gw, patch_size * patch_size * c)


def unpatchify(patches: torch.Tensor, patch_size: int, grid_size: tuple[int, int], num_channels: int) -> torch.Tensor:
    """(B, L, patch**2 * C) -> (B, C, H, W); the inverse of `patchify`."""
    b, n, d = patches.shape
    gh, gw = grid_size
    if n != gh * gw or d != patch_size * patch_size * num_channels:
        raise ValueError(
            f"patches of shape {tuple(patches.shape)} do not fit a {gh}x{gw} grid of {patch_size}x{patch_size}x"
            f"{num_channels} patches"
        )
    # (B, L, p*p*C) -> (B, gh, gw, p, p, C)
    x = patches.reshape(b, gh, gw, patch_size, patch_size, num_channels)
    # (B, gh, gw, p, p, C) -> (B, C, gh, p, gw, p) -> (B, C, H, W)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(b, num_channels, gh * patch_size, gw * patch_size)


def masking_from_scores(
    scores: torch.Tensor, num_keep: int, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep the `num_keep` lowest-scoring patches of each sample.

    scores (B, L) -> ids_keep (B, num_keep), mask (B, L) with 1 = removed, ids_restore (B, L). ids_restore[i] is
    patch i's rank in the sorted order, so a patch is kept exactly when its rank is below num_keep.
    """
    ids_shuffle = torch.argsort(scores, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    mask = (ids_restore >= num_keep).to(dtype)
    return ids_shuffle[:, :num_keep], mask, ids_restore


def grid_keep_flags(grid_size: tuple[int, int], stride: int, device: torch.device | None = None) -> torch.Tensor:
    """(L,) bool, True for the top-left patch of every stride x stride cell (the paper's grid-wise sampling)."""
    rows = torch.arange(grid_size[0], device=device) % stride == 0
    cols = torch.arange(grid_size[1], device=device) % stride == 0
    return (rows[:, None] & cols[None, :]).reshape(-1)


def block_mask(noise: torch.Tensor, grid_size: tuple[int, int], num_masked: int, *, min_block: int = 16,
               min_aspect: float = 0.3) -> torch.Tensor:
    """BEiT's block-wise masking: (B, L) noise -> (B, L) float, 1 on patches covered by random rectangles.

    Rectangles (area >= min_block patches, aspect ratio in [min_aspect, 1/min_aspect]) are added until about
    `num_masked` patches are covered; the random draws are seeded by each sample's noise, so `noise` still makes
    the mask reproducible and batch-independent. The count may fall short; the caller tops it up.
    """
    gh, gw = grid_size
    out = torch.zeros(noise.shape, dtype=torch.float32)
    log_aspect = (math.log(min_aspect), math.log(1.0 / min_aspect))
    for b, row in enumerate(noise.detach().float().cpu()):
        rng = random.Random(row.numpy().tobytes())
        covered = torch.zeros(gh, gw, dtype=torch.bool)
        count = 0
        while count < num_masked:
            budget = num_masked - count
            added = 0
            for _ in range(10):  # BEiT's attempts per rectangle
                area = rng.uniform(min(min_block, budget), budget)
                aspect = math.exp(rng.uniform(*log_aspect))
                h, w = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
                if not (0 < h <= gh and 0 < w <= gw):
                    continue
                top, left = rng.randint(0, gh - h), rng.randint(0, gw - w)
                new = h * w - int(covered[top : top + h, left : left + w].sum())
                if 0 < new <= budget:
                    covered[top : top + h, left : left + w] = True
                    added = new
                    break
            if not added:
                break
            count += added
        out[b] = covered.reshape(-1).float()
    return out.to(noise.device)


def _position_table(table: torch.Tensor, dim: int, trained: tuple[int, int], grid: tuple[int, int],
                    cache: dict, *, interpolate: bool) -> torch.Tensor:
    """The (1, 1 + H*W, dim) table for an input grid; a grid other than the trained one needs `interpolate`."""
    if grid == trained:
        return table
    if not interpolate:
        raise ValueError(
            f"input gives a {grid[0]}x{grid[1]} patch grid but the model was built for {trained[0]}x{trained[1]}; "
            "pass interpolate_pos_encoding=True or set image_size"
        )
    key = (grid, table.device, table.dtype)
    if key not in cache:  # a fixed function of the grid: compute it exactly instead of resampling
        cache[key] = sincos_2d(dim, grid, num_prefix_tokens=1).to(table.device, table.dtype)
    return cache[key]


class MAEEmbeddings(nn.Module):
    """Patch tokens + fixed position embedding, then masking; class token (with its zero position) in front."""

    def __init__(self, in_channels: int, dim: int, patch_size: int, grid_size: tuple[int, int], *,
                 encoder_mask_token: bool = False) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(in_channels, dim, patch_size)
        self.dim, self.grid_size = dim, tuple(grid_size)
        self.num_prefix_tokens = 1
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        # Persistent: a ViT fine-tuned from this checkpoint starts its learned table from these values.
        self.register_buffer("position_embeddings", self.sincos_table(), persistent=True)
        # The "encoder sees mask tokens" ablation; None in the paper's design.
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim)) if encoder_mask_token else None
        self._pos_cache: dict[tuple, torch.Tensor] = {}

    def sincos_table(self, grid_size: tuple[int, int] | None = None) -> torch.Tensor:
        return sincos_2d(self.dim, grid_size or self.grid_size, num_prefix_tokens=1)

    def forward(self, pixel_values: torch.Tensor, scores: torch.Tensor, num_keep: int, *,
                interpolate_pos_encoding: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> tokens (B, 1 + num_keep, C) (or (B, 1 + L, C) with mask tokens), mask (B, L), ids_restore (B, L)."""
        if self.mask_token is None:
            x, mask, ids_restore, pos = self._embed_kept(pixel_values, scores, num_keep, interpolate_pos_encoding)
        else:
            x = self.patch_embed(pixel_values)
            b, c, gh, gw = x.shape
            pos = _position_table(self.position_embeddings, self.dim, self.grid_size, (gh, gw), self._pos_cache,
                                  interpolate=interpolate_pos_encoding).to(x.dtype)
            # (B, C, gh, gw) -> (B, L, C)
            x = x.flatten(2).transpose(1, 2) + pos[:, 1:]
            _, mask, ids_restore = masking_from_scores(scores, num_keep, x.dtype)
            x = torch.where(mask.unsqueeze(-1).bool(), self.mask_token + pos[:, 1:], x)
        cls = (self.cls_token + pos[:, :1]).expand(x.shape[0], -1, -1)
        return torch.cat([cls, x], dim=1), mask, ids_restore

    def _embed_kept(self, pixel_values: torch.Tensor, scores: torch.Tensor, num_keep: int, interpolate: bool):
        """The paper's design: the encoder never sees the removed patches, so only the kept ones are projected."""
        grid = self.patch_embed.grid(*pixel_values.shape[-2:])
        # the fixed table follows the weights' dtype (it may stay fp32 under from_pretrained(dtype=...))
        pos = _position_table(self.position_embeddings, self.dim, self.grid_size, grid, self._pos_cache,
                              interpolate=interpolate).to(self.cls_token.dtype)
        ids_keep, mask, ids_restore = masking_from_scores(scores, num_keep)
        # (L + 1, C) position table rows of the kept patches -> (B, keep, C)
        x = self.patch_embed(pixel_values, index=ids_keep) + pos[0, 1:][ids_keep]
        return x, mask.to(x.dtype), ids_restore, pos


class MAEDecoder(Encoder):
    """The light decoder: embed the encoded tokens, fill the removed positions with a shared mask token, add
    the decoder's own position table, run the block stack and predict every patch's pixels.

    It is an `Encoder` (its stack is `self.blocks`) so its keys read `decoder.blocks.N`, like the official
    `decoder_blocks.N`.
    """

    def __init__(self, encoder_dim: int, dim: int, depth: int, num_heads: int, mlp_hidden_dim: int,
                 patch_dim: int, grid_size: tuple[int, int], *, mask_token: bool = True, qkv_bias: bool = True,
                 act: str = "gelu", eps: float = 1e-6) -> None:
        super().__init__(dim, depth, num_heads, mlp_hidden_dim, qkv_bias=qkv_bias, act=act, eps=eps)
        self.dim, self.grid_size = dim, tuple(grid_size)
        self.embed = nn.Linear(encoder_dim, dim)
        # None when the encoder already filled the gaps with its own mask token (the ablation)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim)) if mask_token else None
        self.register_buffer("position_embeddings", self.sincos_table(), persistent=True)
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.pred = nn.Linear(dim, patch_dim)
        self._pos_cache: dict[tuple, torch.Tensor] = {}

    def sincos_table(self, grid_size: tuple[int, int] | None = None) -> torch.Tensor:
        return sincos_2d(self.dim, grid_size or self.grid_size, num_prefix_tokens=1)

    def forward(self, latent: torch.Tensor, ids_restore: torch.Tensor, grid_size: tuple[int, int], *,
                interpolate_pos_encoding: bool = False, attn_implementation: str = "sdpa") -> torch.Tensor:
        """latent (B, 1 + visible, C_enc) -> predicted patches (B, L, patch**2 * C)."""
        x = self.embed(latent)
        b, n, d = x.shape
        num_patches = ids_restore.shape[1]
        if self.mask_token is not None:  # the encoder saw visible patches only: put mask tokens in the gaps
            filler = self.mask_token.expand(b, num_patches + 1 - n, -1)
            # (B, visible, D) + (B, removed, D) in shuffled order -> (B, L, D) in image order
            tokens = torch.cat([x[:, 1:], filler], dim=1)
            tokens = torch.gather(tokens, 1, ids_restore.unsqueeze(-1).expand(-1, -1, d))
            x = torch.cat([x[:, :1], tokens], dim=1)
        x = x + _position_table(self.position_embeddings, self.dim, self.grid_size, tuple(grid_size),
                                self._pos_cache, interpolate=interpolate_pos_encoding).to(x.dtype)
        x, _, _ = super().forward(x, attn_implementation=attn_implementation)
        return self.pred(self.norm(x[:, 1:]))


class MAEPreTrainedModel(HFVisionPreTrainedModel):
    config_class = MAEConfig
    config: MAEConfig
    base_model_prefix = "vit"
    _no_split_modules = ["MAEEmbeddings", "Block"]
    _auto_classes = {"AutoModel": "MAEModel", "AutoModelForPreTraining": "MAEForPreTraining"}
    # The decoder is a pre-training head: AutoModel on a pre-training checkpoint drops it, and pre-training
    # can start from an encoder-only checkpoint with a fresh one.
    _head_modules = (*HEAD_MODULES, "decoder")

    def _init_weights(self, module: nn.Module) -> None:
        """The official recipe: xavier-uniform Linear layers and patch projection (seen as a Linear), normal(0.02)
        class and mask tokens, LayerNorm at (1, 0), sin-cos tables. Only `init.*` calls, so that tensors loaded
        from a checkpoint (flagged by transformers) are left alone; and only on modules that own the tensors,
        because transformers skips modules without direct parameters in remote code."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):  # the patch projection, (dim, C, p, p) seen as a (dim, C*p*p) Linear
            bound = math.sqrt(6.0 / (module.weight.shape[0] + module.weight[0].numel()))
            init.uniform_(module.weight, -bound, bound)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, MAEEmbeddings):
            init.normal_(module.cls_token, std=std)
            if module.mask_token is not None:
                init.normal_(module.mask_token, std=std)
            init.copy_(module.position_embeddings, module.sincos_table())
        elif isinstance(module, MAEDecoder):
            if module.mask_token is not None:
                init.normal_(module.mask_token, std=std)
            init.copy_(module.position_embeddings, module.sincos_table())
        else:
            super()._init_weights(module)

    def adapt_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Fixed tables saved for another grid are recomputed for ours (they are functions of the grid)."""
        for key, own in self.state_dict().items():
            if key.endswith("position_embeddings") and key in state_dict and state_dict[key].shape != own.shape:
                state_dict[key] = self.get_submodule(key.rpartition(".")[0]).sincos_table().to(own.dtype)
        return super().adapt_state_dict(state_dict)

    def mask_scores(self, batch: int, grid_size: tuple[int, int], device: torch.device,
                      noise: torch.Tensor | None) -> tuple[torch.Tensor, int]:
        """Per-sample patch scores (lowest are kept) and the number kept, for the configured mask strategy."""
        num_patches = grid_size[0] * grid_size[1]
        if noise is None:
            noise = torch.rand(batch, num_patches, device=device)
        elif tuple(noise.shape) != (batch, num_patches):
            raise ValueError(f"noise has shape {tuple(noise.shape)}, expected (batch, patches)=({batch}, {num_patches})")
        noise = noise.to(device)
        num_keep = int(num_patches * (1 - self.config.mask_ratio))  # the official rounding
        strategy = self.config.mask_strategy
        if strategy == "grid":
            keep = grid_keep_flags(grid_size, self.config.mask_grid_stride, device)
            return noise + (~keep).to(noise.dtype), int(keep.sum())  # kept cells sort first
        if strategy == "block":
            covered = block_mask(noise, grid_size, num_patches - num_keep)
            return noise + 2 * covered.to(noise.dtype), num_keep  # blocks sort last; highest noise tops them up
        return noise, num_keep


class MAEModel(MAEPreTrainedModel):
    """The MAE encoder: a ViT run on the visible patches of each image."""

    def __init__(self, config: MAEConfig) -> None:
        super().__init__(config)
        self.embeddings = MAEEmbeddings(config.num_channels, config.hidden_size, config.patch_size,
                                        config.grid_size, encoder_mask_token=config.encoder_mask_tokens)
        self.encoder = vit_encoder(config)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        """The patch embedding (also for the kept patches only); hooks on it see every input."""
        return self.embeddings.patch_embed

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        *,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        interpolate_pos_encoding: bool = False,
        return_dict: bool | None = None,
    ) -> MAEModelOutput | tuple:
        """noise (B, L) in [0, 1): patches with the lowest noise stay visible. Without noise, training masks
        at random (noise drawn uniformly), while evaluation encodes the whole image, every patch in image order:
        deterministic features, which is what `AutoModel` / `pipeline("image-feature-extraction")` use."""
        if pixel_values is None:
            raise ValueError("pixel_values is required")
        if pixel_values.shape[1] != self.config.num_channels:
            raise ValueError(f"pixel_values has {pixel_values.shape[1]} channels, num_channels={self.config.num_channels}")
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        patch = self.config.patch_size
        grid = (pixel_values.shape[2] // patch, pixel_values.shape[3] // patch)
        if noise is None and not self.training:
            # (L,) patch indices as scores -> (B, L): all kept, in image order
            num_keep = grid[0] * grid[1]
            scores = torch.arange(num_keep, device=pixel_values.device, dtype=torch.float32)
            scores = scores.expand(pixel_values.shape[0], -1)
        else:
            scores, num_keep = self.mask_scores(pixel_values.shape[0], grid, pixel_values.device, noise)
        weight = self.embeddings.patch_embed.proj.weight
        x, mask, ids_restore = self.embeddings(pixel_values.to(weight.dtype), scores, num_keep,
                                               interpolate_pos_encoding=interpolate_pos_encoding)
        x, hidden_states, attentions = self.encoder(
            x,
            attn_implementation=self.attn_implementation,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
        )
        out = MAEModelOutput(last_hidden_state=self.norm(x), mask=mask, ids_restore=ids_restore,
                             hidden_states=hidden_states, attentions=attentions)
        return out if (self.config.return_dict if return_dict is None else return_dict) else out.to_tuple()


class MAEForPreTraining(MAEPreTrainedModel):
    """Encoder + decoder + pixel loss on the removed patches; `reconstruct` turns predictions into images."""

    def __init__(self, config: MAEConfig) -> None:
        super().__init__(config)
        self.vit = MAEModel(config)
        self.decoder = MAEDecoder(
            config.hidden_size,
            config.decoder_hidden_size,
            config.decoder_num_hidden_layers,
            config.decoder_num_attention_heads,
            config.decoder_intermediate_size,
            config.patch_size**2 * config.num_channels,
            config.grid_size,
            mask_token=not config.encoder_mask_tokens,
            qkv_bias=config.qkv_bias,
            act=config.hidden_act,
            eps=config.layer_norm_eps,
        )
        self.post_init()

    def patchify(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, L, patch**2 * C)."""
        return patchify(pixel_values, self.config.patch_size)

    def unpatchify(self, patches: torch.Tensor, image_size: tuple[int, int] | None = None) -> torch.Tensor:
        """(B, L, patch**2 * C) -> (B, C, H, W) for an image of `image_size` (default: the config's)."""
        height, width = pair(image_size if image_size is not None else self.config.image_size)
        patch = self.config.patch_size
        return unpatchify(patches, patch, (height // patch, width // patch), self.config.num_channels)

    def target(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """What the decoder regresses: (B, L, patch**2 * C) pixels, normalised per patch when norm_pix_loss."""
        target = self.patchify(pixel_values)
        if self.config.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1e-6).sqrt()
        return target

    def loss(self, pixel_values: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean squared error per patch, averaged over the removed patches only (over all of them when none is
        removed, i.e. mask_ratio 0, so the loss stays finite)."""
        per_patch = (logits - self.target(pixel_values).to(logits.dtype)).pow(2).mean(dim=-1)
        if self.config.mask_ratio == 0:
            return per_patch.mean()
        return (per_patch * mask).sum() / mask.sum().clamp_min(1)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        *,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        interpolate_pos_encoding: bool = False,
        return_dict: bool | None = None,
    ) -> MAEForPreTrainingOutput | tuple:
        """noise (B, L) in [0, 1): patches with the lowest noise stay visible (drawn uniformly when None, in
        training and evaluation alike: pre-training always masks). The loss is always returned: the labels of
        pre-training are the input pixels."""
        if noise is None and pixel_values is not None:
            patch = self.config.patch_size
            num_patches = (pixel_values.shape[2] // patch) * (pixel_values.shape[3] // patch)
            noise = torch.rand(pixel_values.shape[0], num_patches, device=pixel_values.device)
        encoded = self.vit(
            pixel_values,
            noise,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            interpolate_pos_encoding=interpolate_pos_encoding,
            return_dict=True,
        )
        patch = self.config.patch_size
        grid = (pixel_values.shape[2] // patch, pixel_values.shape[3] // patch)
        logits = self.decoder(encoded.last_hidden_state, encoded.ids_restore, grid,
                              interpolate_pos_encoding=interpolate_pos_encoding,
                              attn_implementation=self.attn_implementation)
        loss = self.loss(pixel_values, logits, encoded.mask)
        out = MAEForPreTrainingOutput(loss=loss, logits=logits, mask=encoded.mask, ids_restore=encoded.ids_restore,
                                      hidden_states=encoded.hidden_states, attentions=encoded.attentions)
        return out if (self.config.return_dict if return_dict is None else return_dict) else out.to_tuple()

    @torch.no_grad()
    def reconstruct(self, pixel_values: torch.Tensor, noise: torch.Tensor | None = None, *,
                    interpolate_pos_encoding: bool = False) -> MAEReconstruction:
        """Images for inspection, from normalised `pixel_values` (B, C, H, W), as the official demo draws them.

        With norm_pix_loss the predictions are per-patch normalised; each is mapped back with the mean and std of
        the true patch (for removed patches the model never saw these: a display aid, as in the official demo).
        """
        out = self(pixel_values, noise, interpolate_pos_encoding=interpolate_pos_encoding)
        size = tuple(pixel_values.shape[-2:])
        patches = self.patchify(pixel_values)
        pred = out.logits.to(patches.dtype)
        if self.config.norm_pix_loss:
            mean = patches.mean(dim=-1, keepdim=True)
            std = (patches.var(dim=-1, keepdim=True) + 1e-6).sqrt()
            pred = pred * std + mean
        # (B, L) -> (B, L, p*p*C) -> (B, 1, H, W) after taking one channel
        mask = self.unpatchify(out.mask.to(patches.dtype).unsqueeze(-1).expand_as(patches), size)[:, :1]
        reconstruction = self.unpatchify(pred, size)
        masked = pixel_values * (1 - mask)
        pasted = masked + reconstruction * mask
        mean = torch.tensor(self.config.image_mean, dtype=patches.dtype, device=patches.device).view(1, -1, 1, 1)
        std = torch.tensor(self.config.image_std, dtype=patches.dtype, device=patches.device).view(1, -1, 1, 1)

        def to_pixels(images: torch.Tensor) -> torch.Tensor:
            return (images * std + mean).clamp(0, 1)

        return MAEReconstruction(masked=to_pixels(masked), reconstruction=to_pixels(reconstruction),
                                 pasted=to_pixels(pasted), mask=mask)

"""Swin Transformer (Liu et al. 2021): windowed attention with a relative-position bias, shifted windows,
patch merging between stages; a classifier and a multi-scale backbone for detection/segmentation heads.

Attribute names follow Microsoft's release (patch_embed.proj/norm, layers.N.blocks.M.attn.qkv/proj/
relative_position_bias_table, layers.N.downsample.norm/reduction, norm, head), so conversions are renames.
Layout is channels-last (B, H, W, C) between blocks; a block cuts its (shifted) windows with one cached gather.

Any input size works, and the model holds no per-input state: the effective window and shift of a block are
worked out per call from the feature-map size (a map no larger than the window is one window, unshifted, as in
the paper), padding to whole windows is cropped back, and the shape-only tensors (shift masks, relative index,
the gather that shifts and partitions a map) come from a small per-model cache keyed by geometry and device, so
they are built once and never mutate a module. `window_partition`/`window_reverse` are the readable reference
that the gather is tested against.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.backbone_utils import BackboneMixin
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BackboneOutput
from transformers.utils import ModelOutput

from ..config_checks import pair
from ..layers.attention import Attention
from ..layers.drop_path import DropPath
from ..layers.mlp import Mlp
from ..layers.patch_embed import PatchEmbed
from ..layers.pos_embed import resample_pos_embed
from ..pretrained import HFVisionPreTrainedModel, classification_loss
from .configuration_swin import SwinConfig

MASK_VALUE = -100.0  # the official additive mask value between cyclic-shift regions (exp(-100) == 0 in fp32)


# ----------------------------------------------------------------------------------------------- windows
def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * H/w * W/w, w*w, C); H and W must be multiples of `window`."""
    b, h, w, c = x.shape
    # (B, H, W, C) -> (B, H/w, w, W/w, w, C) -> (B, H/w, W/w, w, w, C)
    x = x.view(b, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
    # -> (B * num_windows, w*w, C)
    return x.reshape(-1, window * window, c)


def window_reverse(windows: torch.Tensor, window: int, height: int, width: int) -> torch.Tensor:
    """(B * H/w * W/w, w*w, C) -> (B, H, W, C): the inverse of `window_partition`."""
    c = windows.shape[-1]
    # (B*nW, w*w, C) -> (B, H/w, W/w, w, w, C) -> (B, H/w, w, W/w, w, C)
    x = windows.view(-1, height // window, width // window, window, window, c).permute(0, 1, 3, 2, 4, 5)
    # -> (B, H, W, C)
    return x.reshape(-1, height, width, c)


def effective_window(
    height: int, width: int, window: int, shift: int, *, always_partition: bool = False
) -> tuple[int, int]:
    """(window, shift) actually used on a (height, width) map: a map no larger than the window is one
    unshifted window (the paper's rule), unless `always_partition` (detection backbones) keeps both."""
    if not always_partition and min(height, width) <= window:
        return min(height, width), 0
    return window, shift


def relative_position_index(window: int, table_window: int) -> torch.Tensor:
    """(w*w, w*w) indices into a (2M-1)^2 table for a window of side w <= M (w < M uses the table's centre)."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    # (2, N, 1) - (2, 1, N) -> (2, N, N): offsets in [-(w-1), w-1], shifted to [0, 2M-2]
    rel = coords[:, :, None] - coords[:, None, :] + (table_window - 1)
    return rel[0] * (2 * table_window - 1) + rel[1]


def shift_mask(height: int, width: int, window: int, shift: int) -> torch.Tensor:
    """(num_windows, w*w, w*w) additive mask for a cyclically shifted (height, width) map: tokens from
    different regions (wrapped-around border strips) of the same window must not attend to each other."""
    def regions(n: int) -> torch.Tensor:
        idx = torch.arange(n)
        return (idx >= n - window).long() + (idx >= n - shift).long()  # 0 | 1 | 2 along the axis

    label = (regions(height)[:, None] * 3 + regions(width)[None, :]).float()
    # (H, W) -> (1, H, W, 1) -> (nW, w*w)
    label = window_partition(label[None, :, :, None], window).squeeze(-1)
    different = label[:, :, None] != label[:, None, :]
    return torch.zeros(different.shape).masked_fill_(different, MASK_VALUE)


def window_order(height: int, width: int, window: int, shift: int) -> torch.Tensor:
    """(H*W,) source positions that lay a row-major (H, W) map out window by window after a cyclic shift:
    `x.flatten(1, 2)[:, order]` == `window_partition(torch.roll(x, (-shift, -shift), (1, 2)), window)` flattened.
    One gather instead of two rolls and a partition copy (torch.roll on CPU copies once per rolled axis)."""
    rows = torch.arange(height).view(height // window, 1, window, 1)
    cols = torch.arange(width).view(1, width // window, 1, window)
    # (H/w, W/w, w, w): window-major, then row-major inside each window
    return (((rows + shift) % height) * width + (cols + shift) % width).reshape(-1)


class _PermuteTokens(torch.autograd.Function):
    """x[:, order] along dim 1 for a permutation `order`; the gradient is the gather by its inverse (one pass,
    where index_select's own backward would zero-fill and scatter-add)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, order: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(inverse)
        return x.index_select(1, order)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (inverse,) = ctx.saved_tensors
        return grad.index_select(1, inverse), None, None


def permute_tokens(x: torch.Tensor, order: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """(B, L, C) -> (B, L, C) with tokens in `order` (`inverse` is its inverse permutation)."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _PermuteTokens.apply(x, order, inverse)
    return x.index_select(1, order)


class WindowCache:
    """Shape-only tensors (shift masks, relative-position indices) built once per geometry and device.

    A plain object, not a buffer: it is never saved, never moved by `.to()`, and rebuilt lazily for a new
    key instead of mutating any module. `builds` counts constructions (tests check reuse).

    Only concrete eager results are kept. Under `torch.compile`, `torch.export` or ONNX export the tensors are
    built inside the traced graph on every call and nothing is read from or written to the store: a traced
    (fake/functional) tensor kept here would leak into later eager calls, and symbolic sizes cannot be keys.
    """

    def __init__(self, max_entries: int = 64) -> None:
        self.max_entries = max_entries
        self.builds = 0
        self._store: dict[tuple, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self._store)

    def clear(self) -> None:
        self._store.clear()

    def index(self, window: int, table_window: int, device: torch.device) -> torch.Tensor:
        return self._get(("index", window, table_window, device),
                         lambda: relative_position_index(window, table_window).reshape(-1).to(device))

    def mask(self, height: int, width: int, window: int, shift: int, device: torch.device,
             dtype: torch.dtype) -> torch.Tensor:
        return self._get(("mask", height, width, window, shift, device, dtype),
                         lambda: shift_mask(height, width, window, shift).to(device, dtype))

    def order(self, height: int, width: int, window: int, shift: int,
              device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(order, inverse) of `window_order` for a padded (height, width) map."""
        def build() -> torch.Tensor:
            order = window_order(height, width, window, shift)
            return torch.stack([order, torch.argsort(order)]).to(device)

        both = self._get(("order", height, width, window, shift, device), build)
        return both[0], both[1]

    def _get(self, key: tuple, build) -> torch.Tensor:
        if torch.compiler.is_compiling() or any(isinstance(k, torch.SymInt) for k in key):
            return build()  # traced: part of the graph, never stored (see the class docstring)
        value = self._store.get(key)
        if value is None:
            with torch.inference_mode(False):  # built under inference_mode, still usable by a later training step
                value = build()
            if type(value) is not torch.Tensor:  # e.g. built under a user's FakeTensorMode: use once, keep nothing
                return value
            if len(self._store) >= self.max_entries:
                self._store.pop(next(iter(self._store)))
            self._store[key] = value
            self.builds += 1
        return value

    def __deepcopy__(self, memo) -> WindowCache:  # a copied model starts with an empty cache of its own
        return WindowCache(self.max_entries)


@dataclass(frozen=True)
class WindowPlan:
    """How one block cuts a (height, width) map this call: window side, shift, padded size, cached tensors."""

    window: int
    shift: int
    padded: tuple[int, int]
    index: torch.Tensor | None  # (w*w*w*w,) into the bias table, None without relative bias
    mask: torch.Tensor | None  # (nW, w*w, w*w), None without shift
    order: torch.Tensor  # (Hp*Wp,) gather that shifts and partitions the padded map (see `window_order`)
    inverse: torch.Tensor  # (Hp*Wp,) its inverse: windows back to the row-major map, shift undone


# ----------------------------------------------------------------------------------------------- layers
class SwinPatchEmbed(PatchEmbed):
    """(B, C_in, H, W) -> (B, H/p, W/p, dim), channels-last; sides that are not multiples of p are zero-padded."""

    def __init__(self, in_channels: int, dim: int, patch_size: int, *, norm: bool = True, eps: float = 1e-5) -> None:
        super().__init__(in_channels, dim, patch_size)
        self.norm = nn.LayerNorm(dim, eps=eps) if norm else nn.Identity()

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        h, w = pixel_values.shape[-2:]
        ph, pw = self.patch_size
        if h % ph or w % pw:
            pixel_values = F.pad(pixel_values, (0, -w % pw, 0, -h % ph))
        # (B, dim, H', W') -> (B, H', W', dim)
        return self.norm(self.proj(pixel_values).permute(0, 2, 3, 1))


class PatchMerging(nn.Module):
    """(B, H, W, C) -> (B, ceil(H/2), ceil(W/2), 2C): concatenate each 2x2 neighbourhood, LayerNorm, Linear."""

    def __init__(self, dim: int, *, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim, eps=eps)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
            h, w = h + h % 2, w + w % 2
        # (B, H, W, C) -> (B, H/2, 2[row], W/2, 2[col], C) -> (B, H/2, W/2, 2[col], 2[row], C) -> (B, H/2, W/2, 4C):
        # the official concat order x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]
        x = x.view(b, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 4, 2, 5).reshape(b, h // 2, w // 2, 4 * c)
        return self.reduction(self.norm(x))


class WindowAttention(Attention):
    """The shared `Attention` on windows folded into the batch axis, plus the learned relative-position bias
    table ((2M-1)^2, heads) that is added, with the shift mask, as `attn_bias`.

    Fused kernels (sdpa) need the bias at batch size, one copy per image. When the attention weights are
    materialised anyway (eager, `output_attentions`, or CPU training, where sdpa has no fused kernel for a
    bias that needs a gradient and runs the same math), `forward` broadcasts the per-window bias over the
    batch instead, as the official code does, and skips that copy. The same holds for an eval-mode forward with
    gradients enabled (the table still needs one); there the fused path would also break `torch.onnx.export`
    (dynamo), which records the kernel's output layout at trace time and decomposes sdpa to another layout.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, *, qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, relative_position_bias: bool = True) -> None:
        super().__init__(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop)
        self.window_size = window_size
        self.relative_position_bias_table = (
            nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads)) if relative_position_bias else None
        )

    def window_bias(self, plan: WindowPlan) -> torch.Tensor | None:
        """Relative bias (heads, N, N) plus shift mask (nW, N, N) -> (nW | 1, heads | 1, N, N), or None."""
        n = plan.window * plan.window
        bias = None
        if self.relative_position_bias_table is not None:
            # (N*N, heads) -> (N, N, heads) -> (1, heads, N, N)
            bias = self.relative_position_bias_table[plan.index].view(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        if plan.mask is None:
            return bias
        mask = plan.mask.unsqueeze(1)  # (nW, 1, N, N)
        return mask if bias is None else mask + bias.to(mask.dtype)

    def attn_bias(self, plan: WindowPlan, batch: int) -> torch.Tensor | None:
        """`window_bias` as the shared Attention's `attn_bias`: (B*nW | 1, heads | 1, N, N)."""
        bias = self.window_bias(plan)
        if bias is None or bias.shape[0] == 1:
            return bias
        num_windows, heads, n, _ = bias.shape
        # (nW, h, N, N) -> (B, nW, h, N, N) -> (B*nW, h, N, N): window-major within each image, as partitioned
        return bias.unsqueeze(0).expand(batch, -1, -1, -1, -1).reshape(batch * num_windows, heads, n, n)

    def forward(
        self,
        x: torch.Tensor,
        plan: WindowPlan,
        *,
        attn_implementation: str = "sdpa",
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B*nW, N, C) windows -> (B*nW, N, C), plus weights (B*nW, heads, N, N) when asked for."""
        bw, n, c = x.shape
        batch = bw * n // (plan.padded[0] * plan.padded[1])
        table = self.relative_position_bias_table
        materialise = (output_attentions or attn_implementation == "eager"
                       or (x.device.type == "cpu" and torch.is_grad_enabled()
                           and (self.training or (table is not None and table.requires_grad))))
        if not materialise:
            return super().forward(x, self.attn_bias(plan, batch), attn_implementation=attn_implementation)
        # (B*nW, N, 3*C) -> 3 x (B*nW, N, heads, head_dim) -> 3 x (B*nW, heads, N, head_dim); unbinding before the
        # transpose lets backward stack the gradients straight into the qkv output layout (one copy, not two)
        q, k, v = (t.transpose(1, 2) for t in self.qkv(x).view(bw, n, 3, self.num_heads, self.head_dim).unbind(2))
        scores = torch.matmul(q * self.scaling, k.transpose(-2, -1))  # (B*nW, heads, N, N)
        bias = self.window_bias(plan)
        if bias is not None:
            # (B*nW, h, N, N) -> (B, nW, h, N, N) + (nW | 1, h | 1, N, N) broadcast over the batch
            scores = (scores.view(batch, -1, self.num_heads, n, n) + bias).view(bw, self.num_heads, n, n)
        weights = scores.softmax(dim=-1, dtype=torch.float32).to(q.dtype)
        weights = F.dropout(weights, p=self.attn_drop, training=self.training)
        returned = None
        if output_attentions:
            # (B*nW, h, N, N) -> (B, nW, h, N, N), batch first like every other output; the product below reads a
            # view of it, so the returned tensor is on the graph (retain_grad() on it gets a gradient)
            returned = weights.view(batch, -1, self.num_heads, n, n)
            weights = returned.view(bw, self.num_heads, n, n)
        # (B*nW, heads, N, head_dim) -> (B*nW, N, heads, head_dim) -> (B*nW, N, C)
        out = torch.matmul(weights, v).transpose(1, 2).reshape(bw, n, c)
        return self.proj_drop(self.proj(out)), returned


class SwinBlock(GradientCheckpointingLayer):
    """(B, H, W, C) -> (B, H, W, C): x + DropPath(W-MSA(LN(x))), then x + DropPath(MLP(LN(x)))."""

    def __init__(self, dim: int, num_heads: int, window_size: int, mlp_hidden_dim: int, *, shifted: bool,
                 qkv_bias: bool = True, act: str = "gelu", drop: float = 0.0, attn_drop: float = 0.0,
                 drop_path: float = 0.0, eps: float = 1e-5, relative_position_bias: bool = True) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift_size = window_size // 2 if shifted else 0  # the configured shift; the used one is per call
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = WindowAttention(dim, num_heads, window_size, qkv_bias=qkv_bias, attn_drop=attn_drop,
                                    proj_drop=drop, relative_position_bias=relative_position_bias)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, mlp_hidden_dim, act=act, drop=drop)

    def plan(self, height: int, width: int, cache: WindowCache, device: torch.device, dtype: torch.dtype, *,
             always_partition: bool = False) -> WindowPlan:
        window, shift = effective_window(height, width, self.window_size, self.shift_size,
                                         always_partition=always_partition)
        padded = (-(-height // window) * window, -(-width // window) * window)  # integer ceil: SymInt-safe
        index = cache.index(window, self.window_size, device) if self.attn.relative_position_bias_table is not None \
            else None
        mask = cache.mask(*padded, window, shift, device, dtype) if shift else None
        order, inverse = cache.order(*padded, window, shift, device)
        return WindowPlan(window, shift, padded, index, mask, order, inverse)

    def forward(self, x: torch.Tensor, plan: WindowPlan, *, attn_implementation: str = "sdpa",
                output_attentions: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, h, w, c = x.shape
        (hp, wp), window, shift = plan.padded, plan.window, plan.shift
        y = self.norm1(x)
        if (hp, wp) != (h, w):
            y = F.pad(y, (0, 0, 0, wp - w, 0, hp - h))
        # (B, Hp, Wp, C) -> (B, Hp*Wp, C) in shifted-window order -> (B*nW, w*w, C)
        windows = permute_tokens(y.reshape(b, hp * wp, c), plan.order, plan.inverse).view(-1, window * window, c)
        out, weights = self.attn(windows, plan, attn_implementation=attn_implementation,
                                 output_attentions=output_attentions)
        # (B*nW, w*w, C) -> (B, Hp*Wp, C) row-major, shift undone -> (B, Hp, Wp, C)
        y = permute_tokens(out.view(b, hp * wp, c), plan.inverse, plan.order).view(b, hp, wp, c)
        if (hp, wp) != (h, w):
            y = y[:, :h, :w]
        x = x + self.drop_path(y)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x, weights  # weights: (B, nW, heads, N, N) or None


class SwinStage(nn.Module):
    """Blocks alternating regular and shifted windows, then (except the last stage) patch merging."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, mlp_hidden_dim: int, *,
                 downsample: bool, shifted_windows: bool = True, drop_path: list[float] | None = None,
                 **block_kwargs) -> None:
        super().__init__()
        drop_path = drop_path or [0.0] * depth
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window_size, mlp_hidden_dim, shifted=shifted_windows and i % 2 == 1,
                      drop_path=drop_path[i], **block_kwargs)
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim, eps=block_kwargs.get("eps", 1e-5)) if downsample else None

    def forward(self, x: torch.Tensor, cache: WindowCache, *, always_partition: bool = False,
                attn_implementation: str = "sdpa", output_attentions: bool = False,
                hidden_views: list | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
        """Returns (output after merging, output before merging (this stage's features), attentions).
        `hidden_views`: a list to which the features' (flat, channels-first) views are appended (see
        `_graph_views`)."""
        _, h, w, _ = x.shape
        plans: dict[bool, WindowPlan] = {}
        attentions = ()
        for block in self.blocks:
            key = bool(block.shift_size)
            if key not in plans:  # one plan per kind of block: masks and index are shared by the stage
                plans[key] = block.plan(h, w, cache, x.device, x.dtype, always_partition=always_partition)
            x, weights = block(x, plans[key], attn_implementation=attn_implementation,
                               output_attentions=output_attentions)
            if output_attentions:
                attentions += (weights,)
        if hidden_views is not None:
            x = _graph_views(x, hidden_views)
        features = x
        if self.downsample is not None:
            x = self.downsample(x)
        return x, features, attentions


def _graph_views(x: torch.Tensor, views: list) -> torch.Tensor:
    """Append x's (B, H*W, C) and (B, C, H, W) views to `views` and return x (B, H, W, C) again as a view of
    them: whatever reads the result goes through both, so returned hidden states are on the graph (as in
    transformers' Swin, `retain_grad()` on them gets a gradient). Views only: no copy."""
    _, h, w, _ = x.shape
    flat = x.flatten(1, 2)  # (B, H, W, C) -> (B, H*W, C)
    reshaped = flat.unflatten(1, (h, w)).permute(0, 3, 1, 2)  # (B, H*W, C) -> (B, H, W, C) -> (B, C, H, W)
    views.append((flat, reshaped))
    return reshaped.permute(0, 2, 3, 1)  # (B, C, H, W) -> (B, H, W, C)


# ----------------------------------------------------------------------------------------------- outputs
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
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, WindowAttention):
            if module.relative_position_bias_table is not None:
                init.trunc_normal_(module.relative_position_bias_table, std=std)
        elif isinstance(module, SwinModel):
            if module.absolute_pos_embed is not None:
                init.trunc_normal_(module.absolute_pos_embed, std=std)

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
            x = _graph_views(x, hidden_views)
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


__all__ = ["SwinModel", "SwinForImageClassification", "SwinBackbone", "SwinPreTrainedModel",
           "window_partition", "window_reverse", "WindowCache"]

"""Swin's window geometry: partitioning a channels-last map into (shifted) windows, the shift mask, the
relative-position index, and the per-model cache of these shape-only tensors.

Everything here depends on shapes only. `window_partition`/`window_reverse` are the readable reference; the
model cuts windows with one gather (`window_order`, `permute_tokens`), tested against that reference.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

MASK_VALUE = -100.0  # the official additive mask value between cyclic-shift regions (exp(-100) == 0 in fp32)


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

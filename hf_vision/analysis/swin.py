"""Swin analyses: per-window attention of one stage and the shifted-window partition with its region mask.

Swin attends inside M x M windows; every other block cyclically shifts the map by M // 2 first, so windows
straddle the previous partition's borders. After the shift, a window at the bottom/right edge holds tokens
from up to four regions that were not neighbours in the image (they wrapped around); the attention mask keeps
those regions apart. Coordinates below are token positions of the stage's feature map; `rolled` means after the
cyclic shift (rolled[y] = original[(y + shift) % H], as `torch.roll(x, -shift)` gives).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .inspect_model import AnalysisNotApplicable, family_of


def window_index(height: int, width: int, window: int) -> np.ndarray:
    """(H, W) window number of each position of a map partitioned into M x M windows, row-major over windows
    (the order `window_partition` folds them into the batch). H and W must be multiples of M."""
    if height % window or width % window:
        raise ValueError(f"map {height}x{width} is not a whole number of {window}x{window} windows")
    rows, cols = np.meshgrid(np.arange(height) // window, np.arange(width) // window, indexing="ij")
    return rows * (width // window) + cols


def shifted_window_index(height: int, width: int, window: int, shift: int) -> np.ndarray:
    """(H, W) window number of each ORIGINAL position under the shifted partition (wrapped pieces share the
    number of the window they are folded into)."""
    rolled = window_index(height, width, window)
    # original position i sits at rolled position (i - shift) % H
    return np.roll(rolled, shift=(shift, shift), axis=(0, 1))


def shift_regions(height: int, width: int, window: int, shift: int) -> np.ndarray:
    """(H, W) region label 0..8 of each ROLLED position: 3 bands per axis (untouched, the last window's
    un-wrapped part, the wrapped-around strip), label = 3 * row band + column band."""
    if not 0 < shift < window:
        raise ValueError(f"shift={shift} must be in (0, window={window})")

    def bands(n: int) -> np.ndarray:
        band = np.zeros(n, dtype=np.int64)
        band[n - window:n - shift] = 1
        band[n - shift:] = 2
        return band

    return 3 * bands(height)[:, None] + bands(width)[None, :]


def region_attention_mask(height: int, width: int, window: int, shift: int) -> np.ndarray:
    """(num_windows, M*M, M*M) bool: True where query and key of a shifted window may attend (same region)."""
    labels = shift_regions(height, width, window, shift)
    windows = window_index(height, width, window)
    # (H, W) -> (num_windows, M*M): each window's labels in row-major token order
    order = np.argsort(windows.reshape(-1), kind="stable")
    per_window = labels.reshape(-1)[order].reshape(-1, window * window)
    return per_window[:, :, None] == per_window[:, None, :]


def window_attention_map(
    attention: torch.Tensor,
    padded: tuple[int, int],
    window: int,
    shift: int,
    size: tuple[int, int],
    *,
    query: int | None = None,
) -> np.ndarray:
    """Attention of one query token per window, heads averaged, laid out on the ORIGINAL feature map.

    attention: (B, num_windows, heads, M*M, M*M) of one block (num_windows over the padded map, row-major).
    query: token index inside each window (default its centre). Returns (B, h, w) with each window's weights
    (summing to one per window) at the positions of its keys; padding is cropped off.
    """
    b, nw, _, n, _ = attention.shape
    hp, wp = padded
    if n != window * window or nw != (hp // window) * (wp // window):
        raise ValueError(
            f"attention of shape {tuple(attention.shape)} does not match {hp}x{wp} map in {window}x{window} windows"
        )
    query = (window // 2) * window + window // 2 if query is None else query
    rows = attention.detach().float().cpu().mean(dim=2)[:, :, query]  # (B, nW, M*M)
    # (B, nW, M*M) -> (B, Hp/M, Wp/M, M, M) -> (B, Hp/M, M, Wp/M, M) -> (B, Hp, Wp), still rolled
    rolled = rows.reshape(b, hp // window, wp // window, window, window).permute(0, 1, 3, 2, 4).reshape(b, hp, wp)
    original = torch.roll(rolled, shifts=(shift, shift), dims=(1, 2)) if shift else rolled
    return original[:, : size[0], : size[1]].numpy()


def query_positions(padded: tuple[int, int], window: int, shift: int, size: tuple[int, int],
                    *, query: int | None = None) -> np.ndarray:
    """(K, 2) original (row, col) of each window's query token that falls inside the unpadded map."""
    hp, wp = padded
    query = (window // 2) * window + window // 2 if query is None else query
    qr, qc = divmod(query, window)
    rows, cols = np.meshgrid(np.arange(0, hp, window) + qr, np.arange(0, wp, window) + qc, indexing="ij")
    rows, cols = (rows.reshape(-1) + shift) % hp, (cols.reshape(-1) + shift) % wp
    inside = (rows < size[0]) & (cols < size[1])
    return np.stack([rows[inside], cols[inside]], axis=1)


def window_attention_distances(attention: torch.Tensor, padded: tuple[int, int], window: int, shift: int,
                               size: tuple[int, int], stride: int) -> np.ndarray:
    """Mean attention distance of one windowed block per image and head: (B, heads), in input pixels.

    Like ViT's (`attention.attention_distances`) but inside windows: token distances are measured on the
    ORIGINAL map, so a shifted window's wrapped-around pieces (masked anyway) would count their true distance.
    Padding tokens are dropped as queries and as keys, with each query's weights renormalised over real keys.
    """
    b, nw, heads, n, _ = attention.shape
    hp, wp = padded
    # original (row, col) of every token of every window, window-major as the model folds them
    rows, cols = np.meshgrid(np.arange(hp), np.arange(wp), indexing="ij")
    order = np.argsort(window_index(hp, wp, window).reshape(-1), kind="stable")
    rows = (rows.reshape(-1)[order] + shift) % hp  # rolled position -> original position
    cols = (cols.reshape(-1)[order] + shift) % wp
    # (H*W,) -> (nW, M*M)
    rows, cols = rows.reshape(nw, n), cols.reshape(nw, n)
    valid = torch.from_numpy((rows < size[0]) & (cols < size[1]))  # (nW, M*M)
    coords = torch.from_numpy(np.stack([rows, cols], axis=-1)).to(torch.float64) * stride  # (nW, M*M, 2)
    dist = torch.cdist(coords, coords)  # (nW, M*M, M*M)
    w = attention.detach().to(torch.float64).cpu() * valid[None, :, None, None, :]
    w = w / w.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    per_query = (w * dist[None, :, None]).sum(dim=-1)  # (B, nW, heads, M*M)
    q = valid[None, :, None, :].to(torch.float64)
    return ((per_query * q).sum(dim=(1, 3)) / q.sum(dim=(1, 3))).numpy()


# ----------------------------------------------------------------------------------------------- the model side

@dataclass(frozen=True)
class BlockWindows:
    """One block's windows on a stage map: the plan the model used and its attention weights."""

    block: int  # index inside the stage
    window: int
    shift: int
    size: tuple[int, int]  # the stage map (h, w)
    padded: tuple[int, int]
    attention: torch.Tensor  # (B, nW, heads, M*M, M*M)


def swin_backbone(model: nn.Module) -> nn.Module:
    if family_of(model) != "swin":
        raise AnalysisNotApplicable(f"{type(model).__name__} is not a Swin model: it has no windows")
    return getattr(model, "swin", model)


@torch.no_grad()
def all_stage_windows(model: nn.Module, pixel_values: torch.Tensor) -> list[tuple[list[BlockWindows], int]]:
    """One forward pass: for every stage, its blocks' window plans and attentions, and its pixels per token."""
    swin = swin_backbone(model)
    depths = list(model.config.depths)
    features, attentions = swin.stage_features(pixel_values, output_attentions=True)
    stages, offset = [], 0
    for stage, layer in enumerate(swin.layers):
        _, h, w, _ = features[stage + 1].shape  # the stage's map before patch merging
        blocks = []
        for k, block in enumerate(layer.blocks):
            plan = block.plan(h, w, swin.window_cache, pixel_values.device, pixel_values.dtype)
            blocks.append(BlockWindows(k, plan.window, plan.shift, (h, w), tuple(plan.padded),
                                       attentions[offset + k]))
        offset += depths[stage]
        stages.append((blocks, model.config.patch_size * 2**stage))
    return stages


def stage_windows(model: nn.Module, pixel_values: torch.Tensor, stage: int) -> tuple[list[BlockWindows], int]:
    """Each block of `stage` (0-based) with its window plan and attention; also the stage's pixels per token."""
    swin_backbone(model)  # raises for a model without windows
    num_stages = len(model.config.depths)
    if not 0 <= stage < num_stages:
        raise ValueError(f"stage={stage} is not a stage of this model; accepted values: 0..{num_stages - 1}")
    return all_stage_windows(model, pixel_values)[stage]


def swin_attention_distances(stages: list[tuple[list[BlockWindows], int]]) -> list[np.ndarray]:
    """Mean attention distance of every block (in order through the stages): a list of (B, heads) arrays."""
    return [window_attention_distances(b.attention, b.padded, b.window, b.shift, b.size, stride)
            for blocks, stride in stages for b in blocks]


def swin_figures(
    model: nn.Module,
    pixel_values: torch.Tensor,
    display: np.ndarray,
    names: Sequence[str],
    output_dir: str | Path,
    *,
    stage: int = 0,
    more_images: Sequence[Callable[[], torch.Tensor]] = (),
    progress: bool = True,
) -> list:
    """Window attention of `stage` (a regular and a shifted block) per shown image, the in-window mean attention
    distance of every block (over the shown images and `more_images`, each a callable giving (1, C, H, W)), and
    the shift-region figure."""
    from tqdm.auto import tqdm

    num_stages = len(model.config.depths)
    if not 0 <= stage < num_stages:
        raise ValueError(f"stage={stage} is not a stage of this model; accepted values: 0..{num_stages - 1}")
    per_image, distances = [], []
    shown = pixel_values.shape[0]
    for i in tqdm(range(shown + len(more_images)), desc="swin windows", unit="image", disable=not progress):
        stages = all_stage_windows(model, pixel_values[i:i + 1] if i < shown else more_images[i - shown]())
        distances.append(swin_attention_distances(stages))
        if i >= shown:
            continue
        blocks, stride = stages[stage]
        drawn = [blocks[0]] + [b for b in blocks[1:2] if b.shift != blocks[0].shift]
        per_image.append([
            (b, window_attention_map(b.attention, b.padded, b.window, b.shift, b.size)[0],
             query_positions(b.padded, b.window, b.shift, b.size),
             shifted_window_index(*b.padded, b.window, b.shift)[: b.size[0], : b.size[1]])
            for b in drawn
        ])
    output_dir = Path(output_dir)
    return [_window_figure(display, per_image, names, output_dir, stride=stride, stage=stage),
            _distance_figure(distances, stages, output_dir),
            _shift_figure(per_image[0], output_dir, stage=stage)]


def _window_figure(display: np.ndarray, per_image: list, names: Sequence[str], output_dir: Path, *, stride: int,
                   stage: int):
    from . import plots
    from .report import FigureRecord

    fig = plots.plot_swin_window_attention(display, per_image, list(names), stride=stride, stage=stage)
    plots.save_figure(fig, output_dir / "swin_window_attention.png")
    first = per_image[0]
    return FigureRecord(
        "swin_window_attention.png",
        f"Stage {stage + 1}: attention of each window's centre token (heads averaged) in a regular block"
        + (" and a shifted block" if len(first) > 1 else " (this stage has no shifted block at this size)")
        + f"; lines are window borders ({first[0][0].window}x{first[0][0].window} tokens of {stride}px).",
    )


def _distance_figure(distances: list, stages: list, output_dir: Path):
    """Mean attention distance of every block, averaged over the images (heads differ per stage)."""
    from . import plots
    from .report import FigureRecord

    per_block = [np.concatenate([d[k] for d in distances]).mean(axis=0) for k in range(len(distances[0]))]
    labels = [f"{s + 1}.{b.block + 1}" for s, (blocks, _) in enumerate(stages) for b in blocks]
    fig = plots.plot_attention_distance(per_block, layer_labels=labels,
                                        title=f"Swin: mean attention distance inside windows over "
                                              f"{len(distances)} images")
    plots.save_figure(fig, output_dir / "mean_attention_distance.png")
    return FigureRecord(
        "mean_attention_distance.png",
        "Mean attention distance (input pixels) of each head in every block (stage.block), inside its windows, "
        f"averaged over {len(distances)} images.",
    )


def _shift_figure(first: list, output_dir: Path, *, stage: int):
    """The regular and shifted partitions of the stage's shifted block, or why there is none."""
    from . import plots
    from .report import FigureRecord, Skipped

    shifted = next((b for b, _, _, _ in first if b.shift), None)
    if shifted is None:
        return Skipped("swin shift regions", f"stage {stage + 1} uses no shifted windows at this input "
                       "size (its map is no larger than a window, or shifted_windows is off)")
    hp, wp = shifted.padded
    fig = plots.plot_swin_shift_regions(
        window_index(hp, wp, shifted.window), shifted_window_index(hp, wp, shifted.window, shifted.shift),
        shift_regions(hp, wp, shifted.window, shifted.shift),
        region_attention_mask(hp, wp, shifted.window, shifted.shift),
        window=shifted.window, shift=shifted.shift, stage=stage,
    )
    plots.save_figure(fig, output_dir / "swin_shift_regions.png")
    return FigureRecord(
        "swin_shift_regions.png",
        f"Stage {stage + 1} ({hp}x{wp} tokens, window {shifted.window}, shift {shifted.shift}): regular and shifted "
        "partitions, the cyclic-shift regions, and the attention mask of the bottom-right window.",
    )

"""Drawing the analyses with matplotlib (Agg: files only, no display needed). Each function takes the arrays
the computations return and gives back a Figure with its own Agg canvas (pyplot is never used, so a notebook's
backend is left alone); `save_figure` writes it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

try:
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
except ImportError as err:  # drawing is optional: the computations need only numpy and torch
    raise ImportError("drawing the analyses needs matplotlib: pip install 'hf-vision[viz]'") from err


def _subplots(*args, figsize: tuple[float, float], **kwargs):
    """Like pyplot.subplots, on a Figure with its own Agg canvas: no pyplot state, no change to the user's
    backend (a notebook keeps its own), safe in threads and on machines without a display."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(*args, **kwargs)


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 110) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight", facecolor="white")
    return path


def _to_unit_range(x: np.ndarray) -> np.ndarray:
    lo, hi = float(np.min(x)), float(np.max(x))
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def plot_patch_filters(components: np.ndarray, explained: np.ndarray, *, title: str = "") -> Figure:
    """(k, p, p, C) principal components as RGB tiles, 7 per row as in ViT Figure 7 (left)."""
    k = components.shape[0]
    cols = min(7, k)
    rows = -(-k // cols)
    fig, axes = _subplots(rows, cols, figsize=(1.25 * cols, 1.4 * rows + 0.6), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= k:
            continue
        tile = _to_unit_range(components[i])
        ax.imshow(tile if tile.shape[-1] == 3 else tile.mean(-1), cmap=None if tile.shape[-1] == 3 else "gray",
                  interpolation="nearest")
        ax.set_title(f"PC{i + 1} {100 * explained[i]:.1f}%", fontsize=7)
    fig.suptitle(title or "RGB embedding filters (first principal components)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_position_similarity(similarity: np.ndarray, *, title: str = "") -> Figure:
    """(H, W, H, W) cosine similarities as an H x W grid of small H x W maps (ViT Figure 7, centre)."""
    gh, gw = similarity.shape[:2]
    gap = 1
    mosaic = np.full((gh * (gh + gap) - gap, gw * (gw + gap) - gap), np.nan)
    for i in range(gh):
        for j in range(gw):
            r, c = i * (gh + gap), j * (gw + gap)
            mosaic[r:r + gh, c:c + gw] = similarity[i, j]
    side = min(9.0, 2.0 + 0.45 * max(gh, gw))
    fig, ax = _subplots(figsize=(side + 1.2, side))
    cmap = colormaps["viridis"].with_extremes(bad="white")
    # the colour range starts at the smallest similarity present (learned tables rarely go below -0.3)
    low = max(-1.0, float(np.floor(10 * np.nanmin(mosaic)) / 10)) if np.nanmin(mosaic) < 1.0 else -1.0
    image = ax.imshow(mosaic, cmap=cmap, vmin=low, vmax=1.0, interpolation="nearest")
    ax.set_xticks([j * (gw + gap) + (gw - 1) / 2 for j in range(gw)], [str(j + 1) for j in range(gw)], fontsize=7)
    ax.set_yticks([i * (gh + gap) + (gh - 1) / 2 for i in range(gh)], [str(i + 1) for i in range(gh)], fontsize=7)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xlabel("Input patch column")
    ax.set_ylabel("Input patch row")
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label="Cosine similarity")
    ax.set_title(title or "Position embedding similarity", fontsize=10)
    return fig


def plot_attention_distance(distances, *, patch_size: int | None = None, layer_labels: list[str] | None = None,
                            title: str = "") -> Figure:
    """Mean attention distance in pixels as a scatter of heads per layer (ViT Figure 7, right).

    distances: (layers, heads), or a list of per-layer (heads,) arrays when the head count varies (Swin).
    """
    layers = [np.asarray(d, dtype=np.float64) for d in distances]
    heads = max(len(d) for d in layers)
    fig, ax = _subplots(figsize=(max(5.5, 0.32 * len(layers) + 2.0), 4.2))
    colours = colormaps["tab20" if heads > 10 else "tab10"]
    for h in range(heads):
        xs = [i + 1 for i, d in enumerate(layers) if h < len(d)]
        ys = [d[h] for d in layers if h < len(d)]
        ax.scatter(xs, ys, s=14, color=colours(h % colours.N), label=f"Head {h + 1}")
    ax.set_xlabel("Network depth (layer)" if layer_labels is None else "Network depth (stage.block)")
    ax.set_ylabel("Mean attention distance (pixels)")
    if layer_labels is None:
        ax.set_xticks(np.arange(1, len(layers) + 1))
    else:
        ax.set_xticks(np.arange(1, len(layers) + 1), layer_labels, rotation=90)
    ax.set_ylim(0, 1.08 * max(max(float(np.max(d)) for d in layers), 1e-6))
    ax.grid(alpha=0.3)
    if heads <= 16:
        ax.legend(fontsize=6, ncol=2, loc="lower right", markerscale=0.8)
    sub = f" (patch {patch_size}px)" if patch_size else ""
    ax.set_title(title or f"Mean attention distance per head{sub}", fontsize=10)
    fig.tight_layout()
    return fig


def upsample_map(heat: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) -> (H, W) bilinear, for overlaying a token-grid map on the image."""
    # (h, w) -> (1, 1, h, w)
    t = torch.as_tensor(np.asarray(heat, dtype=np.float32))[None, None]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def plot_rollout(images: np.ndarray, maps: np.ndarray, names: list[str], *, title: str = "") -> Figure:
    """Images (B, H, W, 3) in [0, 1] above their rollout maps (B, h, w) shown as image x mask (ViT Figure 6)."""
    b = images.shape[0]
    fig, grid = _subplots(3, b + 1, figsize=(2.4 * b + 0.5, 7.6), squeeze=False,
                             gridspec_kw={"width_ratios": [1.0] * b + [0.06]})
    axes = grid[:, :b]
    for i in range(b):
        mask = _to_unit_range(upsample_map(maps[i], images.shape[1:3]))
        axes[0, i].imshow(images[i])
        axes[0, i].set_title(names[i], fontsize=8)
        axes[1, i].imshow(images[i] * mask[..., None])
        axes[2, i].imshow(images[i])
        heat = axes[2, i].imshow(mask, cmap="jet", alpha=0.45, vmin=0, vmax=1)
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    for row, label in enumerate(("input", "image x attention", "rollout heat map")):
        axes[row, 0].set_ylabel(label, fontsize=9)
    grid[0, b].set_axis_off()
    grid[1, b].set_axis_off()
    fig.colorbar(heat, cax=grid[2, b], label="relative attention")
    fig.subplots_adjust(top=0.93, hspace=0.06, wspace=0.04)
    fig.suptitle(title or "Attention rollout to the input", fontsize=10)
    return fig


def plot_mae_reconstruction(panels: np.ndarray, names: list[str], *, mask_ratio: float, title: str = "") -> Figure:
    """(B, 4, H, W, 3) in [0, 1]: original / masked / reconstruction / reconstruction + visible per row."""
    b = panels.shape[0]
    heads = ("original", f"masked {100 * mask_ratio:.0f}%", "reconstruction", "reconstruction + visible")
    fig, axes = _subplots(b, 4, figsize=(9.0, 2.35 * b + 0.5), squeeze=False)
    for i in range(b):
        for j in range(4):
            ax = axes[i, j]
            ax.imshow(np.clip(panels[i, j], 0, 1))
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(heads[j], fontsize=9)
        axes[i, 0].set_ylabel(names[i], fontsize=8)
    fig.suptitle(title or f"MAE reconstructions at mask ratio {mask_ratio:.2f}", fontsize=10)
    fig.tight_layout()
    return fig


def _window_lines(ax, length: int, window: int, shift: int, stride: int, *, axis: str, **style) -> None:
    for k in range(length // window + 1):
        pos = ((k * window + shift) % max(length, 1)) * stride if shift else k * window * stride
        (ax.axvline if axis == "x" else ax.axhline)(pos - 0.5, **style)


def _per_window_unit(values: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Scale each window's values to max 1, so every window's pattern is visible."""
    out = np.zeros_like(values, dtype=np.float64)
    for wid in np.unique(ids):
        sel = ids == wid
        peak = values[sel].max()
        out[sel] = values[sel] / peak if peak > 0 else 0.0
    return out


def plot_swin_window_attention(display: np.ndarray, per_image: list, names: list[str], *, stride: int,
                               stage: int, title: str = "") -> Figure:
    """Per image: the input with the regular windows, then each block's centre-query attention per window."""
    b = len(per_image)
    cols = 1 + max(len(p) for p in per_image)
    fig, grid = _subplots(b, cols + 1, figsize=(2.8 * cols + 0.5, 2.8 * b + 0.6), squeeze=False,
                             gridspec_kw={"width_ratios": [1.0] * cols + [0.05]})
    heat = None
    for i, blocks in enumerate(per_image):
        img = display[i]
        h, w = blocks[0][1].shape
        extent = (-0.5, w * stride - 0.5, h * stride - 0.5, -0.5)
        ax = grid[i, 0]
        ax.imshow(img)
        _window_lines(ax, w, blocks[0][0].window, 0, stride, axis="x", color="white", lw=0.8)
        _window_lines(ax, h, blocks[0][0].window, 0, stride, axis="y", color="white", lw=0.8)
        ax.set_ylabel(names[i], fontsize=8)
        if i == 0:
            ax.set_title("input + windows", fontsize=9)
        for j, (block, amap, queries, ids) in enumerate(blocks, start=1):
            ax = grid[i, j]
            ax.imshow(img)
            heat = ax.imshow(_per_window_unit(amap, ids), cmap="jet", alpha=0.5, vmin=0, vmax=1, extent=extent,
                             interpolation="nearest")
            _window_lines(ax, w, block.window, block.shift, stride, axis="x", color="white", lw=0.8)
            _window_lines(ax, h, block.window, block.shift, stride, axis="y", color="white", lw=0.8)
            ax.scatter((queries[:, 1] + 0.5) * stride - 0.5, (queries[:, 0] + 0.5) * stride - 0.5, marker="x",
                       s=14, c="white", linewidths=1.0)
            ax.set_xlim(extent[0], extent[1])
            ax.set_ylim(extent[2], extent[3])
            if i == 0:
                kind = f"shifted by {block.shift}" if block.shift else "regular"
                ax.set_title(f"block {block.block + 1}: {kind} windows", fontsize=9)
        for ax in grid[i, :cols]:
            ax.set_xticks([])
            ax.set_yticks([])
        for ax in grid[i, len(blocks) + 1:cols]:
            ax.set_axis_off()
    for ax in grid[:, cols]:
        ax.set_axis_off()
    if heat is not None:
        cax = grid[b // 2, cols]
        cax.set_axis_on()
        fig.colorbar(heat, cax=cax, label="attention from the x query (per window, max = 1)")
    fig.subplots_adjust(top=1.0 - 0.75 / fig.get_figheight(), hspace=0.06, wspace=0.04)
    fig.suptitle(title or f"Swin stage {stage + 1}: window attention of each window's centre token", fontsize=10)
    return fig


def plot_swin_shift_regions(regular: np.ndarray, shifted: np.ndarray, regions: np.ndarray, mask: np.ndarray, *,
                            window: int, shift: int, stage: int, title: str = "") -> Figure:
    """Regular and shifted partitions, the cyclic-shift regions, and the bottom-right window's mask."""
    h, w = regular.shape
    fig, axes = _subplots(1, 4, figsize=(17, 4.6), gridspec_kw={"width_ratios": [1, 1, 1, 1.05]})
    colours = colormaps["tab20"]
    for ax, ids, name, s in ((axes[0], regular, "regular partition", 0),
                             (axes[1], shifted, f"shifted partition (by {shift}, wrapped pieces share a colour)",
                              shift)):
        ax.imshow(ids % 20, cmap=colours, vmin=0, vmax=19, interpolation="nearest")
        _window_lines(ax, w, window, s, 1, axis="x", color="black", lw=1.2)
        _window_lines(ax, h, window, s, 1, axis="y", color="black", lw=1.2)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("token column")
        ax.set_ylabel("token row")
    region_cmap = ListedColormap(colormaps["Set3"].colors[:9])
    image = axes[2].imshow(regions, cmap=region_cmap, vmin=-0.5, vmax=8.5, interpolation="nearest")
    _window_lines(axes[2], w, window, 0, 1, axis="x", color="black", lw=1.2)
    _window_lines(axes[2], h, window, 0, 1, axis="y", color="black", lw=1.2)
    for label in np.unique(regions):
        rows, cols = np.nonzero(regions == label)
        axes[2].text(cols.mean(), rows.mean(), str(label), ha="center", va="center", fontsize=9, weight="bold")
    axes[2].set_title("after the cyclic shift: regions 0-8", fontsize=9)
    axes[2].set_xlabel("token column (rolled)")
    axes[2].set_ylabel("token row (rolled)")
    fig.colorbar(image, ax=axes[2], ticks=range(9), fraction=0.046, pad=0.04, label="region")
    allowed = mask[-1].astype(float)
    image = axes[3].imshow(allowed, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axes[3].set_title(f"attention mask of the bottom-right window ({window * window} tokens)", fontsize=9)
    axes[3].set_xlabel("key token")
    axes[3].set_ylabel("query token")
    bar = fig.colorbar(image, ax=axes[3], ticks=[0, 1], fraction=0.046, pad=0.04)
    bar.ax.set_yticklabels(["masked (-100)", "allowed"])
    fig.suptitle(title or f"Swin stage {stage + 1}: shifted windows and their region mask "
                          f"(window {window}, shift {shift})", fontsize=10)
    fig.tight_layout()
    return fig

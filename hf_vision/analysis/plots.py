"""Drawing the analyses with matplotlib (Agg: files only, no display needed). Each function takes the arrays
the computations return and gives back a Figure; `save_figure` writes and closes it."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 110) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return path


def _to_unit_range(x: np.ndarray) -> np.ndarray:
    lo, hi = float(np.min(x)), float(np.max(x))
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def plot_patch_filters(components: np.ndarray, explained: np.ndarray, *, title: str = "") -> Figure:
    """(k, p, p, C) principal components as RGB tiles, 7 per row as in ViT Figure 7 (left)."""
    k = components.shape[0]
    cols = min(7, k)
    rows = -(-k // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.25 * cols, 1.4 * rows + 0.6), squeeze=False)
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
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    cmap = plt.get_cmap("viridis").copy()
    cmap.set_bad("white")
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


def plot_attention_distance(distances: np.ndarray, *, patch_size: int | None = None, title: str = "") -> Figure:
    """(layers, heads) mean attention distance in pixels as a scatter of heads per layer (ViT Figure 7, right)."""
    layers, heads = distances.shape
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    colours = plt.get_cmap("tab20" if heads > 10 else "tab10")
    for h in range(heads):
        ax.scatter(np.arange(1, layers + 1), distances[:, h], s=14, color=colours(h % colours.N),
                   label=f"Head {h + 1}")
    ax.set_xlabel("Network depth (layer)")
    ax.set_ylabel("Mean attention distance (pixels)")
    ax.set_xticks(np.arange(1, layers + 1))
    ax.set_ylim(0, 1.08 * max(float(np.max(distances)), 1e-6))
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
    fig, grid = plt.subplots(3, b + 1, figsize=(2.4 * b + 0.5, 7.6), squeeze=False,
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
    fig.suptitle(title or "Attention rollout to the input", fontsize=10)
    return fig


def plot_mae_reconstruction(panels: np.ndarray, names: list[str], *, mask_ratio: float, title: str = "") -> Figure:
    """(B, 4, H, W, 3) in [0, 1]: original / masked / reconstruction / reconstruction + visible per row."""
    b = panels.shape[0]
    heads = ("original", f"masked {100 * mask_ratio:.0f}%", "reconstruction", "reconstruction + visible")
    fig, axes = plt.subplots(b, 4, figsize=(9.0, 2.35 * b + 0.5), squeeze=False)
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

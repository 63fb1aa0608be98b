"""Run every analysis that fits a model on a set of images and write one PNG per figure plus an index.html.

`scripts/visualize.py` is a thin wrapper around `load_model`, `load_images` and `visualize`.
"""
from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .attention import attention_distances, attention_rollout, rollout_map
from .embeddings import patch_embedding_components, position_embedding_similarity
from .inspect_model import (
    AnalysisNotApplicable,
    describe,
    encoder_attentions,
    family_of,
    patch_projection_weight,
    position_embedding_table,
    preprocess,
)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


@dataclass(frozen=True)
class FigureRecord:
    file: str  # PNG name inside the output folder
    caption: str  # one line for index.html


@dataclass(frozen=True)
class Skipped:
    name: str
    reason: str


def load_images(folder: str | Path | None = None, *, limit: int | None = None) -> list[tuple[str, np.ndarray]]:
    """(name, uint8 (H, W, 3)) pairs from a folder, or scikit-image's bundled photographs when folder is None."""
    from PIL import Image

    if folder is None:
        try:
            from skimage import data
        except ImportError as err:
            raise ImportError("the default images are scikit-image's bundled photographs: pip install "
                              "'hf-vision[viz]' (or scikit-image), or pass a folder of images") from err

        images = [(name, np.asarray(getattr(data, name)())) for name in SKIMAGE_PHOTOS]
    else:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"--images {folder} is not a folder")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
        images = []
        for path in files:
            with Image.open(path) as img:
                images.append((path.stem, np.array(img.convert("RGB"))))  # a writable copy
    images = [(n, a if a.ndim == 3 else np.repeat(a[..., None], 3, axis=-1)) for n, a in images]
    return images[:limit] if limit else images


def load_model(name_or_path: str | Path, *, optimize_for_cpu: bool = True) -> nn.Module:
    """Load any checkpoint hf_vision reads (ours as the class it was saved as, timm, transformers), in eval mode;
    on CPU with `hf_vision.optimize_for_cpu` applied unless `optimize_for_cpu=False`."""
    from ..hub import from_pretrained
    from ..optimize import optimize_for_cpu as optimize

    model = from_pretrained(str(name_or_path)).eval()
    if optimize_for_cpu and all(p.device.type == "cpu" for p in model.parameters()):
        optimize(model)
    return model


# Files that only a training run, a conversion or a push leaves next to a checkpoint.
TRAINING_RECORDS = ("run_args.json", "all_results.json", "train_log.jsonl", "trainer_state.json", "README.md")


def untrained_warning(name_or_path: str | Path) -> str | None:
    """A warning when a local checkpoint shows no sign of training, since its figures would only show the random
    initialisation (e.g. a freshly built model saved with save_pretrained); None for trained-looking folders and
    Hub names (which we cannot inspect without downloading)."""
    folder = Path(name_or_path)
    if not folder.is_dir() or any((folder / name).exists() for name in TRAINING_RECORDS):
        return None
    return (f"warning: {name_or_path} has no record of training (none of {', '.join(TRAINING_RECORDS)}): if its "
            "weights were never trained, these figures show only the random initialisation (noise), not what a "
            "trained model learns")


def default_model_dir() -> Path:
    """The latest output of the main job (scripts/pretrain_mae.py): its default output folder, once the run has
    finished there (save_pretrained wrote config.json). Looked up relative to the working directory, then to the
    repository root."""
    candidates = _main_job_output_dirs()
    for folder in candidates:
        if (folder / "config.json").is_file():
            return folder
    unfinished = [f for f in candidates if (f / "checkpoints").is_dir()]
    hint = (f"; {unfinished[0]} holds only training checkpoints (the run has not finished): continue it with "
            "`python scripts/pretrain_mae.py --resume_from_checkpoint latest`") if unfinished else ""
    where = ", ".join(str(c) for c in candidates) or "(the pre-training script's default output_dir is unknown)"
    raise FileNotFoundError(
        f"no --model given and no finished MAE pre-training output found in {where}{hint}; run "
        "`python scripts/pretrain_mae.py` first or pass --model <checkpoint dir or Hub name>"
    )


# scripts/pretrain_mae.py's default --output_dir (PretrainArguments.output_dir; tests/test_analysis.py keeps the two
# equal). Written here, not imported: training sits above analysis in hf_vision's layers (it draws its
# reconstructions with it).
PRETRAIN_OUTPUT_DIR = "outputs/pretrain_mae"


def _main_job_output_dirs() -> list[Path]:
    """Where scripts/pretrain_mae.py writes by default, relative to the working directory, then the repository."""
    folder = Path(PRETRAIN_OUTPUT_DIR)
    root = Path(__file__).resolve().parents[2]
    return list(dict.fromkeys([folder, root / folder]))


def _title(model: nn.Module) -> str:
    return getattr(model, "name_or_path", "") or type(model).__name__


def visualize(
    model: nn.Module,
    images: Sequence[tuple[str, np.ndarray]],
    output_dir: str | Path,
    *,
    num_components: int = 28,
    mask_ratios: Sequence[float] = (0.5, 0.75, 0.9),
    swin_stage: int = 0,
    seed: int = 0,
    max_shown: int = 6,
    progress: bool = True,
    warning: str | None = None,
) -> list[FigureRecord | Skipped]:
    """Write every figure that makes sense for `model` and an index.html; returns what was drawn or skipped.

    Averages (mean attention distance) use every image; per-image figures show the first `max_shown`.
    warning: shown at the top of index.html (e.g. `untrained_warning`).
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    figures = _Figures(model, output_dir)
    figures.attempt("patch embedding filters", lambda: figures.filters(num_components))
    figures.attempt("position embedding similarity", figures.positions)
    # the images shown in per-image figures, preprocessed once; the attention pass takes one image at a time
    pixel_values, display = preprocess(model, [img for _, img in images[:max_shown]])
    names = [name for name, _ in images][:max_shown]
    figures.attention(images, pixel_values, display, names, progress=progress)
    family = family_of(model)
    if family == "swin":
        from .swin import swin_figures

        more = [lambda img=img: preprocess(model, [img])[0] for _, img in images[max_shown:]]
        figures.attempt("swin windows", lambda: swin_figures(model, pixel_values, display, names, output_dir,
                                                             stage=swin_stage, more_images=more, progress=progress))
    if family == "mae":
        from .mae import mae_figures

        figures.attempt("MAE reconstructions", lambda: mae_figures(model, pixel_values, names, output_dir,
                                                                    mask_ratios=mask_ratios, seed=seed,
                                                                    progress=progress))
    write_index(output_dir, figures.records, title=f"hf-vision analyses: {_title(model)}", warning=warning)
    return figures.records


class _Figures:
    """The figures of one `visualize` call: each is drawn, saved and recorded, or recorded as skipped with why."""

    def __init__(self, model: nn.Module, output_dir: Path) -> None:
        from . import plots

        self.model, self.output_dir, self.plots = model, output_dir, plots
        self.records: list[FigureRecord | Skipped] = []

    def attempt(self, name: str, make: Callable[[], FigureRecord | list[FigureRecord]]) -> None:
        try:
            made = make()
        except (AnalysisNotApplicable, NotImplementedError) as err:
            self.records.append(Skipped(name, str(err)))
            return
        self.records.extend(made if isinstance(made, list) else [made])

    def filters(self, num_components: int) -> FigureRecord:
        components, explained = patch_embedding_components(patch_projection_weight(self.model), num_components)
        fig = self.plots.plot_patch_filters(components, explained, title=f"RGB embedding filters: {_title(self.model)}")
        self.plots.save_figure(fig, self.output_dir / "patch_embedding_filters.png")
        return FigureRecord("patch_embedding_filters.png",
                            f"First {len(explained)} principal components of the patch-projection filters "
                            f"({100 * explained.sum():.0f}% of their variance).")

    def positions(self) -> FigureRecord:
        table, kind, grid, prefix = position_embedding_table(self.model)
        similarity = position_embedding_similarity(table, grid, num_prefix_tokens=prefix)
        label = "learned" if kind == "learned" else "fixed 2-D sin-cos (not learned)"
        fig = self.plots.plot_position_similarity(similarity, title=f"Position embedding similarity ({label})")
        self.plots.save_figure(fig, self.output_dir / "position_embedding_similarity.png")
        return FigureRecord("position_embedding_similarity.png",
                            f"Cosine similarity of each patch position's {label} embedding with all others "
                            f"({grid[0]}x{grid[1]} grid).")

    def attention(self, images: Sequence[tuple[str, np.ndarray]], pixel_values: torch.Tensor, display: np.ndarray,
                  names: list[str], *, progress: bool) -> None:
        """Attention of the unmasked encoder (ViT family): distances over every image, rollout of those shown."""
        try:
            view = describe(self.model)
        except AnalysisNotApplicable as err:
            if family_of(self.model) == "swin":
                self.records.append(Skipped(
                    "attention rollout", "Swin attends inside windows and merges tokens between stages, so there is "
                    "no single token sequence to roll attention through; see the window attention and in-window "
                    "attention distance figures"))
            else:
                self.records.append(Skipped("mean attention distance / attention rollout", str(err)))
            return
        from_cls = view.pooling == "cls" and view.num_prefix_tokens
        distances, maps = [], []
        for i in tqdm(range(len(images)), desc="attention", unit="image", disable=not progress):
            pixels = pixel_values[i:i + 1] if i < len(names) else preprocess(self.model, [images[i][1]])[0]
            attentions = encoder_attentions(self.model, pixels)
            distances.append(attention_distances(attentions, view.grid_size, view.patch_size,
                                                 num_prefix_tokens=view.num_prefix_tokens))
            if i < len(names):
                maps.append(rollout_map(attention_rollout(attentions), view.grid_size,
                                        num_prefix_tokens=view.num_prefix_tokens, source="cls" if from_cls else "mean"))
        self.attempt("mean attention distance", lambda: self._distance(view, distances, len(images)))
        self.attempt("attention rollout", lambda: self._rollout(display, maps, names, from_cls))

    def _distance(self, view, distances: list[np.ndarray], count: int) -> FigureRecord:
        mean = np.concatenate(distances).mean(axis=0)
        fig = self.plots.plot_attention_distance(mean, patch_size=view.patch_size,
                                                 title=f"Mean attention distance over {count} images")
        self.plots.save_figure(fig, self.output_dir / "mean_attention_distance.png")
        return FigureRecord("mean_attention_distance.png",
                            f"Mean attention distance (pixels) of each head per layer, averaged over {count} images; "
                            f"max possible on this grid "
                            f"{np.hypot(*(np.array(view.image_size) - view.patch_size)):.0f}px.")

    def _rollout(self, display: np.ndarray, maps: list[np.ndarray], names: list[str], from_cls: bool) -> FigureRecord:
        source = "class token" if from_cls else "mean of patch tokens"
        fig = self.plots.plot_rollout(display, np.concatenate(maps), names,
                                      title=f"Attention rollout from the {source} to the input")
        self.plots.save_figure(fig, self.output_dir / "attention_rollout.png")
        return FigureRecord("attention_rollout.png",
                            f"Attention rollout (heads averaged, residual added) from the {source} back to "
                            "the input patches, overlaid on each image.")


def write_index(output_dir: str | Path, records: Sequence[FigureRecord | Skipped], *, title: str,
                warning: str | None = None) -> Path:
    """index.html: a warning if any, every figure with its one-line caption, then the analyses skipped and why."""
    figures = [r for r in records if isinstance(r, FigureRecord)]
    skipped = [r for r in records if isinstance(r, Skipped)]
    parts = [
        "<!doctype html>",
        f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}figure{margin:2em 0}"
        "img{max-width:100%;border:1px solid #ddd}figcaption{color:#333;margin-top:.4em}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if warning:
        parts.append(f"<p class='warning' style='color:#a00;font-weight:bold'>{html.escape(warning)}</p>")
    for r in figures:
        parts.append(f"<figure><img src='{html.escape(r.file)}' alt='{html.escape(r.caption)}'>"
                     f"<figcaption>{html.escape(r.caption)}</figcaption></figure>")
    if skipped:
        parts.append("<h2>Not drawn for this model</h2><ul>")
        parts += [f"<li><b>{html.escape(s.name)}</b>: {html.escape(s.reason)}</li>" for s in skipped]
        parts.append("</ul>")
    parts.append("</body></html>")
    path = Path(output_dir) / "index.html"
    path.write_text("\n".join(parts) + "\n")
    return path

"""python scripts/visualize.py [--model <checkpoint dir or Hub name>] [--images <folder>] --output_dir <dir>

Draws the papers' analyses for one of our models (patch-embedding filters, position-embedding similarity, mean
attention distance, attention rollout; Swin windows and shift regions; MAE reconstructions): one PNG per
figure plus an index.html with one-line captions. Without --images it uses scikit-image's bundled photographs
(astronaut, chelsea, coffee, rocket); without --model, the latest output of scripts/pretrain_mae.py.
"""
from __future__ import annotations

import argparse
import sys

from hf_vision.analysis.report import default_model_dir, load_images, load_model, untrained_warning, visualize
from hf_vision.cli import run_main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint folder or Hub name (default: the MAE job's output)")
    parser.add_argument("--images", default=None, help="folder of images (default: scikit-image's sample photos)")
    parser.add_argument("--output_dir", default="outputs/visualize")
    parser.add_argument("--max_images", type=int, default=None)
    parser.add_argument("--max_shown", type=int, default=6, help="images per per-image figure (averages use all)")
    parser.add_argument("--num_components", type=int, default=28, help="principal components of the patch filters")
    parser.add_argument("--mask_ratios", type=float, nargs="+", default=[0.5, 0.75, 0.9], help="MAE grids")
    parser.add_argument("--swin_stage", type=int, default=0, help="Swin stage whose windows are drawn (0-based)")
    parser.add_argument("--seed", type=int, default=0, help="MAE masking noise")
    parser.add_argument("--no_optimize_for_cpu", dest="optimize_for_cpu", action="store_false",
                        help="do not apply hf_vision.optimize_for_cpu (oneDNN Linear) on CPU")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> None:
    try:
        model_path = args.model or default_model_dir()
    except FileNotFoundError as err:
        raise SystemExit(f"error: {err}") from None
    warning = untrained_warning(model_path)
    if warning:
        print(warning, file=sys.stderr)
    model = load_model(model_path, optimize_for_cpu=args.optimize_for_cpu)
    images = load_images(args.images, limit=args.max_images)
    records = visualize(model, images, args.output_dir, num_components=args.num_components,
                        mask_ratios=args.mask_ratios, swin_stage=args.swin_stage, seed=args.seed,
                        max_shown=args.max_shown, warning=warning)
    for record in records:
        print(f"  {getattr(record, 'file', None) or 'skipped ' + record.name}: "
              f"{getattr(record, 'caption', None) or record.reason}")
    print(f"wrote {args.output_dir}/index.html ({model_path})" + ("; see the warning above" if warning else ""))


if __name__ == "__main__":
    run_main(lambda argv: main(parse_args(argv)))

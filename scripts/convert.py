"""python scripts/convert.py SOURCE OUTPUT_DIR [--preset NAME] [--revision REV] [--push_to_hub ORG/NAME [--private]]

Convert a foreign checkpoint into the hf-vision format: a timm Hub checkpoint (timm/vit_base_patch16_224.augreg2_in21k_ft_in1k),
a transformers ViT/ViTMAE/Swin checkpoint (facebook/vit-mae-base), a local folder of either, or an official release
file (ViT-B_16.npz, mae_pretrain_vit_base.pth, swin_tiny_patch4_window7_224.pth) with --preset. Outputs are checked
against the source model when its library is installed; --push_to_hub uploads the result with its model card.
"""
from __future__ import annotations

import argparse
import json

from hf_vision.cli import run_main
from hf_vision.hub import convert_checkpoint, push_folder


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="Hub name, local folder or release file")
    parser.add_argument("output_dir")
    parser.add_argument("--preset", default=None, help="preset name, required for a single release file")
    parser.add_argument("--revision", default=None)
    parser.add_argument("--cache_dir", default=None)
    parser.add_argument("--no_verify", action="store_true", help="skip the output comparison with the source model")
    parser.add_argument("--atol", type=float, default=1e-4)
    parser.add_argument("--license", default="apache-2.0")
    parser.add_argument("--push_to_hub", default=None, metavar="ORG/NAME")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--hub_revision", default=None, help="branch to push to (default main)")
    parser.add_argument("--commit_message", default=None)
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> dict:
    report = convert_checkpoint(args.source, args.output_dir, preset=args.preset, revision=args.revision,
                                cache_dir=args.cache_dir, verify=not args.no_verify, atol=args.atol,
                                license=args.license)
    if args.push_to_hub:
        commit = push_folder(args.output_dir, args.push_to_hub, private=args.private, revision=args.hub_revision,
                             commit_message=args.commit_message or f"Convert {args.source} to hf-vision")
        report["commit_url"] = commit.commit_url
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    run_main(lambda argv: main(parse_args(argv)))

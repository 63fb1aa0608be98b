"""python scripts/convert.py SOURCE OUTPUT_DIR [--to hf_vision|timm|transformers] [--preset NAME] [--revision REV]
       [--push_to_hub ORG/NAME [--private]]

Convert a checkpoint between hf-vision, timm and transformers. SOURCE is a timm Hub checkpoint
(timm/vit_base_patch16_224.augreg2_in21k_ft_in1k), a transformers ViT/ViTMAE/Swin checkpoint (facebook/vit-mae-base),
one of ours (a folder or Hub repo), or an official release file (ViT-B_16.npz, mae_pretrain_vit_base.pth,
swin_tiny_patch4_window7_224.pth) with --preset. --to hf_vision (default) writes our format (--push_to_hub uploads it
with its model card); --to timm writes timm's Hub format (model.safetensors + config.json), --to transformers the
transformers model's save_pretrained folder. Outputs are checked against the source / our model.
"""
from __future__ import annotations

import argparse
import json

from hf_vision.cli import run_main
from hf_vision.hub import EXPORT_TARGETS, convert_checkpoint, export_checkpoint, from_pretrained, push_folder


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="Hub name, local folder or release file")
    parser.add_argument("output_dir")
    parser.add_argument("--to", default="hf_vision", choices=EXPORT_TARGETS, help="the library whose format to write")
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
    if args.to != "hf_vision":
        if args.push_to_hub:
            raise SystemExit("--push_to_hub uploads hf-vision checkpoints; push a timm or transformers export with "
                             "that library's push_to_hub")
        model = from_pretrained(args.source, preset=args.preset, revision=args.revision, cache_dir=args.cache_dir)
        report = export_checkpoint(model, args.output_dir, to=args.to, verify=not args.no_verify, atol=args.atol)
        print(json.dumps(report, indent=2))
        return report
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

"""python scripts/quickstart.py [--preset vit-base-patch16-224] [--output_dir outputs/quickstart]

Offline smoke run of a preset: builds it, classifies a real photograph bundled with scikit-image (falling back to
a synthetic image), saves it, reloads it through transformers' AutoModel and checks the outputs are identical.
"""
from __future__ import annotations

import argparse

from hf_vision.cli import run_main
from hf_vision.quickstart import run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="vit-base-patch16-224")
    parser.add_argument("--output_dir", default="outputs/quickstart")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    run(args.preset, args.output_dir)


if __name__ == "__main__":
    run_main(main)

"""python scripts/push_to_hub.py OUTPUT_DIR ORG/NAME [--private] [--revision BRANCH] [--commit_message MSG]

Push a saved checkpoint folder (e.g. a training run's output_dir) to the Hub in one commit: weights, config with
auto_map, remote code, preprocessor config, the run's results files and a model card built from config.json and
the run's json files (all_results.json, run_args.json). An existing card is kept (the Trainer's generic one is
replaced) unless card fields are given (--datasets, --local_data, --base_model, --license, --eval_split).
"""
from __future__ import annotations

import argparse

from hf_vision.cli import run_main
from hf_vision.hub import push_folder


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("repo_id")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--revision", default=None, help="branch to commit to (created from main if new)")
    parser.add_argument("--commit_message", default=None)
    parser.add_argument("--datasets", nargs="*", default=None, help="Hub dataset ids the model was trained on")
    parser.add_argument("--local_data", default=None, help="what the data was, when it is not a Hub dataset")
    parser.add_argument("--base_model", default=None)
    parser.add_argument("--license", default=None)
    parser.add_argument("--eval_split", default=None)
    return parser.parse_args(argv)


def main(args: argparse.Namespace):
    card = {k: v for k, v in dict(datasets=args.datasets, local_data=args.local_data, base_model=args.base_model,
                                  license=args.license,
                                  eval_split=args.eval_split).items() if v is not None}
    commit = push_folder(args.folder, args.repo_id, private=args.private or None, revision=args.revision,
                         commit_message=args.commit_message, card_kwargs=card)
    print(commit.commit_url)
    return commit


if __name__ == "__main__":
    run_main(lambda argv: main(parse_args(argv)))

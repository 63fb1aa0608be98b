"""python scripts/ablate.py TABLE [TABLE ...] [--dataset DIR] [--seeds 3] [--budget 1] [--output_dir outputs/ablate]

Re-runs the ViT, MAE and Swin papers' ablation tables on our training code (`--list` names them; `all` runs every
one): per row, the paper's metric as mean +/- sd over seeds beside the paper's number and a verdict, measured FLOPs
and wall/CPU time; writes results.json, a Markdown table and a PNG per table, and an index.html. Repeating the
command resumes: a finished (row, seed) is not run again. `--quick`: one seed, a few steps (a smoke test).
"""
from __future__ import annotations

import argparse

from hf_vision.ablation import RunOptions, get_table, list_tables, run_table
from hf_vision.ablation.tables import TABLES
from hf_vision.cli import run_main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tables", nargs="*", help=f"table names, or 'all': {', '.join(list_tables())}")
    parser.add_argument("--list", action="store_true", help="name every table with its rows and default steps")
    parser.add_argument("--dataset", default=None,
                        help="the embedded digits (default), a local image folder (train/ and test/ subfolders, one "
                             "folder per class), a parquet/webdataset folder, or a Hub dataset name")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per row (error bars: sd over seeds)")
    parser.add_argument("--budget", type=float, default=1.0,
                        help="multiplies every phase's default steps (1: about 15 min per table on a quiet 2-core CPU)")
    parser.add_argument("--output_dir", default="outputs/ablate")
    parser.add_argument("--rows", nargs="+", default=None, help="only these rows (the reference row is always run)")
    parser.add_argument("--quick", action="store_true", help="one seed, 2 steps per phase, 32 eval images")
    parser.add_argument("--no_progress", dest="progress", action="store_false", help="no progress bar")
    args = parser.parse_args(argv)
    if not args.list and not args.tables:
        parser.error("name a table (or 'all'), or pass --list")
    return args


def main(args: argparse.Namespace) -> None:
    if args.list:
        for name, table in TABLES.items():
            rows = ", ".join(r.name for r in table.rows)
            print(f"{name}: {table.title} [{table.source}]\n    rows: {rows}\n    default steps: {table.steps}")
        return
    names = list_tables() if args.tables == ["all"] else args.tables
    tables = [get_table(name) for name in names]  # an unknown name fails before anything runs
    options = RunOptions(output_dir=args.output_dir, dataset=args.dataset, seeds=args.seeds, budget=args.budget,
                         quick=args.quick, rows=args.rows, progress=args.progress)
    for table in tables:
        results = run_table(table, options)
        session = results["session"]
        print(f"{table.name}: {session['runs']} runs ({session['reused']} reused) in {session['wall_s'] / 60:.1f} min "
              f"wall, {session['cpu_s'] / 60:.1f} min CPU -> {args.output_dir}/{table.name}/{table.name}.md")
    print(f"wrote {args.output_dir}/index.html")


if __name__ == "__main__":
    run_main(lambda argv: main(parse_args(argv)))

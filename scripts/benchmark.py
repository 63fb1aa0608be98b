"""Benchmark our model against timm's and transformers' equivalents (img/s, train-step img/s, peak memory).

    python scripts/benchmark.py --preset vit-base-patch16-224 --threads 2 --batch_size 8
    python scripts/benchmark.py --preset vit-base-r50-s16-224 --mode train --repeats 7 --json out.json
    python scripts/benchmark.py --preset mae-vit-base-patch16 --mode train --threads 2 --batch_size 8
    python scripts/benchmark.py --preset vit-base-patch16-224 --repeats 1 --warmup 0 --batch_size 2 \
        --config hidden_size=64,num_hidden_layers=2,num_attention_heads=2,intermediate_size=128   # tiny smoke run
    python scripts/benchmark.py --data        # data pipeline: decode + augment img/s per core vs run_mae.py
    python scripts/benchmark.py --preset swin-tiny-patch4-window7-224 --sgemm_linear   # our Linear on MKL sgemm

Prints a table of medians (with min-max spread) and the ratios ours/reference; see hf_vision/benchmark.py.
"""
from __future__ import annotations

import argparse
import json
import sys

from hf_vision.benchmark import DTYPES, REFERENCES, SUITES, Settings, format_table, parse_overrides, run_benchmark


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="vit-base-patch16-224", choices=sorted(SUITES))
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--mode", default="both", choices=["inference", "train", "both"])
    p.add_argument("--references", default=",".join(REFERENCES),
                   help="comma-separated subset of " + ",".join(REFERENCES) + " (empty: ours only)")
    p.add_argument("--config", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE]",
                   help="config overrides for every contender, e.g. a tiny model for smoke tests")
    p.add_argument("--no_memory", action="store_true", help="skip the peak-memory step")
    p.add_argument("--sgemm_linear", action="store_true",
                   help="our Linear layers on F.linear (MKL sgemm, as timm/transformers) instead of oneDNN")
    p.add_argument("--json", default=None, help="also write the full report (all repeats) to this file")
    p.add_argument("--data", action="store_true",
                   help="benchmark the data pipeline instead (decode + augment img/s per core vs run_mae.py's)")
    p.add_argument("--data_images", type=int, default=48, help="--data: number of JPEGs")
    p.add_argument("--data_size", type=int, default=224, help="--data: output size")
    p.add_argument("--data_long_side", default="400,640", help="--data: range of the JPEGs' longer side (px)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.data:
        from hf_vision.data.benchmark import format_data_table, run_data_benchmark

        long_side = tuple(int(v) for v in args.data_long_side.split(","))
        report = run_data_benchmark(size=args.data_size, num_images=args.data_images, repeats=args.repeats,
                                    threads=args.threads or 1, long_side=long_side,
                                    progress=lambda m: print(m, file=sys.stderr))
        print(format_data_table(report))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(report, f, indent=2)
        return
    references = tuple(r for r in args.references.split(",") if r)
    bad = set(references) - set(REFERENCES)
    if bad:
        sys.exit(f"--references: unknown {sorted(bad)}; choose from {', '.join(REFERENCES)}")
    settings = Settings(
        preset=args.preset, batch_size=args.batch_size, threads=args.threads, dtype=args.dtype,
        device=args.device, repeats=args.repeats, warmup=args.warmup,
        modes=("inference", "train") if args.mode == "both" else (args.mode,),
        references=references, config_overrides=parse_overrides(args.config), memory=not args.no_memory,
        onednn_linear=not args.sgemm_linear,
    )
    report = run_benchmark(settings, progress=lambda m: print(m, file=sys.stderr, flush=True))
    print(format_table(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()

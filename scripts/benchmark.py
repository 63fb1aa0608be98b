"""Benchmark our models (plain and CPU-optimized) against timm's and transformers' equivalents.

    python scripts/benchmark.py --preset vit-base-patch16-224 --threads 2 --batch_size 8
    python scripts/benchmark.py --preset all --threads 2 --json cpu.json --markdown cpu.md   # the four suites
    python scripts/benchmark.py --preset all --mode inference --dtype bf16          # bf16 weights and inputs
    python scripts/benchmark.py --preset all --mode inference --autocast            # fp32 weights, bf16 autocast
    python scripts/benchmark.py --preset mae-vit-base-patch16 --mode train --variants plain
    python scripts/benchmark.py --preset vit-base-patch16-224 --config hidden_size=64,num_attention_heads=4
    python scripts/benchmark.py --preset all --against 15de5a3   # also our models as that commit defined them
    python scripts/benchmark.py --device cuda --dtype bf16 --preset all --compile both   # see benchmark_gpu.sh
    python scripts/benchmark.py --data        # data pipeline: decode + augment img/s per core vs run_mae.py

Prints, per suite, medians (with min-max spread), GFLOPs per image, utilisation of the measured GEMM peak and
the ratios ours/reference; see hf_vision/benchmark/ (its __init__) for what is measured and how.
"""
from __future__ import annotations

import argparse
import json
import sys

from hf_vision.benchmark import (DTYPES, REFERENCES, SUITES, VARIANTS, DeviceUnavailable, Settings, format_markdown,
                                 format_table, parse_overrides, resolve_presets, resolve_revision, run_many)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="vit-base-patch16-224",
                   help="'all' (the four suites) or comma-separated names among " + ", ".join(sorted(SUITES)))
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--dtype", default="fp32", choices=sorted(DTYPES), help="weights and inputs")
    p.add_argument("--autocast", action="store_true",
                   help="fp32 weights and inputs, computed under torch.autocast(device, bfloat16)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (cuda fails clearly where there is none)")
    p.add_argument("--variants", default=None,
                   help="our rows, comma-separated among " + ",".join(VARIANTS)
                   + " ('optimized' = hf_vision.optimize_for_cpu); default: both on CPU, plain on CUDA")
    p.add_argument("--no_optimize_for_cpu", "--sgemm_linear", dest="plain_only", action="store_true",
                   help="same as --variants plain (--sgemm_linear: its old name)")
    p.add_argument("--compile", default="off", choices=["off", "on", "both"],
                   help="torch.compile every contender (both: an eager run, then a compiled one, per suite)")
    p.add_argument("--compile_backend", default="inductor")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--mode", default="both", choices=["inference", "train", "both"])
    p.add_argument("--references", default=",".join(REFERENCES),
                   help="comma-separated subset of " + ",".join(REFERENCES) + " (empty: ours only)")
    p.add_argument("--config", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE]",
                   help="config overrides for every contender, e.g. a tiny model for smoke tests")
    p.add_argument("--no_memory", action="store_true", help="skip the peak-memory step")
    p.add_argument("--no_flops", action="store_true", help="skip counting FLOPs and measuring the GEMM peak")
    p.add_argument("--peak_size", type=int, default=None, help="n of the n x n GEMM peak (2048 CPU, 8192 CUDA)")
    p.add_argument("--against", action="append", default=[], metavar="REVISION",
                   help="also time our models as this git revision of the repository defined them (row "
                   "'ours@<sha>', with our weights), e.g. the commit a speed target was set at; repeatable")
    p.add_argument("--json", default=None, help="write every run's full report ({'runs': [...]}) to this file")
    p.add_argument("--markdown", default=None, help="write one Markdown table over all runs to this file")
    p.add_argument("--data", action="store_true",
                   help="benchmark the data pipeline instead (decode + augment img/s per core vs run_mae.py's)")
    p.add_argument("--data_images", type=int, default=48, help="--data: number of JPEGs")
    p.add_argument("--data_size", type=int, default=224, help="--data: output size")
    p.add_argument("--data_long_side", default="400,640", help="--data: range of the JPEGs' longer side (px)")
    args = p.parse_args(argv)
    if args.plain_only:
        if args.variants not in (None, "plain"):
            p.error("--no_optimize_for_cpu means --variants plain; give only one of them")
        args.variants = "plain"
    return args


def _data(args: argparse.Namespace) -> None:
    from hf_vision.benchmark.pipeline import format_data_table, run_data_benchmark

    long_side = tuple(int(v) for v in args.data_long_side.split(","))
    report = run_data_benchmark(size=args.data_size, num_images=args.data_images, repeats=args.repeats,
                                threads=args.threads or 1, long_side=long_side,
                                progress=lambda m: print(m, file=sys.stderr))
    print(format_data_table(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.data:
        return _data(args)
    references = tuple(r for r in args.references.split(",") if r)
    bad = set(references) - set(REFERENCES)
    if bad:
        sys.exit(f"--references: unknown {sorted(bad)}; choose from {', '.join(REFERENCES)}")
    try:
        presets = resolve_presets(args.preset)
    except ValueError as error:
        sys.exit(f"--preset: {error}")
    base = Settings(
        preset=presets[0], batch_size=args.batch_size, threads=args.threads, dtype=args.dtype,
        autocast=args.autocast, device=args.device, repeats=args.repeats, warmup=args.warmup,
        modes=("inference", "train") if args.mode == "both" else (args.mode,),
        references=references, config_overrides=parse_overrides(args.config), memory=not args.no_memory,
        variants=None if args.variants is None else tuple(v for v in args.variants.split(",") if v),
        compile_backend=args.compile_backend, flops=not args.no_flops, peak_size=args.peak_size,
        against=tuple(args.against),
    )
    for revision in args.against:
        try:
            resolve_revision(revision)
        except ValueError as error:
            sys.exit(f"--against: {error}")
    compile_modes = {"off": (False,), "on": (True,), "both": (False, True)}[args.compile]

    def write(reports: list[dict]) -> None:
        print(format_table(reports[-1]) + "\n", flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"runs": reports}, f, indent=2)
        if args.markdown:
            with open(args.markdown, "w") as f:
                f.write(format_markdown(reports))

    try:
        run_many(base, presets, compile_modes=compile_modes, on_report=write,
                 progress=lambda m: print(m, file=sys.stderr, flush=True))
    except DeviceUnavailable as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()

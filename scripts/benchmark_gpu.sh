#!/usr/bin/env bash
# scripts/benchmark_gpu.sh [OUT_PREFIX] [extra scripts/benchmark.py flags...]
#
# The four suites (ViT-B/16, R50+ViT-B/16, Swin-T, MAE-B) on one CUDA GPU in bf16, eager and then compiled
# (torch.compile, inductor), ours vs timm vs transformers: img/s, GFLOPs per image and MFU against the
# measured bf16 GEMM peak of that GPU. Writes OUT_PREFIX.json (every run), OUT_PREFIX.md (one table) and
# OUT_PREFIX.log; both files are rewritten after each suite, so a run cut short keeps what finished.
# Without CUDA it stops at once with a clear error. PYTHON picks the interpreter (default: python).
# Example: PYTHON=.venv/bin/python scripts/benchmark_gpu.sh bench_gpu --batch_size 64 --mode inference
set -euo pipefail
out="$(realpath -m "${1:-bench_gpu}")"
shift || true
cd "$(dirname "$0")/.."
"${PYTHON:-python}" scripts/benchmark.py --device cuda --dtype bf16 --preset all --compile both \
    --batch_size 128 --repeats 10 --warmup 3 --json "$out.json" --markdown "$out.md" "$@" 2>&1 | tee "$out.log"

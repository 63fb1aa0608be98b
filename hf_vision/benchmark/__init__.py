"""Speed of our models, plain and CPU-optimized, against timm's and transformers' equivalents, in one process.

Run it through the thin CLI: `python scripts/benchmark.py --preset all --threads 2` (CPU) or
`scripts/benchmark_gpu.sh` (the four suites in bf16 on a CUDA GPU, eager and compiled).

What is measured, per contender and per mode, after `warmup` untimed steps:
- inference: img/s of a forward pass under `torch.inference_mode()` in eval mode;
- train: img/s of one optimisation step (forward, loss, backward, AdamW step, zero_grad) in train mode;
- GFLOPs per image, counted once per contender by `torch.utils.flop_counter.FlopCounterMode` on a small batch
  (forward for inference, forward + backward for train; the optimizer's elementwise update is not counted),
  and MFU: achieved FLOP/s (median img/s x FLOPs per image) over a measured GEMM peak: the best of `torch.mm`
  on an (n, n) @ (n, n) product in the run's compute dtype at the run's thread count, and for fp32 on CPU also
  the oneDNN product that `optimize_for_cpu` uses (MKL's sgemm is slow on some CPUs). flop_counter registers no
  formula for PyTorch's CPU flash-attention kernel; torch's own attention formula is registered for it here;
- peak memory of one extra, untimed step: on CUDA `torch.cuda.max_memory_allocated` minus what was allocated
  before the step; on CPU the peak resident-set size (sampled from /proc every 0.5 ms, after returning freed
  heap to the OS with `malloc_trim`) minus the resident size before the step.
Our models run in two variants (`Settings.variants`): "plain" (the model as defined; the row "ours") and
"optimized" (a deep copy after `hf_vision.optimize_for_cpu`, CPU only; the row "ours opt"). Precision: `dtype`
("fp32" or "bf16" weights and inputs) or `autocast=True` (fp32 weights, bf16 compute under `torch.autocast`).
`compile=True` wraps every contender with `nn.Module.compile` after counting FLOPs; the warm-up absorbs the
compilation. Contenders run interleaved repeat by repeat (the order rotates each repeat) so a noisy shared
machine slows them alike; the table reports medians with the min-max spread, and `ours/<reference>` ratios of
the medians for each variant (> 1 means we are faster). Beside wall-clock img/s it reports images per second
of the process's CPU time (img/cpu-s), which other programs sharing the cores disturb much less.

Each ratio ours/<reference> comes with its ceiling: the ratio our model would reach were every one of its
FLOPs computed at the measured GEMM peak. A target above the ceiling cannot be met on that machine in that
precision. `Settings.against` (`--against REV`) adds our models as an earlier git revision of the repository
defined them ("ours@<sha>", same config and weights: `revisions`), so "at least that day's figures" is measured
on the machine at hand, in the same process.

The package: `suites` (contenders and step kinds), `settings` (what a run is asked), `measure` (memory, FLOPs,
GEMM peak, timed steps), `run` (one run and a series), `report` (table and Markdown), `revisions` (earlier
revisions of our models), `pipeline` (the data pipeline's decode + augment throughput, `scripts/benchmark.py
--data`).

Adding a suite takes one function in `suites.py`:

    @register_suite("mae-vit-base-patch16")
    def _mae_suite(config_overrides, references):
        config = get_config("mae-vit-base-patch16", **config_overrides)
        contenders = {"ours": Contender(MAEForPreTraining(config), "hf_mae")}
        if "transformers" in references:
            contenders["transformers"] = Contender(transformers.ViTMAEForPreTraining(...), "hf_mae")
        contenders["ours ViT"] = Contender(ViTForImageClassification(...), "hf_classify")
        return contenders

The first key must be "ours"; every contender named "ours ..." is ours too (it gets the optimized variant),
every other one is a reference with a ratio `ours/<name>`. Another of ours such as "ours ViT" yields the
step-time ratio `ours/ours ViT` (MAE's step over ViT's, with issue #11's bound in `STEP_TIME_TARGETS`). A
contender whose reference has no faithful equivalent is given as `Unavailable("why")` and shows up as N/A. The
step kind names how inputs are built and the loss is taken (`STEP_KINDS`: "hf_classify", "timm_classify",
"hf_features", "timm_features", "hf_mae"); add a `StepKind` there for a new calling convention. (Compiling
wraps `forward` only: a step kind that calls another method, like "timm_features", runs that one eagerly.)
"""
from __future__ import annotations

from ..overrides import parse_overrides
from .measure import count_flops, gemm_peak, peak_memory
from .report import format_markdown, format_table
from .revisions import REVISION_PREFIX, resolve_revision, revision_model
from .run import run_benchmark, run_many
from .settings import (DTYPES, MODES, OPT_SUFFIX, REFERENCES, STEP_TIME_TARGETS, SUITE_ORDER, VARIANTS,
                       DeviceUnavailable, Settings, check_device, compute_dtype, resolve_presets, resolve_variants,
                       with_variants)
from .suites import STEP_KINDS, SUITES, Contender, StepKind, Unavailable, register_suite

__all__ = [
    "DTYPES", "MODES", "OPT_SUFFIX", "REFERENCES", "REVISION_PREFIX", "STEP_KINDS", "STEP_TIME_TARGETS", "SUITES",
    "SUITE_ORDER", "VARIANTS", "Contender", "DeviceUnavailable", "Settings", "StepKind", "Unavailable",
    "check_device", "compute_dtype", "count_flops", "format_markdown", "format_table", "gemm_peak", "parse_overrides",
    "peak_memory", "register_suite", "resolve_presets", "resolve_revision", "resolve_variants", "revision_model",
    "run_benchmark", "run_many", "with_variants",
]

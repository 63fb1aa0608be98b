"""What one benchmark run is asked to do (`Settings`), its checks, and which of our variants it times."""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .suites import SUITES, Contender, Unavailable

MODES = ("inference", "train")
REFERENCES = ("timm", "transformers")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
VARIANTS = ("plain", "optimized")  # our model as defined, and after hf_vision.optimize_for_cpu (CPU only)
OPT_SUFFIX = " opt"  # the optimized copy of our contender "ours" is "ours opt", of "ours ViT" "ours ViT opt"
SUITE_ORDER = ("vit-base-patch16-224", "vit-base-r50-s16-224", "swin-tiny-patch4-window7-224", "mae-vit-base-patch16")
# time of our main contender's step / another of ours, where issue #11 sets a bound (MAE-B step <= 0.65 ViT-B's)
STEP_TIME_TARGETS: dict[tuple[str, str, str], float] = {("mae-vit-base-patch16", "ours ViT", "train"): 0.65}


@dataclass
class Settings:
    preset: str
    batch_size: int = 8
    threads: int | None = None
    dtype: str = "fp32"  # weights and inputs
    autocast: bool = False  # fp32 weights and inputs, bf16 compute through torch.autocast(device, bfloat16)
    device: str = "cpu"
    repeats: int = 5
    warmup: int = 2
    modes: tuple[str, ...] = MODES
    references: tuple[str, ...] = REFERENCES
    config_overrides: dict[str, Any] = field(default_factory=dict)
    memory: bool = True
    seed: int = 0
    # our rows: "plain" (the model as defined) and/or "optimized" (a copy after hf_vision.optimize_for_cpu);
    # None: both on CPU, plain elsewhere
    variants: tuple[str, ...] | None = None
    compile: bool = False  # every contender through nn.Module.compile (after the FLOPs are counted eagerly)
    compile_backend: str = "inductor"
    flops: bool = True  # count FLOPs per image and report the fraction of the measured GEMM peak
    peak_size: int | None = None  # n of the (n, n) @ (n, n) peak GEMM; None: 2048 on CPU, 8192 on CUDA
    # git revisions of this repository whose models join as references "ours@<sha>" (see `revisions`), e.g. the
    # commit a speed target was set at, to check "at least that day's figures" on the machine at hand
    against: tuple[str, ...] = ()


def resolve_variants(settings: Settings) -> tuple[str, ...]:
    device = torch.device(settings.device)
    if settings.variants is None:
        return VARIANTS if device.type == "cpu" else ("plain",)
    variants = tuple(settings.variants)
    bad = set(variants) - set(VARIANTS)
    if bad or not variants:
        raise ValueError(f"variants={variants!r}: choose one or more of {', '.join(VARIANTS)}")
    if "optimized" in variants and device.type != "cpu":
        raise ValueError(f"variants: 'optimized' applies hf_vision.optimize_for_cpu, which is for device='cpu', "
                         f"not {settings.device!r}; use variants=('plain',)")
    return variants


def compute_dtype(settings: Settings) -> torch.dtype:
    """The dtype the products run in: bf16 with --dtype bf16 or autocast, else fp32 (what the peak is measured in)."""
    return torch.bfloat16 if settings.autocast else DTYPES[settings.dtype]


class DeviceUnavailable(RuntimeError):
    """The requested device does not exist on this machine."""


def check_device(device: torch.device) -> None:
    """Fail before building anything when the device does not exist here."""
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable(
            f"device={str(device)!r} but torch.cuda.is_available() is False (torch {torch.__version__}, CUDA build "
            f"{torch.version.cuda}): run on a machine with an NVIDIA GPU, or benchmark with device='cpu'"
        )
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device={str(device)!r}: the benchmark runs on 'cpu' or 'cuda'")


def _is_ours(name: str) -> bool:
    return name == "ours" or name.startswith("ours ")


def _variant_of(name: str) -> str:
    return "optimized" if name.endswith(OPT_SUFFIX) else "plain"


def _plain_name(name: str) -> str:
    return name.removesuffix(OPT_SUFFIX)


def _optimizer_for_cpu() -> Callable[[nn.Module], nn.Module] | None:
    """`hf_vision.optimize_for_cpu` when this tree has it (the opt-in layer is built separately), else None."""
    import hf_vision.optimize

    return getattr(hf_vision.optimize, "optimize_for_cpu", None)


def with_variants(built: dict[str, Contender | Unavailable], variants: tuple[str, ...]):
    """Our contenders in the requested variants; an optimized one is a deep copy (same weights) after
    `optimize_for_cpu`, listed right after its plain original. References pass through."""
    optimize = _optimizer_for_cpu() if "optimized" in variants else None
    out: dict[str, Contender | Unavailable] = {}
    for name, contender in built.items():
        if not _is_ours(name):
            out[name] = contender
            continue
        if "plain" in variants:
            out[name] = contender
        if "optimized" in variants:
            if isinstance(contender, Unavailable):
                out[name + OPT_SUFFIX] = contender
            elif optimize is None:
                out[name + OPT_SUFFIX] = Unavailable("hf_vision.optimize_for_cpu is not in this tree")
            else:
                out[name + OPT_SUFFIX] = Contender(optimize(copy.deepcopy(contender.model)), contender.kind)
    return out


def _validate(settings: Settings) -> None:
    if settings.preset not in SUITES:
        raise ValueError(f"no benchmark suite for preset {settings.preset!r}; available: {', '.join(sorted(SUITES))}")
    if settings.dtype not in DTYPES:
        raise ValueError(f"dtype={settings.dtype!r} is not one of {', '.join(DTYPES)}")
    if settings.autocast and settings.dtype != "fp32":
        raise ValueError(f"autocast keeps fp32 weights and computes in bf16: it needs dtype='fp32', not "
                         f"{settings.dtype!r}")
    unknown = set(settings.modes) - set(MODES)
    if unknown:
        raise ValueError(f"mode(s) {sorted(unknown)} not among {', '.join(MODES)}")
    if settings.repeats < 1 or settings.warmup < 0 or settings.batch_size < 1:
        raise ValueError("repeats and batch_size must be >= 1 and warmup >= 0")
    if any(not isinstance(r, str) or not r.strip() for r in settings.against):
        raise ValueError(f"against={settings.against!r}: give git revisions (sha, tag, branch) as non-empty strings")
    if settings.compile and settings.warmup < 1:
        raise ValueError("compile needs warmup >= 1: the first call of each mode compiles")


def resolve_presets(text: str) -> list[str]:
    """"all" -> the four suites; else a comma-separated list of suite names."""
    if text == "all":
        return list(SUITE_ORDER)
    presets = [p for p in text.split(",") if p]
    bad = [p for p in presets if p not in SUITES]
    if bad or not presets:
        raise ValueError(f"preset {text!r}: choose 'all' or some of {', '.join(sorted(SUITES))} (comma-separated)")
    return presets

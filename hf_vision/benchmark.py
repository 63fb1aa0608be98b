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

Adding a suite takes one function:

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

import contextlib
import copy
import ctypes
import gc
import json
import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, flop_registry, sdpa_backward_flop_count, sdpa_flop_count

from .presets import get_config

MODES = ("inference", "train")
REFERENCES = ("timm", "transformers")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


# ----------------------------------------------------------------------------------------------- step kinds
@dataclass(frozen=True)
class StepKind:
    """How to call a contender: `infer(model, batch)` returns any tensor, `loss(model, batch)` a scalar."""

    infer: Callable[[nn.Module, dict[str, torch.Tensor]], Any]
    loss: Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor]


def _features(out: Any) -> torch.Tensor:
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out


STEP_KINDS: dict[str, StepKind] = {
    # Hugging Face classifiers compute their own loss when given labels, as users call them.
    "hf_classify": StepKind(
        infer=lambda m, b: m(pixel_values=b["pixel_values"]).logits,
        loss=lambda m, b: m(pixel_values=b["pixel_values"], labels=b["labels"]).loss,
    ),
    "timm_classify": StepKind(
        infer=lambda m, b: m(b["pixel_values"]),
        loss=lambda m, b: F.cross_entropy(m(b["pixel_values"]), b["labels"]),
    ),
    # Backbones: the loss is the mean of the last hidden state (enough to exercise the whole backward).
    "hf_features": StepKind(
        infer=lambda m, b: _features(m(pixel_values=b["pixel_values"])),
        loss=lambda m, b: _features(m(pixel_values=b["pixel_values"])).float().mean(),
    ),
    "timm_features": StepKind(
        infer=lambda m, b: m.forward_features(b["pixel_values"]),
        loss=lambda m, b: m.forward_features(b["pixel_values"]).float().mean(),
    ),
    # Masked autoencoders: the same `noise` for every contender, so all of them mask the same patches.
    "hf_mae": StepKind(
        infer=lambda m, b: m(pixel_values=b["pixel_values"], noise=b["noise"]).loss,
        loss=lambda m, b: m(pixel_values=b["pixel_values"], noise=b["noise"]).loss,
    ),
}


# ----------------------------------------------------------------------------------------------- suites
@dataclass
class Contender:
    model: nn.Module
    kind: str  # a key of STEP_KINDS


@dataclass(frozen=True)
class Unavailable:
    reason: str


SuiteBuilder = Callable[[dict[str, Any], set[str]], "dict[str, Contender | Unavailable]"]
SUITES: dict[str, SuiteBuilder] = {}


def register_suite(name: str) -> Callable[[SuiteBuilder], SuiteBuilder]:
    """Decorator: `build(config_overrides, references) -> {"ours": Contender, "<reference>": ..., ...}`."""

    def add(builder: SuiteBuilder) -> SuiteBuilder:
        SUITES[name] = builder
        return builder

    return add


def _vit_kwargs(config) -> dict[str, Any]:
    """Our ViT config as timm VisionTransformer keyword arguments."""
    if config.hidden_act not in ("gelu", "gelu_python"):
        raise ValueError(f"hidden_act={config.hidden_act!r}: the timm reference only exists for 'gelu'")
    return dict(
        img_size=config.image_size, patch_size=config.patch_size, in_chans=config.num_channels,
        embed_dim=config.hidden_size, depth=config.num_hidden_layers, num_heads=config.num_attention_heads,
        mlp_ratio=config.intermediate_size / config.hidden_size, qkv_bias=config.qkv_bias,
        num_classes=config.num_labels, global_pool="token" if config.pooling == "cls" else "avg",
        class_token=config.class_token, fc_norm=config.use_fc_norm,
    )


def _transformers_vit_config(config, **extra):
    """Our ViT config as transformers' ViTConfig (same widths, eps, dropout-free, sdpa)."""
    from transformers import ViTConfig as HFViTConfig

    size = config.image_size if isinstance(config.image_size, int) else config.image_size[0]
    return HFViTConfig(
        image_size=size, patch_size=config.patch_size, num_channels=config.num_channels,
        hidden_size=config.hidden_size, num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads, intermediate_size=config.intermediate_size,
        hidden_act=config.hidden_act, layer_norm_eps=config.layer_norm_eps, qkv_bias=config.qkv_bias,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=config.num_labels,
        **extra,
    )


@register_suite("vit-base-patch16-224")
def _vit_b16_suite(config_overrides: dict[str, Any], references: set[str]):
    from hf_vision.modeling.vit.modeling_vit import ViTForImageClassification

    config = get_config("vit-base-patch16-224", **config_overrides)
    contenders: dict[str, Contender | Unavailable] = {"ours": Contender(ViTForImageClassification(config),
                                                                       "hf_classify")}
    if "timm" in references:
        import timm

        contenders["timm"] = Contender(
            timm.create_model("vit_base_patch16_224", pretrained=False, **_vit_kwargs(config)), "timm_classify"
        )
    if "transformers" in references:
        if config.pooling != "cls" or not config.class_token:
            contenders["transformers"] = Unavailable("transformers' ViT only pools the class token")
        else:
            from transformers import ViTForImageClassification as HFViT

            hf_config = _transformers_vit_config(config)
            hf_config._attn_implementation = "sdpa"
            contenders["transformers"] = Contender(HFViT(hf_config), "hf_classify")
    return contenders


class BitViTForImageClassification(nn.Module):
    """transformers' stand-in for the removed ViTHybrid: BitBackbone (ResNet-50 stages 3-4-9, weight
    standardisation, GroupNorm, 'SAME' padding) feeding ViTForImageClassification with 1x1 patches over its
    stride-16 feature map; this is how ViTHybrid itself was assembled."""

    def __init__(self, config) -> None:
        super().__init__()
        from transformers import BitBackbone, BitConfig
        from transformers import ViTForImageClassification as HFViT

        size = config.image_size if isinstance(config.image_size, int) else config.image_size[0]
        bit = BitConfig(
            num_channels=config.num_channels, layer_type="bottleneck", global_padding="SAME",
            embedding_dynamic_padding=True, depths=list(config.backbone_layers),
            embedding_size=config.backbone_width, num_groups=config.backbone_norm_groups,
            hidden_sizes=[4 * config.backbone_width * 2**i for i in range(len(config.backbone_layers))],
            out_features=[f"stage{len(config.backbone_layers)}"],
        )
        self.backbone = BitBackbone(bit)
        vit_config = _transformers_vit_config(config)
        vit_config.image_size = size // config.backbone_stride
        vit_config.num_channels = config.backbone_channels
        vit_config._attn_implementation = "sdpa"
        self.vit = HFViT(vit_config)

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None):
        features = self.backbone(pixel_values).feature_maps[-1]
        return self.vit(pixel_values=features, labels=labels)


@register_suite("vit-base-r50-s16-224")
def _hybrid_suite(config_overrides: dict[str, Any], references: set[str]):
    from hf_vision.modeling.hybrid.modeling_hybrid import HybridForImageClassification

    config = get_config("vit-base-r50-s16-224", **config_overrides)
    contenders: dict[str, Contender | Unavailable] = {
        "ours": Contender(HybridForImageClassification(config), "hf_classify")
    }
    if "timm" in references:
        import timm

        kwargs = _vit_kwargs(config)
        if tuple(config.backbone_layers) != (3, 4, 9) or config.backbone_width != 64:
            contenders["timm"] = Unavailable("timm's vit_base_r50_s16_224 has a fixed R50 (3, 4, 9), width 64")
        else:
            contenders["timm"] = Contender(
                timm.create_model("vit_base_r50_s16_224", pretrained=False, **kwargs), "timm_classify"
            )
    if "transformers" in references:
        contenders["transformers"] = Contender(BitViTForImageClassification(config), "hf_classify")
    return contenders


@register_suite("swin-tiny-patch4-window7-224")
def _swin_t_suite(config_overrides: dict[str, Any], references: set[str]):
    """Swin-T classifiers with the same config (drop-path rate included) in all three libraries."""
    from hf_vision.modeling.swin.modeling_swin import SwinForImageClassification

    config = get_config("swin-tiny-patch4-window7-224", **config_overrides)
    contenders: dict[str, Contender | Unavailable] = {"ours": Contender(SwinForImageClassification(config),
                                                                       "hf_classify")}
    size = config.image_size if isinstance(config.image_size, int) else tuple(config.image_size)
    if "timm" in references:
        import timm

        contenders["timm"] = Contender(timm.create_model(
            "swin_tiny_patch4_window7_224", pretrained=False, img_size=size, patch_size=config.patch_size,
            in_chans=config.num_channels, embed_dim=config.embed_dim, depths=tuple(config.depths),
            num_heads=tuple(config.num_heads), window_size=config.window_size, mlp_ratio=config.mlp_ratio,
            qkv_bias=config.qkv_bias, drop_path_rate=config.drop_path_rate, num_classes=config.num_labels,
        ), "timm_classify")
    if "transformers" in references:
        from transformers import SwinConfig as HFSwinConfig
        from transformers import SwinForImageClassification as HFSwin

        hf_config = HFSwinConfig(
            image_size=size, patch_size=config.patch_size, num_channels=config.num_channels,
            embed_dim=config.embed_dim, depths=list(config.depths), num_heads=list(config.num_heads),
            window_size=config.window_size, mlp_ratio=config.mlp_ratio, qkv_bias=config.qkv_bias,
            drop_path_rate=config.drop_path_rate, layer_norm_eps=config.layer_norm_eps,
            use_absolute_embeddings=config.use_absolute_position_embeddings, num_labels=config.num_labels,
        )
        hf_config._attn_implementation = "sdpa"
        contenders["transformers"] = Contender(HFSwin(hf_config), "hf_classify")
    return contenders


@register_suite("mae-vit-base-patch16")
def _mae_b16_suite(config_overrides: dict[str, Any], references: set[str]):
    """MAE pre-training step (75% masking, same noise for all) against transformers' ViTMAEForPreTraining, plus
    our full ViT classifier with the same encoder ("ours ViT": its ratio is ViT step time / MAE step time)."""
    from hf_vision.modeling.mae.modeling_mae import MAEForPreTraining
    from hf_vision.modeling.vit.configuration_vit import ViTConfig
    from hf_vision.modeling.vit.modeling_vit import ViTForImageClassification

    config = get_config("mae-vit-base-patch16", **config_overrides)
    contenders: dict[str, Contender | Unavailable] = {"ours": Contender(MAEForPreTraining(config), "hf_mae")}
    if "timm" in references:
        contenders["timm"] = Unavailable("timm has no MAE pre-training model (encoder only)")
    if "transformers" in references:
        if config.mask_strategy != "random" or config.encoder_mask_tokens:
            contenders["transformers"] = Unavailable("transformers' ViTMAE only masks at random, encoder w/o [M]")
        else:
            from transformers import ViTMAEConfig, ViTMAEForPreTraining

            size = config.image_size if isinstance(config.image_size, int) else config.image_size[0]
            hf_config = ViTMAEConfig(
                image_size=size, patch_size=config.patch_size, num_channels=config.num_channels,
                hidden_size=config.hidden_size, num_hidden_layers=config.num_hidden_layers,
                num_attention_heads=config.num_attention_heads, intermediate_size=config.intermediate_size,
                hidden_act=config.hidden_act, layer_norm_eps=config.layer_norm_eps, qkv_bias=config.qkv_bias,
                decoder_hidden_size=config.decoder_hidden_size,
                decoder_num_hidden_layers=config.decoder_num_hidden_layers,
                decoder_num_attention_heads=config.decoder_num_attention_heads,
                decoder_intermediate_size=config.decoder_intermediate_size, mask_ratio=config.mask_ratio,
                norm_pix_loss=config.norm_pix_loss,
            )
            hf_config._attn_implementation = "sdpa"
            contenders["transformers"] = Contender(ViTMAEForPreTraining(hf_config), "hf_mae")
    encoder = {k: getattr(config, k) for k in (
        "image_size", "patch_size", "num_channels", "hidden_size", "num_hidden_layers", "num_attention_heads",
        "intermediate_size", "hidden_act", "layer_norm_eps", "qkv_bias")}
    contenders["ours ViT"] = Contender(ViTForImageClassification(ViTConfig(**encoder, num_labels=1000)),
                                       "hf_classify")
    return contenders


# ----------------------------------------------------------------------------------------------- measuring
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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _release_heap() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def peak_memory(step: Callable[[], None], device: torch.device) -> float | None:
    """Bytes allocated at the peak of one call of `step` above what was allocated before it (None if unknown)."""
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        _sync(device)
        return float(torch.cuda.max_memory_allocated(device) - before)
    if not os.path.exists("/proc/self/statm"):
        return None
    _release_heap()
    before = _rss_bytes()
    peak, done = [before], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        step()
    finally:
        done.set()
        sampler.join()
    peak[0] = max(peak[0], _rss_bytes())
    return float(peak[0] - before)


# ----------------------------------------------------------------------------------------------- FLOPs, peak
def _flop_formulas() -> dict[Any, Callable[..., int]]:
    """torch's own attention formulas for the CPU flash-attention kernels, which `flop_counter` (torch 2.14) does
    not register: without them `F.scaled_dot_product_attention` on CPU counts 0 FLOPs."""
    aten = torch.ops.aten
    formulas: dict[Any, Callable[..., int]] = {}
    forward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    backward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    if forward is not None and forward not in flop_registry:
        formulas[forward] = lambda query, key, value, *args, out_shape=None, **kwargs: sdpa_flop_count(
            query, key, value)
    if backward is not None and backward not in flop_registry:
        formulas[backward] = lambda grad_out, query, key, value, *args, out_shape=None, **kwargs: (
            sdpa_backward_flop_count(grad_out, query, key, value))
    return formulas


def _precision(device: torch.device, autocast: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if autocast else contextlib.nullcontext()


def count_flops(contender: Contender, mode: str, batch: dict[str, torch.Tensor], *, autocast: bool = False) -> float:
    """FLOPs per image of one step as `torch.utils.flop_counter.FlopCounterMode` counts them (matrix products,
    convolutions, attention): the forward pass for "inference", forward + backward for "train" (the optimizer's
    elementwise update is not counted). Gradients it leaves are cleared."""
    kind, model = STEP_KINDS[contender.kind], contender.model
    device = batch["pixel_values"].device
    counter = FlopCounterMode(display=False, custom_mapping=_flop_formulas())
    if mode == "inference":
        model.eval()
        with torch.inference_mode(), _precision(device, autocast), counter:
            kind.infer(model, batch)
    else:
        model.train()
        with counter:
            with _precision(device, autocast):
                loss = kind.loss(model, batch)
            loss.backward()
        model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch["pixel_values"].shape[0]


def gemm_peak(device: torch.device, dtype: torch.dtype, *, size: int, repeats: int = 5) -> dict[str, Any]:
    """Best GFLOP/s of an (n, n) @ (n, n) product in `dtype` over `repeats` timed calls: `torch.mm`, and for fp32
    on CPU also the oneDNN product that `optimize_for_cpu` uses (on CPUs where MKL's sgemm picks slow kernels it
    is faster). The higher one is the peak, so plain and optimized models read against the same best GEMM."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(device, dtype)
    b = torch.randn(size, size, generator=gen).to(device, dtype)

    def best(fn: Callable[[], Any]) -> float:
        fn()
        _sync(device)
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            _sync(device)
            seconds.append(time.perf_counter() - start)
        return 2 * size**3 / min(seconds) / 1e9

    kernels = {"torch.mm": best(lambda: torch.mm(a, b))}
    if device.type == "cpu" and dtype == torch.float32:
        from hf_vision.optimize import onednn_linear

        if onednn_linear.onednn_applies(a, b):
            kernels["onednn"] = best(lambda: onednn_linear.linear(a, b))
    source = max(kernels, key=kernels.get)
    return {"gflops": kernels[source], "kernel": source, "kernels": kernels, "size": size,
            "dtype": str(dtype).removeprefix("torch."), "threads": torch.get_num_threads()}


# ----------------------------------------------------------------------------------------------- timing
class _Runner:
    """One contender in one mode: a zero-argument `step()` plus what it needs (optimizer, inputs)."""

    def __init__(self, contender: Contender, mode: str, batch: dict[str, torch.Tensor], *, autocast: bool) -> None:
        self.model, self.kind, self.mode, self.batch = contender.model, STEP_KINDS[contender.kind], mode, batch
        self.precision = lambda: _precision(batch["pixel_values"].device, autocast)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4) if mode == "train" else None

    def step(self) -> None:
        if self.mode == "inference":
            self.model.eval()
            with torch.inference_mode(), self.precision():
                self.kind.infer(self.model, self.batch)
        else:
            self.model.train()
            with self.precision():
                loss = self.kind.loss(self.model, self.batch)
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)


def _make_batch(config, settings: Settings, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(settings.seed)
    size = config.image_size
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    b = settings.batch_size
    batch = {
        "pixel_values": torch.randn(b, config.num_channels, height, width, generator=gen).to(device, dtype),
        "labels": torch.randint(0, max(config.num_labels, 1), (b,), generator=gen).to(device),
    }
    patch = getattr(config, "patch_size", 16)
    # MAE's masking noise stays fp32 in every dtype: bf16 would tie many scores, and only its order matters
    batch["noise"] = torch.rand(b, (height // patch) * (width // patch), generator=gen).to(device)
    return batch


def _summary(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "all": values}


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
    if settings.compile and settings.warmup < 1:
        raise ValueError("compile needs warmup >= 1: the first call of each mode compiles")


def run_benchmark(settings: Settings, *, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Build the suite, count FLOPs, measure the GEMM peak, warm up, time interleaved repeats; returns a
    JSON-ready dict (see `format_table`). `settings.threads` applies for the run only."""
    threads = torch.get_num_threads()
    try:
        return _run_benchmark(settings, progress=progress)
    finally:
        torch.set_num_threads(threads)
        _release_heap()


def _run_benchmark(settings: Settings, *, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    _validate(settings)
    device = torch.device(settings.device)
    check_device(device)
    variants = resolve_variants(settings)
    say = progress or (lambda message: None)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    dtype = DTYPES[settings.dtype]
    torch.manual_seed(settings.seed)
    built = SUITES[settings.preset](dict(settings.config_overrides), set(settings.references))
    if next(iter(built), None) != "ours":
        raise ValueError(f"suite {settings.preset!r} must list 'ours' first")
    built = with_variants(built, variants)
    contenders = {name: c for name, c in built.items() if isinstance(c, Contender)}
    unavailable = {name: c.reason for name, c in built.items() if isinstance(c, Unavailable)}
    ours_config = get_config(settings.preset, **settings.config_overrides)
    batch = _make_batch(ours_config, settings, device, dtype)
    for c in contenders.values():
        c.model.to(device=device, dtype=dtype)

    results: dict[str, dict[str, Any]] = {
        name: {"params_m": sum(p.numel() for p in c.model.parameters()) / 1e6, "gflops_per_img": {}}
        for name, c in contenders.items()
    }
    peak = None
    if settings.flops:
        say("counting FLOPs")
        few = {k: v[: min(2, settings.batch_size)] for k, v in batch.items()}  # per image: a small batch will do
        for name, c in contenders.items():
            for mode in settings.modes:
                results[name]["gflops_per_img"][mode] = count_flops(c, mode, few, autocast=settings.autocast) / 1e9
        size = settings.peak_size or (8192 if device.type == "cuda" else 2048)
        say(f"measuring the {size}x{size} GEMM peak")
        peak = gemm_peak(device, compute_dtype(settings), size=size)
    if settings.compile:
        for c in contenders.values():
            c.model.compile(backend=settings.compile_backend)

    for mode in settings.modes:
        runners = {name: _Runner(c, mode, batch, autocast=settings.autocast) for name, c in contenders.items()}
        for name, runner in runners.items():
            say(f"{mode}: warming up {name}")
            for _ in range(settings.warmup):
                runner.step()
            _sync(device)
        times: dict[str, list[float]] = {name: [] for name in runners}
        cpu_times: dict[str, list[float]] = {name: [] for name in runners}
        names = list(runners)
        for r in range(settings.repeats):
            order = names[r % len(names):] + names[: r % len(names)]  # rotate who goes first
            for name in order:
                _sync(device)
                start, cpu_start = time.perf_counter(), time.process_time()
                runners[name].step()
                _sync(device)
                times[name].append(time.perf_counter() - start)
                cpu_times[name].append(time.process_time() - cpu_start)
            say(f"{mode}: repeat {r + 1}/{settings.repeats}")
        for name, runner in runners.items():
            img_s = _summary([settings.batch_size / t for t in times[name]])
            gflops = results[name]["gflops_per_img"].get(mode)
            results[name][mode] = {
                "img_s": img_s,
                "seconds": _summary(times[name]),
                # images per second of this process's CPU time (all its threads): less sensitive than wall
                # time to other programs taking turns on a shared machine
                "img_per_cpu_s": _summary([settings.batch_size / max(t, 1e-9) for t in cpu_times[name]]),
                # achieved FLOP/s (median img/s x FLOPs per image) over the measured GEMM peak
                "mfu": None if peak is None or gflops is None else gflops * img_s["median"] / peak["gflops"],
                "peak_mem_mb": None,
            }
            if settings.memory:
                bytes_ = peak_memory(runner.step, device)
                results[name][mode]["peak_mem_mb"] = None if bytes_ is None else bytes_ / 2**20
        del runners
        _release_heap()
    if settings.compile:
        torch._dynamo.reset()  # drop this run's compiled graphs before the next run builds new models

    settings_dict = asdict(settings)
    settings_dict.update(threads=torch.get_num_threads(), torch=torch.__version__, variants=list(variants),
                         optimize_for_cpu=_optimizer_for_cpu() is not None)
    settings_dict["memory_method"] = (
        "cuda max_memory_allocated - allocated before the step" if device.type == "cuda"
        else "peak RSS (sampled every 0.5 ms after malloc_trim) - RSS before the step"
    )
    if device.type == "cuda":
        settings_dict["gpu"] = torch.cuda.get_device_name(device)
    report = {"settings": settings_dict, "peak": peak, "results": results, "unavailable": unavailable}
    report.update(_ratios(settings, results, unavailable))
    return report


def _ratios(settings: Settings, results: dict[str, Any], unavailable: dict[str, str]) -> dict[str, Any]:
    """ours/<reference> img/s ratios (wall and CPU time) for each variant of our main contender, and step-time
    ratios of our main contender to our other ones (e.g. MAE's step / ViT's) in the same variant."""
    names = list(results) + [n for n in unavailable if n not in results]
    mains = [n for n in names if _plain_name(n) == "ours"]
    companions = [n for n in names if _is_ours(n) and _plain_name(n) != "ours"]
    references = [n for n in names if not _is_ours(n)]

    def ratio(a: str, b: str, mode: str, key: str, *, invert: bool = False) -> float | None:
        if a not in results or b not in results:
            return None
        x, y = results[a][mode][key]["median"], results[b][mode][key]["median"]
        return y / x if invert else x / y

    ratios, cpu_ratios, step_time, targets = {}, {}, {}, {}
    for main in mains:
        for ref in references:
            ratios[f"{main}/{ref}"] = {m: ratio(main, ref, m, "img_s") for m in settings.modes}
            cpu_ratios[f"{main}/{ref}"] = {m: ratio(main, ref, m, "img_per_cpu_s") for m in settings.modes}
        for other in companions:
            if _variant_of(other) != _variant_of(main):
                continue
            key = f"{main}/{other}"
            step_time[key] = {m: ratio(main, other, m, "img_s", invert=True) for m in settings.modes}
            bounds = {m: STEP_TIME_TARGETS[(settings.preset, _plain_name(other), m)] for m in settings.modes
                      if (settings.preset, _plain_name(other), m) in STEP_TIME_TARGETS}
            if bounds:
                targets[key] = bounds
    return {"ratios": ratios, "cpu_ratios": cpu_ratios, "step_time_ratios": step_time, "step_time_targets": targets}


def run_many(base: Settings, presets: list[str], *, compile_modes: tuple[bool, ...] = (False,),
             progress: Callable[[str], None] | None = None,
             on_report: Callable[[list[dict[str, Any]]], None] | None = None) -> list[dict[str, Any]]:
    """One run per (compile mode, preset), every eager run before any compiled one; `on_report(reports so far)`
    after each, so a run cut short still leaves the finished ones written."""
    reports: list[dict[str, Any]] = []
    for compiled in compile_modes:
        for preset in presets:
            say = progress or (lambda message: None)
            say(f"== {preset} ({'compiled' if compiled else 'eager'})")
            reports.append(run_benchmark(replace(base, preset=preset, compile=compiled), progress=progress))
            if on_report:
                on_report(reports)
    return reports


def resolve_presets(text: str) -> list[str]:
    """"all" -> the four suites; else a comma-separated list of suite names."""
    if text == "all":
        return list(SUITE_ORDER)
    presets = [p for p in text.split(",") if p]
    bad = [p for p in presets if p not in SUITES]
    if bad or not presets:
        raise ValueError(f"preset {text!r}: choose 'all' or some of {', '.join(sorted(SUITES))} (comma-separated)")
    return presets


# ----------------------------------------------------------------------------------------------- output
def _num(value: float | None, fmt: str = ".3f") -> str:
    return "N/A" if value is None else format(value, fmt)


def _describe(s: dict[str, Any]) -> str:
    precision = "fp32 weights, bf16 autocast" if s.get("autocast") else s["dtype"]
    return (f"batch={s['batch_size']} precision={precision} device={s['device']} threads={s['threads']} "
            f"repeats={s['repeats']} warmup={s['warmup']} compiled={s.get('compile', False)} torch={s['torch']}")


def format_table(report: dict[str, Any]) -> str:
    """Medians with min-max spread, GFLOPs per image and utilisation per contender and mode, then ratios."""
    s = report["settings"]
    lines = [f"preset={s['preset']} " + _describe(s)]
    peak = report.get("peak")
    if peak:
        kernels = ", ".join(f"{k} {v:.1f}" for k, v in peak["kernels"].items())
        lines.append(f"GEMM peak ({peak['size']}^3 {peak['dtype']}, {peak['threads']} threads): {peak['gflops']:.1f} "
                     f"GFLOP/s ({kernels}); MFU = GFLOP/img x img/s / peak")
    lines.append(f"{'contender':<16}{'mode':<11}{'img/s (median)':>15}{'spread (min-max)':>20}{'img/cpu-s':>11}"
                 f"{'GFLOP/img':>11}{'MFU':>7}{'peak MB':>10}{'params M':>10}")
    for name, res in report["results"].items():
        for mode in s["modes"]:
            m = res[mode]
            mem = "N/A" if m["peak_mem_mb"] is None else f"{m['peak_mem_mb']:.0f}"
            spread = f"{m['img_s']['min']:.2f}-{m['img_s']['max']:.2f}"
            lines.append(f"{name:<16}{mode:<11}{m['img_s']['median']:>15.2f}{spread:>20}"
                         f"{m['img_per_cpu_s']['median']:>11.2f}{_num(res['gflops_per_img'].get(mode), '.3g'):>11}"
                         f"{_num(m.get('mfu'), '.2f'):>7}{mem:>10}{res['params_m']:>10.2f}")
    for name, reason in report["unavailable"].items():
        lines.append(f"{name:<16}{'-':<11}{'N/A':>15}  ({reason})")
    for key, per_mode in report["ratios"].items():
        parts = [f"{mode} {_num(r)}" for mode, r in per_mode.items()]
        cpu = [_num(r) for r in report["cpu_ratios"][key].values()]
        lines.append(f"{key}: " + ", ".join(parts) + "  (per CPU-second: " + ", ".join(cpu) + ")")
    for key, per_mode in report["step_time_ratios"].items():
        bounds = report["step_time_targets"].get(key, {})
        parts = []
        for mode, r in per_mode.items():
            note = ""
            if mode in bounds and r is not None:
                note = f" (target <= {bounds[mode]}: {'met' if r <= bounds[mode] else 'MISSED'})"
            parts.append(f"{mode} {_num(r)}{note}")
        lines.append(f"step time {key}: " + ", ".join(parts))
    return "\n".join(lines)


def format_markdown(reports: list[dict[str, Any]]) -> str:
    """One Markdown table over several runs (suites, compiled or not): img/s medians, GFLOPs per image, MFU, and
    for our rows the ratios to each reference; below it the GEMM peaks and step-time ratios."""
    references = [r for r in REFERENCES if any(k.endswith("/" + r) for rep in reports for k in rep["ratios"])]
    header = ["suite", "precision", "compiled", "contender", "inference img/s", "train img/s",
              "GFLOP/img inf / train", "MFU inf / train"] + [f"ours/{r} inf / train" for r in references]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    notes = []

    def pair(values: dict[str, Any] | None, fmt: str) -> str:
        values = values or {}
        return " / ".join(_num(values.get(mode), fmt) if mode in values else "-" for mode in MODES)

    for rep in reports:
        s = rep["settings"]
        precision = "bf16 autocast" if s.get("autocast") else s["dtype"]
        compiled = "yes" if s.get("compile") else "no"
        for name, res in rep["results"].items():
            img_s = {m: res[m]["img_s"]["median"] for m in MODES if m in res}
            mfu = {m: res[m]["mfu"] for m in MODES if m in res}
            row = [s["preset"], precision, compiled, name, _num(img_s.get("inference"), ".2f"),
                   _num(img_s.get("train"), ".2f"), pair(res["gflops_per_img"], ".3g"), pair(mfu, ".2f")]
            for ref in references:
                row.append(pair(rep["ratios"].get(f"{name}/{ref}"), ".2f") if f"{name}/{ref}" in rep["ratios"] else "")
            lines.append("| " + " | ".join(row) + " |")
        for name, reason in rep["unavailable"].items():
            lines.append("| " + " | ".join([s["preset"], precision, compiled, name, f"N/A ({reason})"]
                                           + [""] * (len(header) - 5)) + " |")
        tag = f"{s['preset']} ({precision}, compiled {compiled})"
        if rep.get("peak"):
            p = rep["peak"]
            notes.append(f"- {tag}: GEMM peak {p['gflops']:.1f} GFLOP/s ({p['kernel']}, {p['size']}^3 {p['dtype']}, "
                         f"{p['threads']} threads)")
        for key, per_mode in rep["step_time_ratios"].items():
            bounds = rep["step_time_targets"].get(key, {})
            text = ", ".join(f"{m} {_num(r)}" + (f" (target <= {bounds[m]})" if m in bounds else "")
                             for m, r in per_mode.items())
            notes.append(f"- {tag}: step time {key}: {text}")
    first = reports[0]["settings"] if reports else None
    intro = [f"Settings: {_describe(first)}" + (f", GPU {first['gpu']}" if first.get("gpu") else ""), ""] if first else []
    return "\n".join(intro + lines + ([""] + notes if notes else [])) + "\n"


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """["hidden_size=32", "pooling=gap"] -> {"hidden_size": 32, "pooling": "gap"} (JSON values, else strings)."""
    overrides: dict[str, Any] = {}
    for item in items:
        for part in filter(None, item.split(",")) if "[" not in item else [item]:
            key, sep, value = part.partition("=")
            if not sep or not key:
                raise ValueError(f"--config expects key=value, got {part!r}")
            try:
                overrides[key.strip()] = json.loads(value)
            except json.JSONDecodeError:
                overrides[key.strip()] = value
    return overrides

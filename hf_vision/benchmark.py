"""Speed and memory of our models against timm's and transformers' equivalents, in one process.

Run it through the thin CLI: `python scripts/benchmark.py --preset vit-base-patch16-224 --threads 2`.

What is measured, per contender and per mode, after `warmup` untimed steps:
- inference: img/s of a forward pass under `torch.inference_mode()` in eval mode;
- train: img/s of one optimisation step (forward, loss, backward, AdamW step, zero_grad) in train mode;
- peak memory of one extra, untimed step: on CUDA `torch.cuda.max_memory_allocated` minus what was allocated
  before the step; on CPU the peak resident-set size (sampled from /proc every 0.5 ms, after returning freed
  heap to the OS with `malloc_trim`) minus the resident size before the step.
Contenders run interleaved repeat by repeat (the order rotates each repeat) so a noisy shared machine slows
them alike; the table reports medians with the min-max spread, and `ours/<reference>` ratios of the medians
(> 1 means we are faster). Beside wall-clock img/s it reports images per second of the process's CPU time
(img/cpu-s), which other programs sharing the cores disturb much less.

Adding a suite (e.g. MAE or Swin) takes one function:

    @register_suite("mae-vit-base-patch16")
    def _mae_suite(config_overrides, references):
        config = get_config("mae-vit-base-patch16", **config_overrides)
        contenders = {"ours": Contender(MAEForPreTraining(config), "hf_mae")}
        if "transformers" in references:
            contenders["transformers"] = Contender(transformers.ViTMAEForPreTraining(...), "hf_mae")
        contenders["ours ViT-B/16"] = Contender(ViTForImageClassification(...), "hf_classify")
        return contenders

The first key must be "ours"; every other contender gets a ratio `ours/<name>`, so a non-reference entry
such as "ours ViT-B/16" yields the ratio of the MAE step to our ViT step. A contender whose reference has no
faithful equivalent is given as `Unavailable("why")` and shows up as N/A. The step kind names how inputs are
built and the loss is taken (`STEP_KINDS`: "hf_classify", "timm_classify", "hf_features", "timm_features",
"hf_mae"); add a `StepKind` there for a new calling convention.
"""
from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

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
    import hf_vision

    if not hasattr(hf_vision, "HybridForImageClassification"):
        raise ValueError("hf_vision.HybridForImageClassification does not exist yet; the hybrid suite needs it")
    config = get_config("vit-base-r50-s16-224", **config_overrides)
    contenders: dict[str, Contender | Unavailable] = {
        "ours": Contender(hf_vision.HybridForImageClassification(config), "hf_classify")
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


# ----------------------------------------------------------------------------------------------- measuring
@dataclass
class Settings:
    preset: str
    batch_size: int = 8
    threads: int | None = None
    dtype: str = "fp32"
    device: str = "cpu"
    repeats: int = 5
    warmup: int = 2
    modes: tuple[str, ...] = MODES
    references: tuple[str, ...] = REFERENCES
    config_overrides: dict[str, Any] = field(default_factory=dict)
    memory: bool = True
    seed: int = 0
    # False: our Linear layers compute with F.linear (MKL sgemm, like timm and transformers) instead of oneDNN,
    # which separates the kernel's share of a speed-up from the model code's
    onednn_linear: bool = True


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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _release_heap() -> None:
    gc.collect()
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


class _Runner:
    """One contender in one mode: a zero-argument `step()` plus what it needs (optimizer, inputs)."""

    def __init__(self, contender: Contender, mode: str, batch: dict[str, torch.Tensor]) -> None:
        self.model, self.kind, self.mode, self.batch = contender.model, STEP_KINDS[contender.kind], mode, batch
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4) if mode == "train" else None

    def step(self) -> None:
        if self.mode == "inference":
            self.model.eval()
            with torch.inference_mode():
                self.kind.infer(self.model, self.batch)
        else:
            self.model.train()
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
        "pixel_values": torch.randn(b, config.num_channels, height, width, generator=gen),
        "labels": torch.randint(0, max(config.num_labels, 1), (b,), generator=gen),
    }
    patch = getattr(config, "patch_size", 16)
    batch["noise"] = torch.rand(b, (height // patch) * (width // patch), generator=gen)
    return {k: v.to(device, dtype) if v.is_floating_point() else v.to(device) for k, v in batch.items()}


def _summary(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "all": values}


def run_benchmark(settings: Settings, *, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Build the suite, warm up, time interleaved repeats; returns a JSON-ready dict (see `format_table`).

    `settings.threads` and `settings.onednn_linear` apply for the run only: the caller's torch thread count and
    Linear kernel are restored afterwards."""
    from hf_vision.optimize import onednn_linear as linear_module

    threads, onednn = torch.get_num_threads(), linear_module.ENABLED
    linear_module.ENABLED = settings.onednn_linear
    try:
        return _run_benchmark(settings, progress=progress)
    finally:
        torch.set_num_threads(threads)
        linear_module.ENABLED = onednn


def _run_benchmark(settings: Settings, *, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    if settings.preset not in SUITES:
        raise ValueError(f"no benchmark suite for preset {settings.preset!r}; available: {', '.join(sorted(SUITES))}")
    if settings.dtype not in DTYPES:
        raise ValueError(f"dtype={settings.dtype!r} is not one of {', '.join(DTYPES)}")
    unknown = set(settings.modes) - set(MODES)
    if unknown:
        raise ValueError(f"mode(s) {sorted(unknown)} not among {', '.join(MODES)}")
    if settings.repeats < 1 or settings.warmup < 0 or settings.batch_size < 1:
        raise ValueError("repeats and batch_size must be >= 1 and warmup >= 0")
    say = progress or (lambda message: None)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    device, dtype = torch.device(settings.device), DTYPES[settings.dtype]
    torch.manual_seed(settings.seed)
    built = SUITES[settings.preset](dict(settings.config_overrides), set(settings.references))
    if next(iter(built), None) != "ours":
        raise ValueError(f"suite {settings.preset!r} must list 'ours' first")
    contenders = {name: c for name, c in built.items() if isinstance(c, Contender)}
    unavailable = {name: c.reason for name, c in built.items() if isinstance(c, Unavailable)}
    ours_config = get_config(settings.preset, **settings.config_overrides)
    batch = _make_batch(ours_config, settings, device, dtype)
    for c in contenders.values():
        c.model.to(device=device, dtype=dtype)

    results: dict[str, dict[str, Any]] = {
        name: {"params_m": sum(p.numel() for p in c.model.parameters()) / 1e6} for name, c in contenders.items()
    }
    for mode in settings.modes:
        runners = {name: _Runner(c, mode, batch) for name, c in contenders.items()}
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
            results[name][mode] = {
                "img_s": _summary([settings.batch_size / t for t in times[name]]),
                "seconds": _summary(times[name]),
                # images per second of this process's CPU time (all its threads): less sensitive than wall
                # time to other programs taking turns on a shared machine
                "img_per_cpu_s": _summary([settings.batch_size / max(t, 1e-9) for t in cpu_times[name]]),
                "peak_mem_mb": None,
            }
            if settings.memory:
                bytes_ = peak_memory(runner.step, device)
                results[name][mode]["peak_mem_mb"] = None if bytes_ is None else bytes_ / 2**20
        del runners
        _release_heap()

    ratios: dict[str, dict[str, float | None]] = {}
    cpu_ratios: dict[str, dict[str, float | None]] = {}
    for name in list(contenders)[1:] + list(unavailable):
        ratios[name], cpu_ratios[name] = {}, {}
        for mode in settings.modes:
            if name in unavailable:
                ratios[name][mode] = cpu_ratios[name][mode] = None
                continue
            ours, ref = results["ours"][mode], results[name][mode]
            ratios[name][mode] = ours["img_s"]["median"] / ref["img_s"]["median"]
            cpu_ratios[name][mode] = ours["img_per_cpu_s"]["median"] / ref["img_per_cpu_s"]["median"]
    settings_dict = asdict(settings)
    settings_dict["threads"] = torch.get_num_threads()
    settings_dict["torch"] = torch.__version__
    settings_dict["memory_method"] = (
        "cuda max_memory_allocated - allocated before the step" if device.type == "cuda"
        else "peak RSS (sampled every 0.5 ms after malloc_trim) - RSS before the step"
    )
    return {"settings": settings_dict, "results": results, "unavailable": unavailable, "ratios": ratios,
            "cpu_ratios": cpu_ratios}


def format_table(report: dict[str, Any]) -> str:
    """Medians with min-max spread per contender and mode, then ours/<reference> ratios."""
    s = report["settings"]
    lines = [
        f"preset={s['preset']} batch={s['batch_size']} dtype={s['dtype']} device={s['device']} "
        f"threads={s['threads']} repeats={s['repeats']} warmup={s['warmup']} torch={s['torch']} "
        f"our linear={'onednn' if s.get('onednn_linear', True) else 'sgemm'}",
        f"{'contender':<16}{'mode':<11}{'img/s (median)':>15}{'spread (min-max)':>20}{'img/cpu-s':>11}{'peak MB':>10}"
        f"{'params M':>10}",
    ]
    for name, res in report["results"].items():
        for mode in s["modes"]:
            m = res[mode]
            mem = "N/A" if m["peak_mem_mb"] is None else f"{m['peak_mem_mb']:.0f}"
            spread = f"{m['img_s']['min']:.2f}-{m['img_s']['max']:.2f}"
            lines.append(f"{name:<16}{mode:<11}{m['img_s']['median']:>15.2f}{spread:>20}"
                         f"{m['img_per_cpu_s']['median']:>11.2f}{mem:>10}"
                         f"{res['params_m']:>10.2f}")
    for name, reason in report["unavailable"].items():
        lines.append(f"{name:<16}{'-':<11}{'N/A':>15}  ({reason})")
    for name, per_mode in report["ratios"].items():
        parts = [f"{mode} {'N/A' if r is None else f'{r:.3f}'}" for mode, r in per_mode.items()]
        cpu = [f"{'N/A' if r is None else f'{r:.3f}'}" for r in report["cpu_ratios"][name].values()]
        lines.append(f"ours/{name}: " + ", ".join(parts) + "  (per CPU-second: " + ", ".join(cpu) + ")")
    return "\n".join(lines)


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

"""One benchmark run (build, count, warm up, time interleaved repeats, report) and a series of runs."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

import torch

from ..presets import get_config
from ..optimize import onednn_linear
from .measure import _make_batch, _release_heap, _Runner, _summary, _sync, count_flops, gemm_peak, peak_memory
from .settings import (DTYPES, STEP_TIME_TARGETS, Settings, _is_ours, _optimizer_for_cpu, _plain_name, _validate,
                       _variant_of, check_device, compute_dtype, resolve_variants, with_variants)
from .revisions import add_revisions
from .suites import SUITES, Contender, Unavailable


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
    contenders, unavailable, batch = _build(settings, variants, device)
    results: dict[str, dict[str, Any]] = {
        name: {"params_m": sum(p.numel() for p in c.model.parameters()) / 1e6, "gflops_per_img": {}}
        for name, c in contenders.items()
    }
    peak = _count_flops_and_peak(settings, contenders, batch, results, say) if settings.flops else None
    if settings.compile:
        for c in contenders.values():
            c.model.compile(backend=settings.compile_backend)
    for mode in settings.modes:
        _time_mode(settings, mode, contenders, batch, peak, results, say)
    if settings.compile:
        torch._dynamo.reset()  # drop this run's compiled graphs before the next run builds new models
    report = {"settings": _settings_record(settings, variants, device), "peak": peak, "results": results,
              "unavailable": unavailable}
    report.update(_ratios(settings, results, unavailable))
    report["ceilings"] = _ceilings(settings, results, peak, report["ratios"])
    return report


def _build(settings: Settings, variants: tuple[str, ...], device: torch.device):
    """The suite's contenders (in their variants, on the device and dtype), the unavailable ones' reasons, and the
    input batch every contender gets."""
    dtype = DTYPES[settings.dtype]
    torch.manual_seed(settings.seed)
    built = SUITES[settings.preset](dict(settings.config_overrides), set(settings.references))
    if next(iter(built), None) != "ours":
        raise ValueError(f"suite {settings.preset!r} must list 'ours' first")
    if settings.against:
        add_revisions(built, tuple(settings.against))
    built = with_variants(built, variants)
    contenders = {name: c for name, c in built.items() if isinstance(c, Contender)}
    unavailable = {name: c.reason for name, c in built.items() if isinstance(c, Unavailable)}
    ours_config = get_config(settings.preset, **settings.config_overrides)
    batch = _make_batch(ours_config, settings, device, dtype)
    for c in contenders.values():
        c.model.to(device=device, dtype=dtype)
    return contenders, unavailable, batch


def _count_flops_and_peak(settings: Settings, contenders: dict[str, Contender], batch: dict[str, torch.Tensor],
                          results: dict[str, dict[str, Any]], say: Callable[[str], None]) -> dict[str, Any]:
    """FLOPs per image of each contender and mode into `results`; returns the measured GEMM peak."""
    say("counting FLOPs")
    few = {k: v[: min(2, settings.batch_size)] for k, v in batch.items()}  # per image: a small batch will do
    # The CPU opt-in times oneDNN against F.linear on the first call of each shape; under the counter those timing
    # runs would be counted as the model's FLOPs (the choice of kernel does not change the count).
    measure, onednn_linear.MEASURE = onednn_linear.MEASURE, False
    try:
        for name, c in contenders.items():
            for mode in settings.modes:
                results[name]["gflops_per_img"][mode] = count_flops(c, mode, few, autocast=settings.autocast) / 1e9
    finally:
        onednn_linear.MEASURE = measure
    device = batch["pixel_values"].device
    size = settings.peak_size or (8192 if device.type == "cuda" else 2048)
    say(f"measuring the {size}x{size} GEMM peak")
    return gemm_peak(device, compute_dtype(settings), size=size)


def _time_mode(settings: Settings, mode: str, contenders: dict[str, Contender], batch: dict[str, torch.Tensor],
               peak: dict[str, Any] | None, results: dict[str, dict[str, Any]], say: Callable[[str], None]) -> None:
    """Warm up every contender, time interleaved repeats of one mode, and put the summaries into `results`."""
    device = batch["pixel_values"].device
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


def _settings_record(settings: Settings, variants: tuple[str, ...], device: torch.device) -> dict[str, Any]:
    """The settings as the report states them, with what the run found (threads, torch, memory method, GPU)."""
    record = asdict(settings)
    record.update(threads=torch.get_num_threads(), torch=torch.__version__, variants=list(variants),
                  optimize_for_cpu=_optimizer_for_cpu() is not None)
    record["memory_method"] = (
        "cuda max_memory_allocated - allocated before the step" if device.type == "cuda"
        else "peak RSS (sampled every 0.5 ms after malloc_trim) - RSS before the step"
    )
    if device.type == "cuda":
        record["gpu"] = torch.cuda.get_device_name(device)
    return record


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

    def paired(a: str, b: str, mode: str, *, invert: bool = False) -> dict[str, Any] | None:
        """The ratio within each repeat (both ran in the same round, so a slow spell of the machine that hits a
        round hits both): median and spread over repeats. Narrower than the medians' ratio on a noisy machine."""
        if a not in results or b not in results:
            return None
        per_round = [(y / x if invert else x / y) for x, y in zip(results[a][mode]["img_s"]["all"],
                                                                  results[b][mode]["img_s"]["all"])]
        return _summary(per_round)

    ratios, cpu_ratios, paired_ratios, step_time, paired_step_time, targets = {}, {}, {}, {}, {}, {}
    for main in mains:
        for ref in references:
            ratios[f"{main}/{ref}"] = {m: ratio(main, ref, m, "img_s") for m in settings.modes}
            cpu_ratios[f"{main}/{ref}"] = {m: ratio(main, ref, m, "img_per_cpu_s") for m in settings.modes}
            paired_ratios[f"{main}/{ref}"] = {m: paired(main, ref, m) for m in settings.modes}
        for other in companions:
            if _variant_of(other) != _variant_of(main):
                continue
            key = f"{main}/{other}"
            step_time[key] = {m: ratio(main, other, m, "img_s", invert=True) for m in settings.modes}
            paired_step_time[key] = {m: paired(main, other, m, invert=True) for m in settings.modes}
            bounds = {m: STEP_TIME_TARGETS[(settings.preset, _plain_name(other), m)] for m in settings.modes
                      if (settings.preset, _plain_name(other), m) in STEP_TIME_TARGETS}
            if bounds:
                targets[key] = bounds
    return {"ratios": ratios, "cpu_ratios": cpu_ratios, "paired_ratios": paired_ratios, "step_time_ratios": step_time,
            "paired_step_time_ratios": paired_step_time, "step_time_targets": targets}


def _ceilings(settings: Settings, results: dict[str, Any], peak: dict[str, Any] | None,
              ratios: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """For each ratio ours/<reference>: the largest it could be on this machine, were every FLOP of ours computed
    at the measured GEMM peak (our FLOPs per image over the peak, against the reference's measured time). A target
    above it cannot be met here in that precision, whatever the kernels."""
    ceilings: dict[str, dict[str, float | None]] = {}
    if peak is None:
        return ceilings
    for key in ratios:
        main, ref = key.split("/", 1)
        per_mode = {}
        for mode in settings.modes:
            gflops = results.get(main, {}).get("gflops_per_img", {}).get(mode)
            ref_img_s = results.get(ref, {}).get(mode, {}).get("img_s", {}).get("median")
            per_mode[mode] = (peak["gflops"] / gflops / ref_img_s) if gflops and ref_img_s else None
        ceilings[key] = per_mode
    return ceilings


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

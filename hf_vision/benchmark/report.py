"""The benchmark's reports as a plain-text table and as Markdown."""
from __future__ import annotations

from typing import Any

from .revisions import REVISION_PREFIX
from .settings import MODES, REFERENCES


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
        ceiling = report.get("ceilings", {}).get(key)
        limit = ("; at most " + ", ".join(_num(c, ".2f") for c in ceiling.values()) + " at the GEMM peak"
                 if ceiling else "")
        lines.append(f"{key}: " + ", ".join(parts) + "  (per CPU-second: " + ", ".join(cpu) + limit + ")")
        paired = _paired_text(report.get("paired_ratios", {}).get(key))
        if paired:
            lines.append("    " + paired)
    for key, per_mode in report["step_time_ratios"].items():
        bounds = report["step_time_targets"].get(key, {})
        parts = []
        for mode, r in per_mode.items():
            note = ""
            if mode in bounds and r is not None:
                note = f" (target <= {bounds[mode]}: {'met' if r <= bounds[mode] else 'MISSED'})"
            parts.append(f"{mode} {_num(r)}{note}")
        lines.append(f"step time {key}: " + ", ".join(parts))
        paired = _paired_text(report.get("paired_step_time_ratios", {}).get(key))
        if paired:
            lines.append("    " + paired)
    return "\n".join(lines)


def _paired_text(per_mode: dict[str, Any] | None) -> str:
    """The same ratio taken within each repeat: median [min-max] over repeats (a spread across 1 is a tie)."""
    parts = [f"{mode} {v['median']:.3f} [{v['min']:.2f}-{v['max']:.2f}]" for mode, v in (per_mode or {}).items() if v]
    return "within each repeat: " + ", ".join(parts) if parts else ""


def format_markdown(reports: list[dict[str, Any]]) -> str:
    """One Markdown table over several runs (suites, compiled or not): img/s medians, GFLOPs per image, MFU, and
    for our rows the ratios to each reference; below it the GEMM peaks and step-time ratios."""
    revisions = sorted({k.split("/", 1)[1] for rep in reports for k in rep["ratios"]
                        if k.split("/", 1)[1].startswith(REVISION_PREFIX)})
    references = [r for r in REFERENCES if any(k.endswith("/" + r) for rep in reports for k in rep["ratios"])]
    references += revisions
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
        for key, per_mode in rep.get("paired_ratios", {}).items():
            paired = _paired_text(per_mode)
            if paired:
                notes.append(f"- {tag}: {key} {paired}")
        for key, per_mode in rep.get("ceilings", {}).items():
            if any(c is not None for c in per_mode.values()):
                limits = ", ".join(f"{m} {_num(c, '.2f')}" for m, c in per_mode.items())
                notes.append(f"- {tag}: {key} at most {limits} (every FLOP of ours at the GEMM peak)")
        for key, per_mode in rep["step_time_ratios"].items():
            bounds = rep["step_time_targets"].get(key, {})
            text = ", ".join(f"{m} {_num(r)}" + (f" (target <= {bounds[m]})" if m in bounds else "")
                             for m, r in per_mode.items())
            notes.append(f"- {tag}: step time {key}: {text}")
    first = reports[0]["settings"] if reports else None
    intro = [f"Settings: {_describe(first)}" + (f", GPU {first['gpu']}" if first.get("gpu") else ""), ""] if first else []
    return "\n".join(intro + lines + ([""] + notes if notes else [])) + "\n"

"""From (row, seed) results to a table: mean +/- standard deviation, the paper's number, a verdict, cost; then
results.json, a Markdown table, one PNG per table and an index.html over every table in the output folder.

Verdicts compare each row with the table's reference row (the paper's default), metric by metric:
- "reproduces": our difference has the paper's sign and the error bars (mean +/- sd) do not overlap; or the
  paper reports no difference (within 0.3 points) and ours is shown to be small: |difference| + both sds <= 1
  point (overlapping wide bars show nothing either way);
- "does not reproduce": the opposite sign, bars apart; or the paper reports no difference and ours are apart;
- "inconclusive": the bars overlap (or a single seed, which has no error bar).
"""
from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any, Sequence

from .tables import Row, Table

METRIC_LABELS = {"top1": "top-1", "finetune_top1": "fine-tune top-1", "probe_top1": "linear-probe top-1"}
REFERENCE = "reference"
EQUIVALENCE_MARGIN = 0.01  # "no difference" is reproduced when ours is within 1 point, error bars included


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def _scale(value: float) -> float:
    """Paper numbers come as fractions (ViT Table 8) or percents (the others)."""
    return 1.0 if abs(value) <= 1.0 else 100.0


def verdict(ours: dict[str, float], ref: dict[str, float], paper: float | None, paper_ref: float | None) -> str:
    """See the module docstring. ours/ref: {"mean", "std", "n"} of the row and the reference row (fractions)."""
    if paper is None or paper_ref is None:
        return "no paper number"
    if min(ours["n"], ref["n"]) < 2:
        return "inconclusive (one seed)"
    paper_delta = (paper - paper_ref) / _scale(paper_ref)
    delta = ours["mean"] - ref["mean"]
    overlap = abs(delta) <= ours["std"] + ref["std"]
    if abs(paper_delta) < 0.003:
        if not overlap:
            return "does not reproduce (paper: no difference)"
        if abs(delta) + ours["std"] + ref["std"] <= EQUIVALENCE_MARGIN:
            return "reproduces (no difference)"
        return "inconclusive (error bars overlap; paper: no difference)"
    if overlap:
        return "inconclusive (error bars overlap)"
    return "reproduces" if (delta > 0) == (paper_delta > 0) else "does not reproduce"


def table_results(table: Table, rows: list[Row], runs: list[dict[str, Any]], *, options: dict[str, Any],
                  seeds: int, session: dict[str, Any]) -> dict[str, Any]:
    """results.json's content: the table's description, every run, and one summary per row."""
    by_row: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_row.setdefault(run["row"], []).append(run)
    stats: dict[str, dict[str, dict[str, float]]] = {}
    for row in rows:
        stats[row.name] = {}
        for metric in table.metrics:
            values = [r["metrics"][metric] for r in by_row[row.name]]
            mean, std = mean_std(values)
            stats[row.name][metric] = {"mean": mean, "std": std, "n": len(values)}
    reference = table.row(table.reference)
    summary = []
    for row in rows:
        row_runs = by_row[row.name]
        entry: dict[str, Any] = {"row": row.name, "x": row.x, "paper": dict(row.paper), "stats": stats[row.name],
                                 "verdicts": {}}
        for metric in table.metrics:
            if row.name == table.reference:
                entry["verdicts"][metric] = REFERENCE
            else:
                entry["verdicts"][metric] = verdict(stats[row.name][metric], stats[reference.name][metric],
                                                    row.paper.get(metric), reference.paper.get(metric))
        first = row_runs[0]
        entry["flops_per_image"] = first["flops_per_image"]
        entry["train_flops"] = first["train_flops"]
        entry["steps"] = first["plan"]["steps"]
        entry["wall_s"] = mean_std([r["total_wall_s"] for r in row_runs])[0]
        entry["cpu_s"] = mean_std([r["total_cpu_s"] for r in row_runs])[0]
        summary.append(entry)
    return {
        "table": table.name, "title": table.title, "source": table.source, "paper_setting": table.setting,
        "paper_claim": table.claim, "note": table.note, "reference": table.reference, "metrics": list(table.metrics),
        "seeds": seeds, "options": options, "session": session,
        "total_wall_s": sum(r["total_wall_s"] for r in runs), "total_cpu_s": sum(r["total_cpu_s"] for r in runs),
        "summary": summary, "runs": runs,
    }


def _pct(stat: dict[str, float]) -> str:
    text = f"{100 * stat['mean']:.1f}"
    return f"{text} ± {100 * stat['std']:.1f}" if stat["n"] > 1 else f"{text} (1 seed)"


def _paper(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" if value <= 1.0 else f"{value:.1f}"


def markdown(results: dict[str, Any]) -> str:
    """The table as Markdown: ours (%, mean ± sd over seeds) beside the paper's number, verdict, cost."""
    metrics = results["metrics"]
    head = ["row"]
    for metric in metrics:
        label = METRIC_LABELS[metric]
        head += [f"ours {label} (%)", f"paper {label}", "verdict" if len(metrics) == 1 else f"verdict ({label})"]
    phase = "pretrain" if "pretrain" in results["summary"][0]["flops_per_image"] else "train"
    head += [f"MFLOPs/img ({phase} step)", "train TFLOPs", "wall s", "CPU s"]
    lines = [f"### {results['title']}", "",
             f"Paper ({results['source']}): {results['paper_setting']}. Claim: {results['paper_claim']}.", ""]
    if results.get("note"):
        lines += [f"Note: {results['note']}", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for entry in results["summary"]:
        cells = [entry["row"]]
        for metric in metrics:
            cells += [_pct(entry["stats"][metric]), _paper(entry["paper"].get(metric)), entry["verdicts"][metric]]
        cells += [f"{entry['flops_per_image'][phase] / 1e6:.1f}", f"{entry['train_flops'] / 1e12:.2f}",
                  f"{entry['wall_s']:.0f}", f"{entry['cpu_s']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    options = results["options"]
    lines += ["", f"Ours: {options.get('dataset') or 'embedded digits'}, {results['seeds']} seed(s), steps per row "
              f"{results['summary'][0]['steps']} (x the row's budget), budget x{options.get('budget')}"
              f"{', --quick' if options.get('quick') else ''}; all (row, seed) runs together took "
              f"{results['total_wall_s'] / 60:.1f} min wall, {results['total_cpu_s'] / 60:.1f} min CPU.", ""]
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> Path:
    """Ours (left, error bars = sd over seeds) and the paper's numbers (right); a curve for the mask ratio."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..analysis.plots import save_figure

    summary, metrics = results["summary"], results["metrics"]
    fig = Figure(figsize=(12, 4.2))  # its own Agg canvas: no pyplot state
    FigureCanvasAgg(fig)
    ours_ax, paper_ax = fig.subplots(1, 2)
    colors = ("tab:blue", "tab:orange")
    curve = all(e["x"] is not None for e in summary)
    names = [e["row"] for e in summary]
    width = 0.8 / len(metrics)
    for k, metric in enumerate(metrics):
        means = [100 * e["stats"][metric]["mean"] for e in summary]
        stds = [100 * e["stats"][metric]["std"] for e in summary]
        paper = [e["paper"].get(metric) for e in summary]
        paper = [None if p is None else (100 * p if p <= 1.0 else p) for p in paper]
        label = METRIC_LABELS[metric]
        if curve:
            xs = [100 * e["x"] for e in summary]
            ours_ax.errorbar(xs, means, yerr=stds, marker="o", capsize=4, color=colors[k], label=label)
            known = [(x, p) for x, p in zip(xs, paper) if p is not None]
            if known:
                paper_ax.plot(*zip(*known), marker="s", color=colors[k], label=label)
        else:
            xs = [i + (k - (len(metrics) - 1) / 2) * width for i in range(len(summary))]
            ours_ax.bar(xs, means, width, yerr=stds, capsize=4, color=colors[k], label=label)
            known = [(x, p) for x, p in zip(xs, paper) if p is not None]
            if known:
                paper_ax.bar(*zip(*known), width, color=colors[k], label=label)
    for ax, title in ((ours_ax, f"ours ({results['seeds']} seed(s), mean ± sd)"), (paper_ax, "paper")):
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("accuracy (%)")
        if curve:
            ax.set_xlabel("mask ratio (%)")
        else:
            ax.set_xticks(range(len(names)))
            ax.set_xticklabels(names, rotation=25, ha="right", fontsize=8)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        else:  # a table whose paper gives curves, not numbers (vit-pooling)
            ax.text(0.5, 0.5, "no numbers in the paper", ha="center", va="center", transform=ax.transAxes)
    for ax in (ours_ax, paper_ax):  # bars start at a sensible floor, so that differences stay visible
        if not curve:
            low = [p.get_height() for p in ax.patches if p.get_height() > 0]
            if low:
                ax.set_ylim(max(0.0, min(low) - 10), min(100.0, max(low) + 5))
    fig.suptitle(f"{results['title']} ({results['source']})", fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)


def write_table(output_dir: Path, table: Table, results: dict[str, Any]) -> dict[str, Path]:
    folder = output_dir / table.name
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "results.json", "md": folder / f"{table.name}.md", "png": folder / f"{table.name}.png"}
    paths["json"].write_text(json.dumps(results, indent=2) + "\n")
    paths["md"].write_text(markdown(results))
    plot(results, paths["png"])
    paths["index"] = write_index(output_dir)
    return paths


def write_index(output_dir: Path) -> Path:
    """index.html over every table already written under output_dir: its plot, Markdown and results.json."""
    parts = ["<!doctype html>", "<html><head><meta charset='utf-8'><title>hf-vision ablations</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}figure{margin:2em 0}"
             "img{max-width:100%;border:1px solid #ddd}</style></head><body>",
             "<h1>The papers' ablations, re-run</h1>"]
    for path in sorted(output_dir.glob("*/results.json")):
        results = json.loads(path.read_text())
        name = results["table"]
        parts.append(f"<h2>{html.escape(results['title'])}</h2><p>{html.escape(results['source'])}: "
                     f"{html.escape(results['paper_claim'])}. <a href='{name}/{name}.md'>table (Markdown)</a> · "
                     f"<a href='{name}/results.json'>results.json</a></p>")
        parts.append(f"<figure><img src='{name}/{name}.png' alt='{html.escape(results['title'])}'></figure>")
    parts.append("</body></html>")
    index = output_dir / "index.html"
    index.write_text("\n".join(parts) + "\n")
    return index

"""`compression_report`: every run under a folder in one table, best first, and a PerfNorm/SpeedNorm plot.

It reads every `eval_result.json` below the folder (the run folders of
`koforge compress run`, or model folders evaluated with `koforge compress eval`;
a model's copy inside a run's `model/` is skipped), sorts by Score, and draws
PerfNorm against SpeedNorm with the lines of equal Score
(0.5 * PerfNorm + 0.5 * SpeedNorm) so that the best trade-off is visible.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from koforge._utils.errors import NothingToDoError
from koforge._utils.io import atomic_file, read_json, require_path, write_json, write_text
from koforge.compress.run_report import md_table
from koforge.compress.score import EVAL_KIND


def collect_results(root: str | Path) -> list[dict]:
    """All eval results under `root`, one per run."""
    root = require_path(root, "runs folder")
    results = []
    for path in sorted(root.rglob("eval_result.json")):
        if path.parent.name == "model" and (path.parent.parent / "eval_result.json").exists():
            continue
        data = read_json(path, "eval result")
        if isinstance(data, dict) and data.get("kind") == EVAL_KIND:
            data["_path"] = str(path)
            results.append(data)
    return results


def _row(r: dict, root: Path) -> dict:
    a = r["analysis"]
    recipe = r.get("recipe") or {}
    rel = Path(r["_path"]).parent.relative_to(root) if Path(r["_path"]).is_relative_to(root) else Path(r["_path"]).parent
    return {"run": str(rel), "methods": "+".join(recipe.get("methods", [])) or "-", "layers": a["number_of_layers"],
            "heads": a["number_of_heads"], "hidden": a["hidden_dim"], "params_M": a["total_parameters"] / 1e6,
            "dtype": a["dtype"], "ppl": r["perplexity"]["perplexity"], "ms/token": r["speed"]["time_per_token_ms"],
            "PerfNorm": r["perf_norm"], "SpeedNorm": r["speed_norm"], "Score": r["score"]}


def plot_scores(rows: list[dict], path: str | Path, title: str = "Compression runs") -> Path:
    """PerfNorm (y) against SpeedNorm (x), Score contours, the baseline at (0, 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    xs = [r["SpeedNorm"] for r in rows]
    ys = [r["PerfNorm"] for r in rows]
    x_lo, x_hi = min(xs + [0.0]) - 0.05, max(xs + [0.5]) + 0.05
    y_lo, y_hi = min(ys + [0.5]) - 0.05, max(ys + [1.0]) + 0.05
    gx, gy = np.meshgrid(np.linspace(x_lo, x_hi, 200), np.linspace(y_lo, y_hi, 200))
    fig, ax = plt.subplots(figsize=(7, 5.5))
    cs = ax.contour(gx, gy, np.maximum(0.5 * gx + 0.5 * gy, 0), levels=np.arange(0.2, 1.01, 0.05),
                    colors="lightgray", linewidths=0.8)
    ax.clabel(cs, fmt="%.2f", fontsize=7)
    ax.scatter([0.0], [1.0], marker="*", s=160, color="black", label="baseline (Score 0.50)", zorder=3)
    best = max(rows, key=lambda r: r["Score"])
    for r in rows:
        ax.scatter(r["SpeedNorm"], r["PerfNorm"], s=40, color="tab:red" if r is best else "tab:blue", zorder=3)
        ax.annotate(f"{r['run']} ({r['Score']:.3f})", (r["SpeedNorm"], r["PerfNorm"]), fontsize=7,
                    xytext=(4, 3), textcoords="offset points")
    ax.set_xlabel("SpeedNorm = 1 - t_model / t_base")
    ax.set_ylabel("PerfNorm = ppl_base / ppl_model")
    ax.set_title(title)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    with atomic_file(Path(path).with_suffix(".png")) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return Path(path).with_suffix(".png")


def compression_report(root: str | Path = "outputs", output: Optional[str | Path] = None) -> dict:
    """Table (markdown + JSON) of all runs under `root`, best first, and the PNG; returns rows and paths."""
    root = require_path(root, "runs folder").resolve()
    results = collect_results(root)
    if not results:
        raise NothingToDoError(f"no eval_result.json under '{root}'. Run `koforge compress run` or "
                               "`koforge compress eval` first.")
    rows = sorted((_row(r, root) for r in results), key=lambda r: -r["Score"])
    out = Path(output) if output else root
    out.mkdir(parents=True, exist_ok=True)
    png = plot_scores(rows, out / "compression_scores.png")
    md = out / "compression_report.md"
    write_text(md, f"# Compression runs under `{root}`, best first\n\n{md_table(rows)}\n![PerfNorm vs SpeedNorm]"
                   f"({png.name})\n")
    write_json(out / "compression_report.json", rows)
    return {"rows": rows, "markdown": str(md), "png": str(png), "json": str(out / "compression_report.json")}

"""Per-stage comparison: a markdown table, its JSON and a PNG of every metric across stages."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from koforge._utils.io import atomic_file, write_json, write_text

HEADLINE = ("korsts/spearman", "korquad/ndcg@10", "korquad/map@10", "korquad/recall@10", "korquad/p@10",
            "separation/separation", "bitext/ko2en", "bitext/en2ko", "train/steps", "train/seconds")


def comparison_rows(stages: Sequence[dict]) -> list[dict]:
    """One row per evaluated stage: stage name + its headline metrics (those present)."""
    keys = [k for k in HEADLINE if any(k in s["metrics"] for s in stages)]
    return [{"stage": s["stage"], **{k: s["metrics"].get(k) for k in keys}} for s in stages]


def markdown_table(rows: Sequence[dict]) -> str:
    if not rows:
        return "(no evaluated stages)\n"
    cols = list(dict.fromkeys(k for r in rows for k in r))  # a later stage may add metrics
    fmt = lambda v: "" if v is None else (f"{v:.4f}" if isinstance(v, float) and abs(v) < 10 else (f"{v:.0f}" if isinstance(v, float) else str(v)))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


# Bookkeeping, not quality: counts of the evaluation data and timings stay in the tables.
NOT_PLOTTED = ("n_pairs", "n_docs", "n_queries", "seconds", "examples")


def is_plotted(key: str) -> bool:
    return "/per_domain/" not in key and key.rsplit("/", 1)[-1] not in NOT_PLOTTED


def plot_metrics(stages: Sequence[dict], path: str | os.PathLike) -> Path:
    """One small panel per metric of any stage (quality and training loss/steps; counts and timings are
    left to the tables), stages on the x axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s["stage"] for s in stages]
    keys = sorted({k for s in stages for k in s["metrics"] if is_plotted(k)})
    cols = 4
    rows = max(1, -(-len(keys) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        ax.plot(range(len(names)), [s["metrics"].get(key, float("nan")) for s in stages], marker="o")
        ax.set_title(key, fontsize=9)
        ax.set_xticks(range(len(names)), names, rotation=30, fontsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return Path(path)


def write_comparison(stages: Sequence[dict], folder: str | os.PathLike) -> dict[str, Path]:
    """comparison.md, comparison.json and metrics.png in `folder`."""
    folder = Path(folder)
    rows = comparison_rows(stages)
    md = write_text(folder / "comparison.md", markdown_table(rows))
    js = write_json(folder / "comparison.json", {"rows": rows, "stages": list(stages)})
    png = plot_metrics(stages, folder / "metrics.png")
    return {"markdown": md, "json": js, "plot": png}

"""Cross-run views: the summary table and, for several runs, one comparison per task.

The summary has one row per evaluation result (run, task, model, primary
metric and its value), and one per `embed train` run: its last stage. With two or more runs, each task evaluated in more
than one run gets a table (one row per run, one column per metric) and a bar
chart of its primary metric, so that "before / after" reads at a glance.
Runs with a staged history (`embed train`: comparison.json) get one table
of each run's last stage.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from koforge.report.collect import RunContents
from koforge.report.tables import Table, model_label


# What an `embed train` run is summed up by: the first of these its last stage has a value for.
STAGE_PRIMARY = ("korsts/spearman", "korquad/ndcg@10", "separation/separation", "bitext/ko2en")


def _stage_primary(stage: dict) -> tuple[str, float] | None:
    for key in STAGE_PRIMARY + tuple(k for k in stage if "/" in k and not k.startswith("train/")):
        if isinstance(stage.get(key), (int, float)):
            return key, stage[key]
    return None


def summary_table(runs: Sequence[RunContents]) -> Table:
    """One row per evaluation result in every run, and one per `embed train` run (its last stage)."""
    rows = []
    for run in runs:
        named = {"run": run.name} if len(runs) > 1 else {}
        for rel, r in run.results:
            rows.append({**named, "task": r.task,
                         "model": model_label(r.model), "primary metric": r.primary_metric,
                         "value": r.primary_value, "better": "higher" if r.higher_is_better else "lower",
                         "file": rel})
        primary = _stage_primary(run.last_stage) if run.last_stage else None
        if primary is not None:
            rows.append({**named, "task": f"embed train (last stage: {run.last_stage.get('stage')})",
                         "model": f"checkpoints/{run.last_stage.get('stage')}/final", "primary metric": primary[0],
                         "value": primary[1],
                         "better": "higher", "file": "comparison.json"})
    return Table(title="Summary", rows=rows)


def last_stage_table(runs: Sequence[RunContents]) -> Table | None:
    """One row per run with a staged history (`embed train`): its last stage's figures side by side.
    None unless two or more runs have one: a single run's comparison table already shows it."""
    staged = [r for r in runs if r.last_stage]
    if len(staged) < 2:
        return None
    return Table(title="Last stage per run", rows=[{"run": r.name, **r.last_stage} for r in staged])


def task_comparisons(runs: Sequence[RunContents]) -> list[tuple[str, Table, str, bool]]:
    """(task, table, primary metric, higher_is_better) for tasks found in two or more runs."""
    by_task: dict[str, list[tuple[str, object]]] = {}
    for run in runs:
        for _, r in run.results:
            by_task.setdefault(r.task, []).append((run.name, r))
    out = []
    for task, entries in by_task.items():
        if len({name for name, _ in entries}) < 2:
            continue
        rows = [{"run": name, "model": model_label(r.model), **r.metrics} for name, r in entries]
        first = entries[0][1]
        out.append((task, Table(title=f"Comparison · {task}", rows=rows), first.primary_metric, first.higher_is_better))
    return out


def comparison_plot(table: Table, metric: str, higher_is_better: bool, path: Path) -> Path | None:
    """A horizontal bar chart of `metric` per run; None when no run has a value."""
    pairs = [(f"{r['run']}", r.get(metric)) for r in table.rows if isinstance(r.get(metric), (int, float))]
    if not pairs:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, values = zip(*pairs)
    fig, ax = plt.subplots(figsize=(6.4, 0.5 * len(pairs) + 1.2), dpi=100)
    ax.barh(range(len(values)), values, color="#3b6ea8")
    ax.set_yticks(range(len(values)), labels)
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric} ({'higher' if higher_is_better else 'lower'} is better)")
    ax.set_title(table.title.replace("Comparison · ", ""))
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:.4g}", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path

"""`build_report`: one report folder (HTML + markdown) for one run or a comparison of runs.

The folder holds `report.html` (self-contained), `report.md` with its
`images/`, `summary.json` (the summary rows) and a `.koforge-report` marker so
that a report written inside a run folder is not read back into the next one.
It is written atomically: an interrupted build leaves no half report.
"""
from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Sequence

from koforge._utils.errors import InputPathError, NothingToDoError
from koforge._utils.io import atomic_dir, check_output, write_json, write_text
from koforge.report.collect import REPORT_MARKER, RunContents, collect_run
from koforge.report.compare import comparison_plot, last_stage_table, summary_table, task_comparisons
from koforge.report.html import render_html
from koforge.report.markdown import render_markdown
from koforge.report.tables import Section, Table


def _run_names(paths: Sequence[Path]) -> list[str]:
    names = [p.resolve().name for p in paths]
    if len(set(names)) < len(names):  # same leaf name: add the parent to tell them apart
        names = [f"{p.resolve().parent.name}/{p.resolve().name}" for p in paths]
    if len(set(names)) < len(names):
        names = [f"{n} #{i + 1}" for i, n in enumerate(names)]
    return names


def build_report(run_dirs: Sequence[str | Path], output_dir: str | Path, *, title: Optional[str] = None,
                 overwrite: bool = False) -> Path:
    """Write the report of `run_dirs` (one folder or a list) into `output_dir`; returns the path of `report.html`."""
    if isinstance(run_dirs, (str, Path)):
        run_dirs = [run_dirs]
    if not run_dirs:
        raise InputPathError("no run folder given. Pass one or more folders written by koforge (e.g. a demo output).")
    paths = [Path(p) for p in run_dirs]
    runs = [collect_run(p, name) for p, name in zip(paths, _run_names(paths))]  # inputs first: their errors name them
    out = check_output(output_dir, overwrite, inputs=paths)  # -o RUN --overwrite would delete the run it reports on
    if all(r.is_empty for r in runs):
        raise NothingToDoError(
            f"nothing to report in {', '.join(str(p) for p in paths)}: no evaluation results (eval_*.json), "
            "result JSON or PNG plots were found. Pass folders written by koforge commands.")
    title = title or (f"koforge report — {runs[0].name}" if len(runs) == 1 else f"koforge comparison of {len(runs)} runs")
    meta = f"built {datetime.now(timezone.utc).replace(microsecond=0).isoformat()} from " + \
        ", ".join(str(p) for p in paths)

    with atomic_dir(out, overwrite=overwrite) as tmp:
        images = tmp / "images"
        images.mkdir()
        summary = Section(title="Results", tables=[t for r in runs for t in r.summary])
        if any(r.results or r.last_stage for r in runs):
            summary.tables.append(summary_table(runs))
        staged = last_stage_table(runs)
        if staged is not None:
            summary.tables.append(staged)
        for task, table, metric, higher in task_comparisons(runs):
            summary.tables.append(table)
            png = comparison_plot(table, metric, higher, images / f"compare_{task}.png")
            if png is not None:
                summary.plots.append((f"{task}: {metric} per run", png))
        blocks: list[tuple[str, list[Section]]] = []
        if summary.tables or summary.plots:
            blocks.append(("Summary", [summary]))
        settings = [Section(title=r.name, tables=r.settings) for r in runs if r.settings]
        if settings:
            blocks.append(("Settings", settings))
        for r in runs:
            if r.sections:
                blocks.append((f"Run: {r.name}", r.sections))
        skipped = [Table(title=f"{r.name}: files that could not be read", source=str(r.path), rows=r.skipped)
                   for r in runs if r.skipped]
        if skipped:
            blocks.append(("Skipped files", [Section(title="Skipped files", tables=skipped)]))

        copied: dict[Path, str] = {}

        def image_name(p: object) -> str:
            p = Path(p)
            if p.parent == images:
                return f"images/{p.name}"
            if p not in copied:
                name = f"{len(copied):02d}_{p.name}"
                shutil.copyfile(p, images / name)
                copied[p] = f"images/{name}"
            return copied[p]

        write_text(tmp / "report.html", render_html(title, meta, blocks))
        write_text(tmp / "report.md", render_markdown(title, meta, blocks, image_name))
        write_json(tmp / "summary.json", {"title": title, "runs": [str(p) for p in paths],
                                          "rows": summary_table(runs).rows})
        (tmp / REPORT_MARKER).write_text("koforge report folder\n", encoding="utf-8")
    return out / "report.html"


def collect_runs(run_dirs: Sequence[str | Path]) -> list[RunContents]:
    """The parsed contents of each run folder (what `build_report` would show)."""
    paths = [Path(p) for p in run_dirs]
    return [collect_run(p, n) for p, n in zip(paths, _run_names(paths))]

"""`koforge report RUN_DIR...`: one HTML + markdown report of one run or a comparison of runs."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from koforge.cli._common import cli_errors, console, rows_table


@cli_errors
def command(
    run_dirs: List[Path] = typer.Argument(..., help="Run folders written by koforge (demo, embed, compress, eval...)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output",
                                          help="Report folder (default: RUN_DIR/report for one run, ./report for several)."),
    title: Optional[str] = typer.Option(None, help="Page title."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing report folder."),
) -> None:
    """Write report.html (self-contained, plots embedded) and report.md for RUN_DIR(s).

    Example: koforge report runs/demo -o runs/demo-report
    Example (comparison): koforge report runs/base runs/expanded -o compare
    """
    from koforge.report import build_report, collect_runs

    out = output or (run_dirs[0] / "report" if len(run_dirs) == 1 else Path("report"))
    page = build_report(run_dirs, out, title=title, overwrite=overwrite)
    rows = [{"run": r.name, "task": res.task, res.primary_metric: res.primary_value}
            for r in collect_runs(run_dirs) for _, res in r.results]
    if rows:
        from koforge.report.tables import format_cell  # as the report's own tables: '.3f' printed 0.0004 as 0.000

        console.print(rows_table([{"run": r["run"], "task": r["task"], "metric": k, "value": format_cell(v)}
                                  for r in rows for k, v in list(r.items())[2:]], title="Results"))
    console.print(f"report: [bold]{page}[/] and {page.with_suffix('.md')}")

"""`koforge demo`: the whole koforge loop on bundled data, in about 10 minutes (`--quick`: about 2)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer

from koforge._utils.errors import ConfigError
from koforge.cli._common import cli_errors, console, err_console, overrides_arg, rows_table


def _split(values: Optional[List[str]]) -> list[str]:
    return [s.strip() for v in values or [] for s in v.split(",") if s.strip()]


@cli_errors
def command(
    quick: bool = typer.Option(False, "--quick", help="Small sizes: about 2 minutes on a 2-core CPU."),
    steps: Optional[List[str]] = typer.Option(None, "--steps", help="Steps to run (comma-separated): tokenizer,expand,embed,lm,compress."),
    skip: Optional[List[str]] = typer.Option(None, "--skip", help="Steps to skip (comma-separated)."),
    output: Path = typer.Option(Path("runs/demo"), "-o", "--output",
                                help="Demo folder: new, empty or an earlier demo's (each step replaces its sub-folder; "
                                     "other settings than last time start it afresh)."),
    overrides: Optional[List[str]] = overrides_arg("lm_minutes=5"),
) -> None:
    """Train a Korean tokenizer, teach all-MiniLM-L6-v2 Korean, pretrain and compress a small LM; write a report.

    Example: koforge demo --quick -o runs/demo-quick
    Example: koforge demo --steps lm,compress lm_minutes=5
    """
    from koforge.config import load_config
    from koforge.config import config_to_dict
    from koforge.demo import DemoConfig, demo_config, run_demo
    from koforge.demo.pipeline import DemoInterrupted
    from koforge.tracking.mlflow_run import default_tracking_uri, store_unreachable, tracking_enabled

    if steps is not None and not _split(steps):  # --steps "" or "," named no step: not the same as leaving it out
        raise ConfigError("--steps names no step; give some of tokenizer,expand,embed,lm,compress, or leave it out "
                          "to run them all.")
    base = demo_config(quick=quick, steps=_split(steps) or None, skip=_split(skip))
    config = load_config(DemoConfig, config_to_dict(base), list(overrides or [])) if overrides else base
    start = time.perf_counter()

    def on_step(result) -> None:
        colour = "green" if result.status == "ok" else "yellow" if result.status.startswith("skipped") else "red"
        console.print(f"[bold]{result.name}[/] [{colour}]{result.status}[/] ({result.seconds:.1f} s) {result.headline}",
                      highlight=False)
        for title, rows in result.tables.items():
            if rows:
                console.print(rows_table(rows, title=title, floatfmt=".3f"))
        for line in result.lines:
            console.print(f"  {line}", highlight=False)

    try:
        demo = run_demo(config, output, on_event=lambda m: err_console.print(f"[dim]{m}[/]"), on_step=on_step)
    except DemoInterrupted as e:
        kept = f"finished steps kept in {e.out}: {', '.join(e.finished)}" if e.finished else "no step had finished"
        err_console.print(f"[yellow]interrupted[/] during step {e.step} (its folder removed); {kept}. "
                          "Run again with --steps to go on.", highlight=False)
        raise typer.Exit(130) from None
    console.print(rows_table(demo.summary_rows(), title=f"koforge demo: {time.perf_counter() - start:.0f} s in all", floatfmt=".1f"))
    if demo.report:
        uri = default_tracking_uri()
        tracked = ("MLflow: off (KOFORGE_MLFLOW)" if not tracking_enabled()
                   else f"MLflow: not logged ({uri} was unreachable)" if store_unreachable(uri)
                   else f"MLflow: experiment koforge-demo (mlflow ui --backend-store-uri {uri})")
        console.print(f"report: [bold]{demo.report}[/] (and report.md); {tracked}")
    if any(s.status.startswith("failed") for s in demo.steps):
        raise typer.Exit(1)

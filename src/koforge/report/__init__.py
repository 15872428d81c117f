"""koforge.report: HTML + markdown reports of koforge run folders.

`build_report(run_dirs, output_dir)` reads evaluation results
(`koforge.eval.schema`), other result JSON and PNG plots, and writes one
self-contained HTML page and the same as markdown.
"""
from koforge.report.build import build_report, collect_runs

__all__ = ["build_report", "collect_runs"]

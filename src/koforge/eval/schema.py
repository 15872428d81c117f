"""The one JSON format of evaluation results that `koforge report` reads.

Every evaluation entry point (`koforge eval TASK MODEL`, the demo's steps)
writes an `EvalResult` as `eval_<task>.json`:

    {"schema": "koforge-eval-v1", "task": "korsts", "model": "path or hub name",
     "metrics": {"spearman": 0.42, ...}, "primary_metric": "spearman",
     "created": "2026-11-23T21:30:00+00:00", "settings": {...},
     "tables": {"per_category": [{...}, ...]}, "plots": ["korsts.png"],
     "koforge_version": "0.1.0"}

`metrics` holds flat numbers only (NaN and infinities are stored as null, as
JSON has no spelling for them); anything row-shaped goes to `tables`; `plots`
are PNG paths relative to the JSON file. The format is versioned by `schema`:
a reader refuses a file of another version rather than guessing.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

from koforge._utils.errors import DataError
from koforge._utils.io import read_json, write_json

SCHEMA = "koforge-eval-v1"


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def _version() -> str:
    from koforge import __version__

    return __version__


def clean_metric(value: Any) -> Optional[float]:
    """A metric as a JSON-safe number: bools/ints/floats -> float, non-finite -> None."""
    if value is None:
        return None
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"metric value {value!r} is a {type(value).__name__}; expected a number. "
                        "Put non-numeric results in `tables` or `settings`.")
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(kw_only=True)
class EvalResult:
    """One evaluation of one model on one task."""

    task: str
    """Task name, e.g. `korsts`, `perplexity`, `tokenizer`, `harness`."""
    model: str
    """The model evaluated: a folder path or a hub name."""
    metrics: dict[str, Optional[float]]
    """Flat metric name -> number (None when not finite)."""
    primary_metric: str
    """The metric that ranks runs of this task; must be a key of `metrics`."""
    higher_is_better: bool = True
    """Direction of `primary_metric` (False for perplexity, time per token...)."""
    settings: dict[str, Any] = field(default_factory=dict)
    """What the evaluation ran with (data paths, sizes, context, device...)."""
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Named row tables (one dict per row), e.g. per tokenizer or per category."""
    plots: list[str] = field(default_factory=list)
    """PNG files produced with the result, relative to the JSON file."""
    created: str = field(default_factory=_now)
    """ISO-8601 UTC timestamp."""
    koforge_version: str = field(default_factory=_version)
    schema: str = SCHEMA

    def __post_init__(self) -> None:
        if not self.task or not isinstance(self.task, str):
            raise DataError(f"EvalResult.task must be a non-empty string, got {self.task!r}.")
        if self.schema != SCHEMA:
            raise DataError(f"evaluation result has schema {self.schema!r}; this koforge reads {SCHEMA!r}. "
                            "Re-run the evaluation with this version.")
        for name in ("metrics", "tables"):  # a list here ended `koforge report` in AttributeError
            if not isinstance(getattr(self, name), Mapping):
                raise DataError(f"EvalResult.{name} must be a mapping of name -> value, got a "
                                f"{type(getattr(self, name)).__name__}. Regenerate the result with `koforge eval`.")
        self.metrics = {str(k): clean_metric(v) for k, v in self.metrics.items()}
        if not self.metrics:
            raise DataError(f"EvalResult for task '{self.task}' has no metrics; an evaluation must report at least one.")
        if self.primary_metric not in self.metrics:
            raise DataError(f"primary_metric '{self.primary_metric}' is not among the metrics "
                            f"({', '.join(self.metrics)}). Name one of them.")
        for name, rows in self.tables.items():
            if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
                raise DataError(f"table '{name}' must be a list of row dicts.")

    @property
    def primary_value(self) -> Optional[float]:
        return self.metrics[self.primary_metric]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {"schema": d.pop("schema"), **d}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "evaluation result") -> "EvalResult":
        if not isinstance(data, Mapping) or data.get("schema") != SCHEMA:
            found = data.get("schema") if isinstance(data, Mapping) else type(data).__name__
            raise DataError(f"{source} is not a koforge evaluation result (schema {found!r}, expected {SCHEMA!r}).")
        known = {f.name for f in dataclasses.fields(cls)}
        missing = [k for k in ("task", "model", "metrics", "primary_metric") if k not in data]
        if missing:
            raise DataError(f"{source} lacks the field(s) {', '.join(missing)}. Regenerate it with `koforge eval`.")
        return cls(**{k: v for k, v in data.items() if k in known})


def result_filename(task: str) -> str:
    """The conventional file name of a task's result: `eval_<task>.json`."""
    return f"eval_{task}.json"


def write_result(result: EvalResult, path: str | Path) -> Path:
    """Write `result` atomically as JSON; `path` may be a folder (then `eval_<task>.json` in it)."""
    p = Path(path)
    if p.suffix != ".json":
        p = p / result_filename(result.task)
    write_json(p, result.to_dict())
    return p


def read_result(path: str | Path) -> EvalResult:
    """Read one result file, refusing files of another schema."""
    return EvalResult.from_dict(read_json(path, "evaluation result"), source=f"'{path}'")


def is_result(data: Any) -> bool:
    """True when a parsed JSON object is a koforge evaluation result."""
    return isinstance(data, Mapping) and data.get("schema") == SCHEMA


def find_results(folder: str | Path) -> Iterator[tuple[Path, EvalResult]]:
    """Every readable evaluation result under `folder` (sorted by path)."""
    for p in sorted(Path(folder).rglob("eval_*.json")):
        try:
            yield p, read_result(p)
        except DataError:
            continue

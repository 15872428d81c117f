"""Turn result JSON into titled row tables, and format cells the same way everywhere.

Reports read files written by every part of koforge (evaluation results,
expansion and compression reports, tokenizer comparisons, stage tables), so
instead of one parser per format this module applies three shape rules:
a list of dicts is a table; a dict whose values are all dicts of scalars is a
table with one row per key; any other dict becomes a key/value table with
nested keys joined by dots (its lists of dicts become tables of their own).
It does not interpret metrics: it only lays them out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

MAX_ROWS = 200
"""Rows shown per table; longer tables are cut and say so."""


@dataclass(kw_only=True)
class Table:
    """A titled table: rows of column -> value, columns in first-seen order."""

    title: str
    rows: list[dict[str, Any]]
    source: str = ""
    """The file the table was read from, relative to its run folder."""
    note: str = ""

    @property
    def columns(self) -> list[str]:
        cols: dict[str, None] = {}
        for r in self.rows:
            for k in r:
                cols.setdefault(str(k), None)
        return list(cols)


@dataclass(kw_only=True)
class Section:
    """What one folder of a run contributes: tables, plots and short texts."""

    title: str
    tables: list[Table] = field(default_factory=list)
    plots: list[tuple[str, Any]] = field(default_factory=list)
    """(caption, path to a PNG)"""
    texts: list[tuple[str, str]] = field(default_factory=list)
    """(caption, text shown verbatim)"""


def model_label(model: str) -> str:
    """A short name for a model path: its last two components ('lm/hf', not '/tmp/run/lm/hf' or 'hf')."""
    parts = [p for p in str(model).replace("\\", "/").split("/") if p]
    return "/".join(parts[-2:]) if parts else str(model)


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def format_cell(v: Any) -> str:
    """One cell as text: 4 significant digits for floats, thousands separators for ints."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10_000 else str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if v.is_integer() and abs(v) >= 1e4:  # counts stored as floats (parameters, vocab sizes)
            return f"{int(v):,}"
        if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-3):
            return f"{v:.3e}"
        return f"{v:,.4g}" if abs(v) < 9999.5 else f"{v:,.1f}"  # 4 digits round 9999.5.. up to '1e+04'
    if isinstance(v, (list, tuple)) and all(_is_scalar(x) for x in v):
        text = ", ".join(format_cell(x) for x in v)
    elif isinstance(v, (list, tuple, dict)):
        import json

        text = json.dumps(v, ensure_ascii=False, default=str)
    else:
        text = str(v)
    return text if len(text) <= 300 else text[:297] + "..."


def _flatten(obj: Mapping[str, Any], prefix: str, flat: dict[str, Any], nested: list[tuple[str, list]]) -> None:
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            _flatten(v, f"{key}.", flat, nested)
        elif isinstance(v, list) and v and all(isinstance(x, Mapping) for x in v):
            nested.append((key, list(v)))
        else:
            flat[key] = v


def _records_of(obj: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """{'a': {x: 1}, 'b': {x: 2}} -> [{'name': 'a', x: 1}, ...] when every value is a flat dict."""
    if len(obj) < 2 or not all(isinstance(v, Mapping) and v and all(_is_scalar(x) for x in v.values())
                               for v in obj.values()):
        return None
    return [{"name": k, **v} for k, v in obj.items()]


def _table(title: str, rows: list[Mapping[str, Any]], source: str) -> Table:
    note = f"first {MAX_ROWS} of {len(rows):,} rows" if len(rows) > MAX_ROWS else ""
    flat_rows = []
    for r in rows[:MAX_ROWS]:
        flat: dict[str, Any] = {}
        _flatten(r, "", flat, [])
        flat_rows.append(flat)
    return Table(title=title, rows=flat_rows, source=source, note=note)


def json_tables(obj: Any, title: str, source: str = "") -> list[Table]:
    """Every table a parsed JSON value holds (see the module docstring for the rules)."""
    if isinstance(obj, list):
        if obj and all(isinstance(x, Mapping) for x in obj):
            return [_table(title, obj, source)]
        return [Table(title=title, rows=[{"value": format_cell(obj)}], source=source)] if obj else []
    if not isinstance(obj, Mapping):
        return [Table(title=title, rows=[{"value": obj}], source=source)]
    records = _records_of(obj)
    if records is not None:
        return [_table(title, records, source)]
    flat: dict[str, Any] = {}
    nested: list[tuple[str, list]] = []
    tables: list[Table] = []
    # Dict-of-records values (e.g. {"stages": {"s1": {...}, "s2": {...}}}) become tables, not dotted keys.
    plain: dict[str, Any] = {}
    for k, v in obj.items():
        rec = _records_of(v) if isinstance(v, Mapping) else None
        if rec is not None:
            tables.append(_table(f"{title} · {k}", rec, source))
        else:
            plain[k] = v
    _flatten(plain, "", flat, nested)
    if flat:
        tables.insert(0, Table(title=title, rows=[{"key": k, "value": v} for k, v in flat.items()], source=source))
    tables.extend(_table(f"{title} · {k}", rows, source) for k, rows in nested)
    return tables

"""Separation score: mean cosine of similar pairs minus mean cosine of different pairs.

Pairs come from a JSONL file with `domain`, `text1`, `text2`, `label`
(1 = similar, 0 = different); the score is reported per domain and overall
(`primary`, over all pairs). koforge ships a 60-pair, 10-domain Korean set
(`koforge/assets/separation/ko_pairs.jsonl`, CC0) used when no path is given.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from koforge._utils.errors import DataError
from koforge._utils.io import require_path
from koforge._utils.logging import get_logger
from koforge.eval._encode import encode
from koforge.eval._read import read_text_file, split_lines
from koforge.eval.metrics import paired_cosine

log = get_logger(__name__)

REQUIRED = ("domain", "text1", "text2", "label")


def default_pairs_path() -> Path:
    return Path(str(resources.files("koforge") / "assets" / "separation" / "ko_pairs.jsonl"))


def read_pairs(path: str | os.PathLike) -> list[dict]:
    p = require_path(path, "separation pairs file")
    rows = []
    for n, line in enumerate(split_lines(read_text_file(p, "separation pairs file")), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"'{p}' line {n} is not JSON ({e}). Expected one object per line.") from None
        missing = [k for k in REQUIRED if k not in row]
        if missing:
            raise DataError(f"'{p}' line {n} lacks field(s) {', '.join(missing)}; each line needs {', '.join(REQUIRED)}.")
        if row["label"] not in (0, 1, True, False):
            raise DataError(f"'{p}' line {n}: label {row['label']!r} must be 1 (similar) or 0 (different).")
        rows.append(row)
    if not rows:
        raise DataError(f"'{p}' holds no pairs.")
    if len({int(r["label"]) for r in rows}) < 2:
        raise DataError(f"'{p}' holds only {'similar (1)' if int(rows[0]['label']) else 'different (0)'} pairs; the "
                        "separation score needs both similar (label 1) and different (label 0) pairs.")
    return rows


def _gap(cos: np.ndarray, labels: np.ndarray) -> float | None:
    """None (JSON null, not the invalid NaN) where one of the two kinds of pair is missing."""
    pos, neg = cos[labels == 1], cos[labels == 0]
    if len(pos) == 0 or len(neg) == 0:
        return None
    return float(pos.mean() - neg.mean())


def evaluate_separation(model: Any, pairs_path: str | os.PathLike | None = None, *, batch_size: int = 64,
                        max_pairs: int | None = None) -> dict[str, Any]:
    """Per-domain and overall separation (mean cos similar - mean cos different); `max_pairs`: a seeded sample
    (in file order) of that many pairs, so every domain keeps its share rather than the first ones only."""
    rows = read_pairs(pairs_path or default_pairs_path())
    if max_pairs is not None and len(rows) > max_pairs:
        import random

        keep = sorted(random.Random(0).sample(range(len(rows)), max_pairs))
        rows = [rows[i] for i in keep]
        if len({int(r["label"]) for r in rows}) < 2:
            raise DataError(f"a sample of {max_pairs} pairs holds only one kind (similar or different); raise the "
                            "number of pairs (--max-items).")
    emb = encode(model, [r["text1"] for r in rows] + [r["text2"] for r in rows], batch_size=batch_size)
    cos = paired_cosine(emb[: len(rows)], emb[len(rows):])
    labels = np.array([int(r["label"]) for r in rows])
    by_domain: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_domain[str(r["domain"])].append(i)
    per_domain = {d: _gap(cos[idx], labels[idx]) for d, idx in sorted(by_domain.items())}
    one_sided = [d for d, v in per_domain.items() if v is None]
    if one_sided:
        log.warning("separation: domain(s) %s hold only one kind of pair (similar or different); their score is "
                    "left empty (null). Add both kinds to score them.", ", ".join(one_sided))
    overall = _gap(cos, labels)
    return {"primary": overall, "separation": overall, "similar_cos": float(cos[labels == 1].mean()),
            "different_cos": float(cos[labels == 0].mean()), "per_domain": per_domain, "n_pairs": len(rows)}

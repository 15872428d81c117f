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
from koforge.eval._encode import encode
from koforge.eval._read import read_text_file
from koforge.eval.metrics import paired_cosine

REQUIRED = ("domain", "text1", "text2", "label")


def default_pairs_path() -> Path:
    return Path(str(resources.files("koforge") / "assets" / "separation" / "ko_pairs.jsonl"))


def read_pairs(path: str | os.PathLike) -> list[dict]:
    p = require_path(path, "separation pairs file")
    rows = []
    for n, line in enumerate(read_text_file(p, "separation pairs file").splitlines(), 1):
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
    return rows


def _gap(cos: np.ndarray, labels: np.ndarray) -> float:
    pos, neg = cos[labels == 1], cos[labels == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    return float(pos.mean() - neg.mean())


def evaluate_separation(model: Any, pairs_path: str | os.PathLike | None = None, *, batch_size: int = 64) -> dict[str, Any]:
    """Per-domain and overall separation (mean cos similar - mean cos different)."""
    rows = read_pairs(pairs_path or default_pairs_path())
    emb = encode(model, [r["text1"] for r in rows] + [r["text2"] for r in rows], batch_size=batch_size)
    cos = paired_cosine(emb[: len(rows)], emb[len(rows):])
    labels = np.array([int(r["label"]) for r in rows])
    by_domain: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_domain[str(r["domain"])].append(i)
    per_domain = {d: _gap(cos[idx], labels[idx]) for d, idx in sorted(by_domain.items())}
    overall = _gap(cos, labels)
    return {"primary": overall, "separation": overall,
            "similar_cos": float(cos[labels == 1].mean()) if (labels == 1).any() else float("nan"),
            "different_cos": float(cos[labels == 0].mean()) if (labels == 0).any() else float("nan"),
            "per_domain": per_domain, "n_pairs": len(rows)}

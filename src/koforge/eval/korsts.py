"""KorSTS: Spearman correlation of cosine similarity with the gold 0-5 scores.

Reads the kakaobrain TSV layout (columns `score`, `sentence1`, `sentence2`,
located by header name, never by position). `path_or_split` is a TSV path or
a split name (`train`, `dev`, `test`) looked up under `data_dir`
(default `$KOFORGE_SHARED/data/korsts`, else `../shared/data/korsts`).
"""
from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any

from koforge._utils.errors import DataError, InputPathError
from koforge._utils.io import require_path
from koforge._utils.logging import get_logger
from koforge.eval._encode import encode
from koforge.eval._read import found_columns, read_text_file
from koforge.eval.metrics import paired_cosine, pearson, spearman

log = get_logger(__name__)

SPLITS = ("train", "dev", "test")
REQUIRED = ("score", "sentence1", "sentence2")


def default_korsts_dir() -> Path:
    """Where split names are looked up when no `data_dir` is given."""
    shared = os.environ.get("KOFORGE_SHARED")
    return (Path(shared) if shared else Path.cwd().parent / "shared") / "data" / "korsts"


def resolve_korsts(path_or_split: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> Path:
    """A split name or a path -> an existing TSV path."""
    if str(path_or_split) in SPLITS:
        folder = Path(data_dir) if data_dir else default_korsts_dir()
        path = folder / f"sts-{path_or_split}.tsv"
        if not path.exists():
            raise InputPathError(f"KorSTS split '{path_or_split}' not found at '{path}'. "
                                 "Pass data_dir=<folder with sts-*.tsv> or a TSV path.")
        return path
    return require_path(path_or_split, "KorSTS file")


def read_sts_pairs(path: str | os.PathLike) -> tuple[list[str], list[str], list[float]]:
    """(sentence1, sentence2, score) columns of a KorSTS-style TSV, located by header."""
    p = require_path(path, "KorSTS file")
    text = read_text_file(p, "KorSTS file")
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows:
        raise DataError(f"'{p}' is empty; expected a TSV with a header row containing {', '.join(REQUIRED)}.")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise DataError(f"'{p}' lacks column(s) {', '.join(missing)} (found: {found_columns(header)}). "
                        f"Expected a header with {', '.join(REQUIRED)}.")
    idx = {c: header.index(c) for c in REQUIRED}
    s1, s2, scores, skipped = [], [], [], []
    for n, row in enumerate(rows[1:], 2):
        if not any(cell.strip() for cell in row):
            continue
        try:
            score = float(row[idx["score"]]) if len(row) > max(idx.values()) else None
        except ValueError:
            score = None
        if score is None or not math.isfinite(score):  # float() reads "NaN" (pandas' missing value) and "inf"
            skipped.append(n)
            continue
        s1.append(row[idx["sentence1"]]), s2.append(row[idx["sentence2"]]), scores.append(score)
    if skipped:
        log.warning("'%s': %d row(s) skipped, with too few columns or a score that is not a number (line(s) %s).",
                    p, len(skipped), ", ".join(map(str, skipped[:5])) + (", ..." if len(skipped) > 5 else ""))
    _check_correlatable(scores, f"'{p}' has")
    return s1, s2, scores


def _check_correlatable(scores: list[float], what: str) -> None:
    if len(scores) < 2 or len(set(scores)) < 2:
        raise DataError(f"{what} {len(scores)} usable (sentence1, sentence2, score) row(s)"
                        f"{' all scored alike' if len(scores) >= 2 else ''}; a correlation needs at least two pairs "
                        "with different scores.")


def evaluate_korsts(model: Any, path_or_split: str | os.PathLike = "test", *, data_dir: str | os.PathLike | None = None,
                    batch_size: int = 64, max_pairs: int | None = None) -> dict[str, Any]:
    """Spearman (primary) and Pearson of cosine similarity against the gold scores.

    `max_pairs` takes a seeded sample in file order (KorSTS files are sorted by genre: their first rows are
    all image captions), like the retrieval and separation samples."""
    s1, s2, scores = read_sts_pairs(resolve_korsts(path_or_split, data_dir))
    if max_pairs and max_pairs < len(scores):
        import random

        keep = sorted(random.Random(0).sample(range(len(scores)), max_pairs))
        s1, s2, scores = [s1[i] for i in keep], [s2[i] for i in keep], [scores[i] for i in keep]
        _check_correlatable(scores, f"a sample of {max_pairs} pair(s) (max_pairs / --max-items) holds")
    emb = encode(model, s1 + s2, batch_size=batch_size)
    cos = paired_cosine(emb[: len(s1)], emb[len(s1):])
    rho = spearman(cos, scores)
    return {"primary": rho, "spearman": rho, "pearson": pearson(cos, scores), "n_pairs": len(scores)}

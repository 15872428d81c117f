"""Training data sources and their conversion to each objective's columns.

A source names its `kind` and a path; columns are found by name, never by
position:
- `sts`: TSV with sentence1, sentence2, score (KorSTS; a source with any score above 1 is
  on the 0-5 scale and all its scores are divided by 5);
- `nli`: TSV with sentence1, sentence2, gold_label (KorNLI): entailment ->
  positive, contradiction -> hard negative of the same premise;
- `pairs`: JSONL with anchor, positive[, negative] (other field names through
  `anchor_field`/`positive_field`/`negative_field`: e.g. petition title ->
  content as weak query/passage pairs);
- `text`: plain text (one per line) or JSONL (`field`);
- `korquad`: SQuAD JSON -> (question, paragraph) pairs, or its texts;
- `hub`: a hub dataset name (`path`) with `field`/`split` (e.g.
  HAERAE-HUB/KOREAN-WEBTEXT), for machines that reach the hub;
- `parallel`: two line-aligned text files, `path` in the student's language
  and `teacher_path` its translations (Moses/OPUS layout, e.g. the shared
  `korean-english-park.dev.ko` / `.en`). Under `distill` the teacher embeds
  the translation and the student the original: multilingual knowledge
  distillation (Reimers & Gurevych, 2020), which teaches Korean from an
  English-only teacher's English embeddings. Other text objectives take the
  `path` side.
Text objectives (simcse, distill, mlm) take the sentences of any source. A local
`path` may be a glob (`corpora/petitions_*.jsonl`): its files are read in
sorted order as one source. A source may name its own `objective`: the stage
then trains several objectives at once (see `group_by_objective`).
"""
from __future__ import annotations

import csv
import glob
import io
import json
import os
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

from koforge._utils.errors import ConfigError, DataError, InputPathError
from koforge._utils.io import require_path
from koforge._utils.logging import get_logger
from koforge.embeddings.losses import OBJECTIVES
from koforge.eval._read import found_columns

log = get_logger(__name__)

KINDS = ("sts", "nli", "pairs", "text", "korquad", "hub", "parallel")
COLUMNS = {"sts": ("sentence1", "sentence2", "score"), "nli": ("sentence1", "sentence2", "gold_label")}
"""The header columns a TSV source of each kind needs."""


@dataclass(kw_only=True)
class DataSource:
    """One training data source of a stage."""

    kind: str
    """sts, nli, pairs, text, korquad, hub or parallel."""
    path: str
    """File path (relative paths resolve against the recipe's data_root) or hub dataset name."""
    samples: Optional[int] = None
    """Keep at most this many examples (seeded sample); None keeps all."""
    field: str = "text"
    """Text field for JSONL / hub sources."""
    split: str = "train"
    """Split of a hub dataset."""
    min_chars: int = 1
    """Drop texts shorter than this."""
    max_chars: int = 2000
    """Drop texts longer than this."""
    anchor_field: str = "anchor"
    positive_field: str = "positive"
    negative_field: str = "negative"
    """Field names of a `pairs` source (a missing negative field means no hard negative)."""
    objective: Optional[str] = None
    """Train this source with another objective than its stage's (a multi-task stage); None: the stage's."""
    teacher_path: Optional[str] = None
    """parallel: the file of translations, line by line with `path`, that a distill teacher embeds."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"data source kind '{self.kind}' is unknown; use one of {', '.join(KINDS)}.")
        if self.objective is not None and self.objective not in OBJECTIVES:
            raise ConfigError(f"data source {self.path}: objective '{self.objective}' is unknown; use one of {', '.join(OBJECTIVES)}.")
        if self.samples is not None and self.samples < 1:
            raise ConfigError(f"data source samples must be >= 1 or null, got {self.samples}.")
        if (self.kind == "parallel") != (self.teacher_path is not None):
            raise ConfigError(f"data source {self.path}: " + (
                "a parallel source needs teacher_path, the file of its translations line by line."
                if self.kind == "parallel" else f"teacher_path is for parallel sources only (this one is '{self.kind}')."))
        if self.kind == "parallel" and any(ch in self.path + self.teacher_path for ch in "*?["):
            raise ConfigError(f"parallel source {self.path}: give one file per side, not a pattern (the lines of the "
                              "two files must pair up).")


def _read(path: Path) -> str:
    """The file's text; a non-UTF-8 file (cp949 is common for Korean data) or a folder is a `DataError`."""
    from koforge.eval._read import read_text_file

    return read_text_file(path, "data file")


def _tsv(path: Path, required: tuple[str, ...]) -> list[dict]:
    rows = list(csv.reader(io.StringIO(_read(path), newline=""), delimiter="\t", quoting=csv.QUOTE_NONE))
    header = [h.strip() for h in rows[0]] if rows else []
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(f"data file '{path}' lacks column(s) {', '.join(missing)} (found: {found_columns(header)}). "
                        f"A source of this kind needs a header with {', '.join(required)}.")
    return [dict(zip(header, r)) for r in rows[1:] if len(r) >= len(header)]


def _jsonl(path: Path) -> list[dict]:
    rows = []
    for n, line in enumerate(_read(path).splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise DataError(f"'{path}' line {n} is not JSON; expected one object per line.") from None
    return rows


def local_paths(src: DataSource, data_root: str | os.PathLike | None) -> list[Path]:
    """The file(s) of a local source: one path, or the sorted matches of a glob."""
    path = Path(src.path)
    if not path.is_absolute() and data_root is not None:
        path = Path(data_root) / path
    if any(ch in src.path for ch in "*?["):
        matches = [Path(m) for m in sorted(glob.glob(str(path)))]
        if not matches:
            raise DataError(f"{src.kind} data pattern '{path}' matches no file; check the path and data_root.")
        return matches
    if not path.exists() and path != Path(src.path):
        raise InputPathError(under_data_root(src.path, data_root, f"{src.kind} data file"))
    return [require_path(path, f"{src.kind} data file")]


def under_data_root(name: str, data_root: str | os.PathLike, what: str) -> str:
    """The message for a relative path missing under the recipe's data_root (not the working directory)."""
    return (f"{what} not found: '{name}' under data_root '{Path(data_root).expanduser().absolute()}'. Set data_root= "
            "(or $KOFORGE_DATA) to the folder that holds it, or give an absolute path.")


def _ok(text: str, src: DataSource) -> bool:
    return isinstance(text, str) and src.min_chars <= len(text.strip()) <= src.max_chars


def read_source(src: DataSource, data_root: str | os.PathLike | None = None) -> dict[str, list]:
    """Read a source into columns: `pairs` (anchor, positive, negative-or-None), `sts`, and `texts`."""
    if src.kind == "hub":
        import datasets

        try:
            ds = datasets.load_dataset(src.path, split=src.split)
        except Exception as e:  # datasets raises many types (network, missing config or split, ...)
            raise DataError(f"cannot load hub dataset '{src.path}' (split {src.split}): {e}. Check the name and split, "
                            "your network, or use a local file source (kind: text/pairs/sts) instead.") from None
        if src.field not in ds.column_names:
            raise DataError(f"hub dataset '{src.path}' has no column '{src.field}' (columns: {', '.join(ds.column_names)}).")
        return {"texts": [t for t in ds[src.field] if _ok(t, src)], "pairs": [], "sts": [], "parallel": []}
    paths = local_paths(src, data_root)
    if len(paths) > 1:
        parts = [read_source(replace(src, path=str(p), samples=None), None) for p in paths]
        return {key: [x for part in parts for x in part[key]] for key in ("texts", "pairs", "sts", "parallel")}
    path = paths[0]
    out: dict[str, list] = {"texts": [], "pairs": [], "sts": [], "parallel": []}
    if src.kind == "sts":
        for r in _tsv(path, COLUMNS["sts"]):
            try:
                score = float(r["score"])
            except ValueError:
                continue
            if _ok(r["sentence1"], src) and _ok(r["sentence2"], src):
                out["sts"].append((r["sentence1"], r["sentence2"], score))
        out["texts"] = [t for s1, s2, _ in out["sts"] for t in (s1, s2)]
    elif src.kind == "nli":
        by_premise: dict[str, dict[str, list[str]]] = {}
        for r in _tsv(path, COLUMNS["nli"]):
            if _ok(r["sentence1"], src) and _ok(r["sentence2"], src):
                by_premise.setdefault(r["sentence1"], {}).setdefault(r["gold_label"].strip(), []).append(r["sentence2"])
        for premise, labels in by_premise.items():
            negs = labels.get("contradiction", [])
            for i, pos in enumerate(labels.get("entailment", [])):
                out["pairs"].append((premise, pos, negs[i % len(negs)] if negs else None))
            out["texts"].extend([premise, *[t for v in labels.values() for t in v]])
    elif src.kind == "pairs":
        a_key, p_key = src.anchor_field, src.positive_field
        for n, r in enumerate(_jsonl(path), 1):
            if a_key not in r or p_key not in r:
                raise DataError(f"'{path}' line {n} lacks '{a_key}'/'{p_key}' (fields: {', '.join(r)}); a pairs source needs "
                                "anchor, positive[, negative] fields: set anchor_field/positive_field to the file's names.")
            if _ok(r[a_key], src) and _ok(r[p_key], src):
                out["pairs"].append((r[a_key].strip(), r[p_key].strip(), r.get(src.negative_field)))
        out["texts"] = [t for a, p, _ in out["pairs"] for t in (a, p)]
    elif src.kind == "korquad":
        from koforge.eval.retrieval import read_korquad

        paragraphs, questions, gold = read_korquad(path)
        out["pairs"] = [(q, paragraphs[g], None) for q, g in zip(questions, gold) if _ok(q, src) and _ok(paragraphs[g], src)]
        out["texts"] = [t.strip() for t in (*questions, *paragraphs) if _ok(t, src)]
    elif src.kind == "parallel":
        out["parallel"] = _parallel_lines(path, local_paths(replace(src, path=src.teacher_path), data_root)[0], src)
        out["texts"] = [s for s, _ in out["parallel"]]
    else:  # text
        if path.suffix == ".jsonl":
            rows = _jsonl(path)
            if rows and src.field not in rows[0]:
                raise DataError(f"'{path}' has no field '{src.field}' (fields: {', '.join(rows[0])}). Set the source's field.")
            texts = [r.get(src.field, "") for r in rows]
        else:
            texts = _read(path).splitlines()
        out["texts"] = [t.strip() for t in texts if _ok(t, src)]
    return out


def _parallel_lines(path: Path, teacher_path: Path, src: DataSource) -> list[tuple[str, str]]:
    """(original, translation) line pairs of two aligned files; pairs with an empty or filtered side are dropped."""
    # Records end at "\n" only (Moses/OPUS): splitlines() would also split at U+2028, form feeds and the like
    # inside a line, and shift every later pair onto the wrong translation.
    originals, translations = (_read(p).replace("\r\n", "\n").removesuffix("\n").split("\n") for p in (path, teacher_path))
    if len(originals) != len(translations):
        raise DataError(f"parallel files '{path}' ({len(originals)} lines) and '{teacher_path}' ({len(translations)} "
                        "lines) do not pair up; line i of one must be the translation of line i of the other.")
    return [(s.strip(), t.strip()) for s, t in zip(originals, translations) if _ok(s, src) and _ok(t, src)]


def check_kind(src: DataSource, objective: str) -> None:
    """Refuse a source whose kind cannot feed `objective` (graded pairs for CoSENT/AnglE, pairs for InfoNCE)."""
    if objective in ("cosent", "angle") and src.kind != "sts":
        raise ConfigError(f"objective '{objective}' needs graded pairs (kind: sts), got a '{src.kind}' source ({src.path}).")
    if objective == "infonce" and src.kind not in ("nli", "pairs", "korquad"):
        raise ConfigError(f"objective 'infonce' needs pairs (kind: nli, pairs or korquad), got '{src.kind}' ({src.path}).")


def _first_line(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.readline()
    try:
        return head.decode("utf-8-sig")
    except UnicodeDecodeError:
        _read(path)  # raises the full non-UTF-8 message
        raise


def check_layout(src: DataSource, data_root: str | os.PathLike | None) -> None:
    """The columns or fields a local source's kind needs, from each file's first line only (cheap enough to
    run for every stage before the first one trains): what `read_source` would refuse stages later."""
    paths = local_paths(src, data_root)
    if src.kind == "parallel":
        paths += local_paths(replace(src, path=src.teacher_path), data_root)
    for path in paths:
        if path.is_dir():
            _read(path)  # the folder message
        line = _first_line(path)
        if src.kind in COLUMNS:
            header = [h.strip() for h in line.rstrip("\r\n").split("\t")]
            missing = [c for c in COLUMNS[src.kind] if c not in header]
            if missing:
                raise DataError(f"data file '{path}' lacks column(s) {', '.join(missing)} (found: "
                                f"{found_columns(header)}). A '{src.kind}' source needs a header "
                                f"with {', '.join(COLUMNS[src.kind])}.")
        elif src.kind in ("pairs", "text") and path.suffix == ".jsonl" and line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise DataError(f"'{path}' line 1 is not JSON; expected one object per line.") from None
            fields = (src.anchor_field, src.positive_field) if src.kind == "pairs" else (src.field,)
            absent = [f for f in fields if not isinstance(row, dict) or f not in row]
            if absent:
                names = ", ".join(row) if isinstance(row, dict) else type(row).__name__
                raise DataError(f"'{path}' line 1 lacks field(s) {', '.join(absent)} (fields: {names}). Set the "
                                f"source's {'anchor_field/positive_field' if src.kind == 'pairs' else 'field'} to the file's names.")


def group_by_objective(sources: list[DataSource], default: str) -> dict[str, list[DataSource]]:
    """Sources by the objective they train (their own, else `default`), the default's group first.

    A stage with more than one group is multi-task: each batch comes from one
    group and meets that group's loss (sentence-transformers' multi-dataset
    training, batches drawn in proportion to each group's size). Why: one
    objective after another undoes the earlier one (CoSENT on KorSTS after
    InfoNCE on NLI/query pairs gave back most of the retrieval gain).
    """
    groups: dict[str, list[DataSource]] = {default: []}
    for src in sources:
        groups.setdefault(src.objective or default, []).append(src)
    return {k: v for k, v in groups.items() if v}


def build_examples(sources: list[DataSource], objective: str, *, data_root: str | os.PathLike | None = None,
                   seed: int = 0) -> dict[str, list]:
    """Columns (as lists) for `objective` from all `sources`, each sampled to its `samples`.

    infonce columns have `negative` when some pair has a hard negative, None where one has not (see
    `infonce_parts`).
    """
    rng = random.Random(seed)
    columns: dict[str, list] = {}
    names = []
    for src in sources:
        check_kind(src, objective)
        read = read_source(src, data_root)
        names.append(src.path)
        if objective in ("cosent", "angle"):
            rows = read["sts"]
        elif objective == "infonce":
            rows = read["pairs"]
        elif objective == "distill":  # (student text, teacher text or None for the same text)
            rows = list(dict.fromkeys(read["parallel"] or [(t, None) for t in read["texts"]]))
        else:
            rows = list(dict.fromkeys(read["texts"]))  # unique, order kept
        # One scale per source: KorSTS' 0-5 scores include many <= 1 (a 0.8 is 0.16), and CoSENT/AnglE learn
        # the order of the scores, so scaling row by row would rank a 0.8/5 pair above a 3.5/5 one.
        scale = 5.0 if objective in ("cosent", "angle") and any(score > 1.0 for _, _, score in rows) else 1.0
        if src.samples is not None and len(rows) > src.samples:
            rows = rng.sample(rows, src.samples)
        if objective in ("cosent", "angle"):
            for s1, s2, score in rows:
                columns.setdefault("sentence1", []).append(s1)
                columns.setdefault("sentence2", []).append(s2)
                columns.setdefault("score", []).append(score / scale)
        elif objective == "infonce":
            for a, p, n in rows:
                columns.setdefault("anchor", []).append(a)
                columns.setdefault("positive", []).append(p)
                columns.setdefault("negative", []).append(n)
        elif objective == "distill":
            columns.setdefault("text", []).extend(text for text, _ in rows)
            columns.setdefault("teacher_text", []).extend(teacher for _, teacher in rows)
        else:
            columns.setdefault("text", []).extend(rows)
    n = len(next(iter(columns.values()), []))
    if n == 0:
        raise DataError(f"no training examples for objective '{objective}' after filtering {', '.join(names)}. "
                        "Check the files, the min_chars/max_chars filters and the objective/source kinds.")
    if objective == "infonce" and all(x is None for x in columns["negative"]):
        columns.pop("negative")
    if objective == "distill" and all(x is None for x in columns["teacher_text"]):
        columns.pop("teacher_text")
    if objective == "simcse":
        columns = {"anchor": columns["text"], "positive": list(columns["text"])}
    return columns


HARD_NEGATIVES = "infonce_hard_negatives"
"""Name of the part of an infonce group whose pairs carry a hard negative (see `infonce_parts`)."""


def objective_of(part: str) -> str:
    """The objective a dataset part of a stage trains: its name, or infonce for the hard-negative part."""
    return "infonce" if part == HARD_NEGATIVES else part


def infonce_parts(columns: dict[str, list], min_rows: int) -> dict[str, dict[str, list]]:
    """infonce columns as one dataset, or two when only some pairs carry a hard negative.

    A dataset has one set of columns, so pairs with and without negatives cannot share one; split,
    each part trains the same loss in batches of its own (KorNLI's contradictions stay hard negatives
    beside title -> content pairs that have none). A part smaller than one batch (`min_rows`) would
    never train: then all pairs train together without negatives, with a warning.
    """
    negatives = columns.get("negative")
    if negatives is None:
        return {"infonce": columns}
    n, missing = len(negatives), sum(x is None for x in negatives)
    if missing == 0:
        return {"infonce": columns}
    plain = {k: v for k, v in columns.items() if k != "negative"}
    if missing == n:
        return {"infonce": plain}
    if missing < min_rows or n - missing < min_rows:
        log.warning("objective 'infonce': %d of %d examples have no hard negative, and one of the two parts is smaller "
                    "than one batch (%d), so all train without hard negatives; add pairs to the smaller part or put "
                    "the sources with negatives in a stage of their own.", missing, n, min_rows)
        return {"infonce": plain}
    with_negative = [x is not None for x in negatives]

    def rows(column: list, keep: bool) -> list:
        return [v for v, has in zip(column, with_negative) if has == keep]

    return {"infonce": {k: rows(v, False) for k, v in plain.items()},
            HARD_NEGATIVES: {k: rows(v, True) for k, v in columns.items()}}

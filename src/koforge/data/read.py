"""Streaming text readers: local files, folders, gzip, and Hugging Face datasets.

`read_texts` yields one document at a time, so a corpus larger than memory
works. Formats are chosen by suffix: `.txt` (one document per line), `.jsonl`
(one JSON object per line, text in `field`), `.tsv` / `.csv` (header row, text
in the column named `field`), and `.gz` of each. A folder is read recursively,
files in sorted order. A source written `hf:NAME[:CONFIG][@SPLIT]` is streamed
with `datasets.load_dataset(..., streaming=True)` (split defaults to `train`).

A UTF-8 byte-order mark at the start of a file (Windows Notepad, Excel
exports) is dropped, so it neither spoils the first JSON line nor sticks to
the first document. Lines that are not valid UTF-8 (in a `.jsonl` also: not
valid JSON, not a JSON object, or a record after the first without the field
or with a non-text value; in a `.tsv` / `.csv`: a malformed row, a quote never
closed, or a row too short to hold the column) are counted and skipped with a
warning naming the file and line, or raise `DataError` naming them when
`strict=True`. A first record without the field fails at once: the field
name is wrong. Hidden files and folders are not read. Reading never modifies text: cleaning is `koforge.data.clean`'s job.
"""
from __future__ import annotations

import codecs
import csv
import dataclasses
import gzip
import io
import json
import os
import sys
import zlib
from pathlib import Path
from typing import IO, Iterator, Sequence

from koforge._utils.errors import DataError, InputPathError
from koforge._utils.hub import look_up_dataset_on_hub
from koforge._utils.logging import get_logger

log = get_logger(__name__)

TEXT_SUFFIXES = (".txt", ".jsonl", ".tsv", ".csv")
HF_PREFIX = "hf:"
_MAX_LINE_WARNINGS = 5

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


class MissingFieldError(DataError):
    """The text field (JSONL, datasets) or column (TSV/CSV) to read is absent. `problem` says what is missing
    and where; the message adds the CLI's fix (--field), which a caller without that option replaces."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(f"{problem}. Pass the right field (column) with --field.")


@dataclasses.dataclass(kw_only=True)
class ReadStats:
    """Counts collected while reading (pass one to `read_texts(stats=...)`)."""

    files: int = 0
    documents: int = 0
    skipped_lines: int = 0
    skipped_where: list[str] = dataclasses.field(default_factory=list)  # first few "file:line"

    def _skip(self, where: str, strict: bool, why: str) -> None:
        if strict:
            raise DataError(f"{where}: {why}. Fix or remove that line, or run without --strict to skip such lines.")
        self.skipped_lines += 1
        if len(self.skipped_where) < 20:
            self.skipped_where.append(where)
        if self.skipped_lines <= _MAX_LINE_WARNINGS:
            log.warning("skipping %s: %s", where, why)


def _base_suffix(path: Path) -> str:
    """The format suffix, looking through a trailing `.gz`."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def is_text_file(path: Path) -> bool:
    """Whether `path` has a suffix `read_texts` understands."""
    return _base_suffix(path) in TEXT_SUFFIXES


def list_files(source: str | os.PathLike) -> list[Path]:
    """The readable files of a source path (itself, or a folder's files in sorted order)."""
    path = Path(source).expanduser()
    if not path.exists():
        raise InputPathError(f"input not found: '{path}'. Check the path; for a Hugging Face dataset write hf:NAME (e.g. hf:e9t/nsmc).")
    if path.is_dir():
        # hidden files and folders (.ipynb_checkpoints copies, .git, a koforge .NAME.tmp-* output) are not corpus
        files = sorted(p for p in path.rglob("*") if p.is_file() and is_text_file(p)
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not files:
            raise DataError(f"folder '{path}' holds no readable text files (expected {', '.join(TEXT_SUFFIXES)} or .gz of them).")
        return files
    if not is_text_file(path):
        raise DataError(f"'{path}' has an unsupported format '{''.join(path.suffixes) or '(none)'}'; expected {', '.join(TEXT_SUFFIXES)} or .gz of them.")
    return [path]


def _open_binary(path: Path) -> IO[bytes]:
    try:
        return gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb")
    except OSError as e:
        raise InputPathError(f"cannot read '{path}': {e.strerror or e}. Check its permissions.") from None


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    f = _open_binary(path)
    try:
        with f:
            for number, raw in enumerate(f, start=1):
                yield number, raw[len(codecs.BOM_UTF8):] if number == 1 and raw.startswith(codecs.BOM_UTF8) else raw
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"'{path}' is unreadable or a corrupted archive ({e}). Re-create or remove the file.") from None


def _decode(raw: bytes, where: str, stats: ReadStats, strict: bool) -> str | None:
    try:
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as e:
        stats._skip(where, strict, f"not valid UTF-8 (byte {raw[e.start]:#04x} at column {e.start})")
        return None


def _read_txt(path: Path, stats: ReadStats, strict: bool) -> Iterator[str]:
    for number, raw in _lines(path):
        text = _decode(raw, f"{path}:{number}", stats, strict)
        if text and text.strip():
            yield text


def _read_jsonl(path: Path, field: str, stats: ReadStats, strict: bool) -> Iterator[str]:
    field_seen = False
    for number, raw in _lines(path):
        where = f"{path}:{number}"
        line = _decode(raw, where, stats, strict)
        if line is None or not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            stats._skip(where, strict, f"not valid JSON ({e.msg})")
            continue
        if not isinstance(obj, dict):  # a stray array, string or number says nothing about --field
            stats._skip(where, strict, f"not a JSON object (found a {type(obj).__name__})")
            continue
        if field not in obj:
            keys = ", ".join(obj)
            if not field_seen:  # the first record decides: a wrong --field fails at once
                raise MissingFieldError(f"{where}: no field '{field}' (found: {keys})")
            # one scraped record without it must not end a long job
            stats._skip(where, strict, f"no field '{field}' (found: {keys})")
            continue
        field_seen = True
        value = obj[field]
        if isinstance(value, str):
            if value.strip():
                yield value
        elif value is not None:
            stats._skip(where, strict, f"field '{field}' holds a {type(value).__name__}, not text")


def _read_table(path: Path, field: str, stats: ReadStats, strict: bool) -> Iterator[str]:
    delimiter = "\t" if _base_suffix(path) == ".tsv" else ","
    binary = _open_binary(path)
    # surrogateescape keeps undecodable bytes as lone surrogates, so a bad row is found by its line number
    text = io.TextIOWrapper(binary, encoding="utf-8-sig", errors="surrogateescape", newline="")
    try:
        with text:
            quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
            # strict: a quote that is never closed is an error, not the rest of the file read silently as one field
            reader = csv.reader(text, delimiter=delimiter, quoting=quoting, strict=True)
            header = next(reader, None)
            if header is None:
                return
            header = [h.strip() for h in header]
            if field not in header:
                raise MissingFieldError(f"'{path}' has no column '{field}' (columns: {', '.join(header)})")
            col = header.index(field)
            while True:
                start = reader.line_num + 1  # a quoted field may span lines: name the line the row starts on
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as e:
                    unclosed = "unexpected end of data" in str(e)
                    why = (f"a quote opened here is never closed (lines {start}-{reader.line_num} were one field)"
                           if unclosed else f"malformed {_base_suffix(path)[1:].upper()} row ({e})")
                    stats._skip(f"{path}:{start}", strict, why)
                    continue
                if not row:  # a blank line
                    continue
                if col >= len(row):
                    stats._skip(f"{path}:{start}", strict, f"{len(row)} column(s), no '{field}' (column {col + 1})")
                    continue
                value = row[col]
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    stats._skip(f"{path}:{reader.line_num}", strict, "not valid UTF-8")
                    continue
                if value.strip():
                    yield value
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"'{path}' is unreadable or a corrupted archive ({e}). Re-create or remove the file.") from None


def read_file(path: Path, *, field: str = "text", stats: ReadStats | None = None, strict: bool = False) -> Iterator[str]:
    """Yield the documents of one file (format chosen by suffix)."""
    stats = stats if stats is not None else ReadStats()
    stats.files += 1
    kind = _base_suffix(path)
    if kind == ".txt":
        inner = _read_txt(path, stats, strict)
    elif kind == ".jsonl":
        inner = _read_jsonl(path, field, stats, strict)
    else:
        inner = _read_table(path, field, stats, strict)
    for text in inner:
        stats.documents += 1
        yield text


def parse_hf_source(source: str) -> tuple[str, str | None, str]:
    """`hf:NAME[:CONFIG][@SPLIT]` -> (name, config, split)."""
    spec = source[len(HF_PREFIX):]
    spec, _, split = spec.partition("@")
    name, _, config = spec.partition(":")
    if not name:
        raise DataError(f"'{source}' names no dataset; write hf:NAME[:CONFIG][@SPLIT], e.g. hf:e9t/nsmc@train.")
    return name, (config or None), (split or "train")


def read_hf_dataset(source: str, *, field: str = "text", stats: ReadStats | None = None) -> Iterator[str]:
    """Stream the `field` column of a Hugging Face dataset."""
    stats = stats if stats is not None else ReadStats()
    name, config, split = parse_hf_source(source)
    look_up_dataset_on_hub(name, DataError)
    try:
        from datasets import load_dataset

        dataset = load_dataset(name, config, split=split, streaming=True)
    except Exception as e:  # datasets raises many types (network, missing config, ...)
        raise DataError(f"cannot load Hugging Face dataset '{name}' (config {config}, split {split}): {e}") from None
    for row in dataset:
        if field not in row:
            raise MissingFieldError(f"dataset '{name}' has no field '{field}' (fields: {', '.join(row)})")
        value = row[field]
        if isinstance(value, str) and value.strip():
            stats.documents += 1
            yield value


def read_texts(sources: Sequence[str | os.PathLike] | str | os.PathLike, *, field: str = "text", strict: bool = False,
               stats: ReadStats | None = None) -> Iterator[str]:
    """Stream documents from files, folders, `.gz` files and `hf:` dataset names.

    Every local path is checked before the first document is yielded, so a
    missing path fails at once. Pass a `ReadStats` to learn how many lines
    were skipped and where.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    if not sources:
        raise DataError("no input given: pass at least one file, folder or hf:DATASET.")
    stats = stats if stats is not None else ReadStats()
    plan: list[Path | str] = []
    for source in sources:
        if isinstance(source, str) and source.startswith(HF_PREFIX):
            parse_hf_source(source)
            plan.append(source)
        else:
            plan.extend(list_files(source))
    return _iterate(plan, field, strict, stats)


def _iterate(plan: list[Path | str], field: str, strict: bool, stats: ReadStats) -> Iterator[str]:
    for item in plan:
        if isinstance(item, str):
            yield from read_hf_dataset(item, field=field, stats=stats)
        else:
            before = stats.skipped_lines
            yield from read_file(item, field=field, stats=stats, strict=strict)
            if stats.skipped_lines > before:
                log.warning("skipped %d unreadable line(s) in '%s' (first: %s)", stats.skipped_lines - before, item,
                            next((w for w in stats.skipped_where if w.startswith(f"{item}:")), "?"))

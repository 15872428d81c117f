"""Reading an evaluation data file whole, as UTF-8, naming the file and the fix when it is not.

The task readers (KorSTS TSV, bitext lines, separation JSONL) need every line
of the file, blank ones included (bitext alignment), so they cannot use
`koforge.data.read.read_texts`, which streams documents and skips bad lines.
A file in another encoding (cp949 / EUC-KR is common for Korean data) is
refused, never decoded with replacement characters: a metric computed on
mojibake looks valid and is not.
"""
from __future__ import annotations

import os

from koforge._utils.errors import DataError
from koforge._utils.io import require_path, utf8_hint


def read_text_file(path: str | os.PathLike, what: str) -> str:
    """The text of a UTF-8 file (a leading byte-order mark dropped); `DataError` naming it otherwise."""
    p = require_path(path, what)
    if p.is_dir():
        raise DataError(f"{what} '{p}' is a folder; pass the file itself.")
    raw = p.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(f"{what} '{p}' is not UTF-8 (line {line}: byte {raw[e.start]:#04x}). {utf8_hint(p)}") from None


def split_lines(text: str) -> list[str]:
    """The lines of `text`, split on \\n, \\r\\n and \\r only, as `wc -l` and editors count them: `str.splitlines`
    also splits on U+2028, U+0085, form feeds..., which scraped sentences hold and JSON strings may hold raw."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return lines[:-1] if lines and not lines[-1] else lines


def found_columns(header: list[str]) -> str:
    """What a TSV's first line holds, short enough for one message: a JSON line or a long header would
    otherwise be printed whole (a petition line is kilobytes)."""
    first = "\t".join(header).lstrip()
    if first.startswith(("{", "[")):
        return "a JSON line, not a tab-separated header: this looks like a .jsonl file"
    cells = [h if len(h) <= 40 else h[:37] + "..." for h in header if h]
    shown = ", ".join(cells[:10]) + (f", ... ({len(cells)} columns)" if len(cells) > 10 else "")
    return shown or "nothing"

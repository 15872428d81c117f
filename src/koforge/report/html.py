"""Render a report as one self-contained HTML page.

Self-contained means the file can be mailed or attached to a ticket: the
PNG plots are embedded as base64 `data:` URIs, the style sheet is inline and
there is no script and no external request.
"""
from __future__ import annotations

import base64
from html import escape
from pathlib import Path
from typing import Sequence

from koforge.report.tables import Section, Table, format_cell

_CSS = """
body{font-family:system-ui,-apple-system,'Noto Sans KR','Malgun Gothic',sans-serif;margin:2rem auto;max-width:1100px;
padding:0 1rem;color:#1d232b;line-height:1.45}
h1{font-size:1.6rem}h2{font-size:1.3rem;border-bottom:2px solid #dfe4ea;padding-bottom:.2rem;margin-top:2.2rem}
h3{font-size:1.05rem;margin-top:1.6rem}
table{border-collapse:collapse;margin:.6rem 0 1rem;font-size:.88rem}
th,td{border:1px solid #d0d7de;padding:.25rem .6rem;text-align:left;vertical-align:top}
th{background:#f3f5f8}td.num{text-align:right;font-variant-numeric:tabular-nums}
caption{caption-side:top;text-align:left;font-weight:600;padding:.2rem 0}
figure{margin:1rem 0}figure img{max-width:100%;border:1px solid #e3e7ec}
figcaption{font-size:.82rem;color:#57606a}
pre{background:#f6f8fa;padding:.6rem;overflow-x:auto;font-size:.85rem;white-space:pre-wrap}
.meta{color:#57606a;font-size:.85rem}.note{color:#8a6d3b;font-size:.8rem}
"""


def _num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def table_html(t: Table) -> str:
    cols = t.columns
    head = "".join(f"<th>{escape(c)}</th>" for c in cols)
    body = []
    for r in t.rows:
        cells = "".join(
            f'<td class="num">{escape(format_cell(r.get(c)))}</td>' if _num(r.get(c))
            else f"<td>{escape(format_cell(r.get(c)))}</td>" for c in cols)
        body.append(f"<tr>{cells}</tr>")
    src = f' <span class="meta">({escape(t.source)})</span>' if t.source and t.source != t.title else ""
    note = f'<div class="note">{escape(t.note)}</div>' if t.note else ""
    return (f'<table class="koforge-table"><caption>{escape(t.title)}{src}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{note}")


def image_html(caption: str, png: Path) -> str:
    data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    return (f'<figure><img class="koforge-plot" alt="{escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def section_html(s: Section, level: int = 3) -> str:
    parts = [f"<h{level}>{escape(s.title)}</h{level}>"]
    parts += [table_html(t) for t in s.tables]
    parts += [image_html(c, p) for c, p in s.plots]
    parts += [f'<h{level + 1}>{escape(c)}</h{level + 1}><pre>{escape(text)}</pre>' for c, text in s.texts]
    return "\n".join(parts)


def render_html(title: str, meta: str, blocks: Sequence[tuple[str, Sequence[Section]]]) -> str:
    """blocks: (heading, sections) in page order."""
    body = [f"<h1>{escape(title)}</h1>", f'<p class="meta">{escape(meta)}</p>']
    for heading, sections in blocks:
        body.append(f"<h2>{escape(heading)}</h2>")
        body += [section_html(s) for s in sections]
    return ("<!DOCTYPE html>\n<html lang=\"ko\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")

"""Render the same report as markdown (GitHub-flavoured pipe tables).

Markdown viewers do not reliably show `data:` images, so the plots are
referenced as files under `images/` beside `report.md`; the caller copies them.
"""
from __future__ import annotations

from typing import Callable, Sequence

from koforge.report.tables import Section, Table, format_cell


def _cell(v: object) -> str:
    return format_cell(v).replace("|", "\\|").replace("\n", " ")


def table_md(t: Table) -> str:
    cols = t.columns
    src = f" ({t.source})" if t.source and t.source != t.title else ""
    lines = [f"**{t.title}**{src}", "", "| " + " | ".join(_cell(c) for c in cols) + " |",
             "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in cols) + " |" for r in t.rows]
    if t.note:
        lines += ["", f"_{t.note}_"]
    return "\n".join(lines) + "\n"


def section_md(s: Section, image_name: Callable[[object], str], level: int = 3) -> str:
    parts = [f"{'#' * level} {s.title}\n"]
    parts += [table_md(t) for t in s.tables]
    parts += [f"![{c}]({image_name(p)})\n" for c, p in s.plots]
    parts += [f"{'#' * (level + 1)} {c}\n\n```text\n{text.rstrip()}\n```\n" for c, text in s.texts]
    return "\n".join(parts)


def render_markdown(title: str, meta: str, blocks: Sequence[tuple[str, Sequence[Section]]],
                    image_name: Callable[[object], str]) -> str:
    out = [f"# {title}\n", f"_{meta}_\n"]
    for heading, sections in blocks:
        out.append(f"## {heading}\n")
        out += [section_md(s, image_name) for s in sections]
    return "\n".join(out)

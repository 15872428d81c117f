"""What every CLI command shares: error rendering, consoles, override parsing.

A command is a thin adapter: read options, build the config, call one library
function, render the result. `cli_errors` turns a `KoforgeError`, or an
`OSError` from the file system (permission denied, disk full), into one red
line on stderr and exit code 1 (no traceback); Ctrl-C exits 130, SIGTERM 143.
"""
from __future__ import annotations

import functools
import json
import os
from typing import Any, Callable, Optional, Sequence

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from koforge._utils.errors import Interrupted, KoforgeError
from koforge._utils.logging import configure_cli_logging

console = Console()
err_console = Console(stderr=True)


def cli_errors(fn: Callable) -> Callable:
    """Decorate a Typer command so library errors end in one clear message."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        configure_cli_logging(os.environ.get("KOFORGE_LOG", "WARNING"))
        try:
            return fn(*args, **kwargs)
        except KoforgeError as e:
            err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)  # [x] in a message is text
            raise typer.Exit(1) from None
        except OSError as e:  # the file system refused (permission, disk full): the message is the user's to act on
            where = f" '{e.filename}'" if e.filename else ""
            err_console.print(f"[bold red]error:[/] cannot access{escape(where)}: {escape(str(e.strerror or e))}.", highlight=False,
                              soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt as e:
            kept = e.message if isinstance(e, Interrupted) else "nothing was written under the final output name."
            err_console.print(f"[yellow]interrupted[/]: {escape(kept)}", highlight=False, soft_wrap=True)
            raise typer.Exit(INTERRUPT_EXIT["code"]) from None

    return wrapper


INTERRUPT_EXIT = {"code": 130}
"""The exit code of an interrupted command: 128 + the signal (130 for Ctrl-C; main() sets 143 on SIGTERM)."""


def report_skips(skipped: int, first: Optional[str] = None) -> None:
    """One warning for the lines a reader skipped (each was also logged with its file and line)."""
    if skipped:
        where = f" (first: {first})" if first else ""
        err_console.print(f"[yellow]warning:[/] skipped {skipped} unreadable line(s){escape(where)}: not UTF-8, not JSON, or "
                          "without the field; rerun with --strict to fail on them.", highlight=False, soft_wrap=True)


def rows_table(rows: Sequence[dict], title: str | None = None, floatfmt: str = ".3f") -> Table:
    """A rich table from a list of dicts (columns: every row's keys, in order of first appearance)."""
    table = Table(title=title)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    for c in columns:
        table.add_column(str(c), overflow="fold")  # a narrow terminal wraps names, never cuts them to "drop_…"
    for r in rows:
        table.add_row(*[format(v, floatfmt) if isinstance(v, float) else str(v) for v in (r.get(c, "") for c in columns)])
    return table


def text_override(key: str, value: object) -> str:
    """`key=value` for an option passed on as a config override: quoted, so that YAML keeps a path such as
    'runs #3', '[v2]/data' or 'on' as typed (unquoted, '#' starts a comment and 'on' is true)."""
    return f"{key}={json.dumps(str(value), ensure_ascii=False)}"


def overrides_arg(example: str) -> Any:
    """The trailing `key=value` overrides argument, its help showing a key of the command's own config."""
    return typer.Argument(None, help=f"Config overrides as key=value (e.g. {example}).", show_default=False)


OverridesArg = overrides_arg("vocab_size=32000")

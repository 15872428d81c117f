"""The `koforge` root command: registers each concern's sub-app."""
from __future__ import annotations

import importlib
import signal

import typer

app = typer.Typer(
    name="koforge",
    help="Build, adapt, compress and evaluate Korean language models.\n\nExample: koforge demo --quick",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# (module, command name); each module defines `app` (a group) or `command` (a single command).
_SUBAPPS = [
    ("data", "data"), ("tokenizer", "tokenizer"), ("expand", "expand"), ("embed", "embed"),
    ("lm", "lm"), ("compress", "compress"), ("eval", "eval"), ("report", "report"), ("demo", "demo"),
]

for _module_name, _name in _SUBAPPS:
    try:
        _module = importlib.import_module(f"koforge.cli.{_module_name}")
    except ModuleNotFoundError as _e:
        if _e.name != f"koforge.cli.{_module_name}":
            raise
        continue
    if hasattr(_module, "app"):
        app.add_typer(_module.app, name=_name)
    elif hasattr(_module, "command"):
        app.command(name=_name)(_module.command)


@app.callback()
def _root() -> None:
    """Build, adapt, compress and evaluate Korean language models."""


@app.command()
def version() -> None:
    """Print the koforge version.

    Example: koforge version
    """
    from koforge import __version__

    typer.echo(__version__)


def _terminate(signum: int, frame: object) -> None:
    # `timeout`, `kill` and `docker stop` send SIGTERM: take Ctrl-C's path, which removes temporary outputs,
    # and exit 128 + 15 as a process killed by it would.
    from koforge.cli._common import INTERRUPT_EXIT

    INTERRUPT_EXIT["code"] = 128 + signum
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point."""
    signal.signal(signal.SIGTERM, _terminate)
    app()


if __name__ == "__main__":
    main()

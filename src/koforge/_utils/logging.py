"""Library logging: a named logger per module, silent unless the app configures it.

`configure_cli_logging` gives the `koforge` logger its own stderr handler and
leaves the root logger alone: a root handler (`logging.basicConfig`) would
print every warning of libraries that already have their own handler
(huggingface_hub, datasets) a second time.
"""
from __future__ import annotations

import contextlib
import logging
import sys
from typing import Iterator


def get_logger(name: str) -> logging.Logger:
    """Return the koforge logger for `name` (library code logs, never prints)."""
    return logging.getLogger(name if name.startswith("koforge") else f"koforge.{name}")


class _CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at emit time (a test runner swaps it between commands)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure_cli_logging(level: str = "WARNING") -> None:
    """Show koforge's own log records on stderr at `level` (idempotent)."""
    logger = logging.getLogger("koforge")
    logger.setLevel(level.upper())
    if not any(isinstance(h, _CurrentStderrHandler) for h in logger.handlers):
        handler = _CurrentStderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)


@contextlib.contextmanager
def quiet_load_report() -> Iterator[None]:
    """Silence transformers' load report (missing / unused weights) while loading a model whose
    `output_loading_info` the caller checks itself, refusing in one message instead."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)

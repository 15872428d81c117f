"""Importing a koforge area an evaluation needs only when it runs.

Keeps `koforge eval --help` fast, and lets an installation without an area
(koforge.lm, koforge.tokenizers) fail only the tasks that need it, in one
message, rather than at import.
"""
from __future__ import annotations

import importlib
from typing import Any

from koforge._utils.errors import KoforgeError


class TaskUnavailableError(KoforgeError):
    """The module a task needs is not part of this installation."""


def import_optional(module: str, what: str) -> Any:
    """`module`, or TaskUnavailableError naming `what` when it (not one of its own imports) is missing."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and (e.name == module or module.startswith(e.name + ".")):
            raise TaskUnavailableError(f"{what} is not available in this koforge installation ({module} is missing). "
                                       "Update koforge or pick another task.") from None
        raise

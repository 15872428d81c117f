"""Library logging: a named logger per module, silent unless the app configures it."""
from __future__ import annotations

import logging


def get_logger(name: str) -> logging.Logger:
    """Return the koforge logger for `name` (library code logs, never prints)."""
    return logging.getLogger(name if name.startswith("koforge") else f"koforge.{name}")

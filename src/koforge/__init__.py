"""koforge: build, adapt, compress and evaluate Korean language models.

Names are resolved lazily so that `import koforge` (and `koforge --help`)
does not import torch until something needs it.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "KoforgeError": "koforge._utils.errors",
    "resolve_device": "koforge._utils.device",
    "seed_everything": "koforge._utils.seed",
    "load_config": "koforge.config",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'koforge' has no attribute {name!r}")

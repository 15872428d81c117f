"""koforge: build, adapt, compress and evaluate Korean language models.

The public API is re-exported lazily per concern so that `import koforge`
stays fast; see each subpackage for its functions.
"""
from __future__ import annotations

__version__ = "0.1.0"

from koforge._utils.errors import KoforgeError  # noqa: E402
from koforge._utils.device import resolve_device  # noqa: E402
from koforge._utils.seed import seed_everything  # noqa: E402
from koforge.config import load_config  # noqa: E402

__all__ = ["__version__", "KoforgeError", "resolve_device", "seed_everything", "load_config"]

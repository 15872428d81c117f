"""Progress bars that stay quiet in CI and tests (KOFORGE_PROGRESS=0)."""
from __future__ import annotations

import os
from typing import Any, Iterable

from tqdm.auto import tqdm


def progress(iterable: Iterable | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar, disabled when KOFORGE_PROGRESS=0."""
    kwargs.setdefault("disable", os.environ.get("KOFORGE_PROGRESS", "1") == "0")
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)

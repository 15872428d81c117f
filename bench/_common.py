"""Helpers every bench script shares: where outputs go and where ../shared is."""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("KOFORGE_SHARED", ROOT.parent / "shared")).resolve()


def bench_out(name: str) -> Path:
    """$KOFORGE_BENCH_OUT/<name> when set, else bench/out/<name> (git-ignored)."""
    base = Path(os.environ.get("KOFORGE_BENCH_OUT", ROOT / "bench" / "out"))
    path = base / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def shared(sub: str) -> Path:
    """A path under ../shared, or exit with the reason when it is absent."""
    path = SHARED / sub
    if not path.exists():
        sys.exit(f"this bench needs {path} (the ../shared data folder beside the checkout)")
    return path

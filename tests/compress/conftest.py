"""Fixtures of the compression tests: tiny saved models of each supported family, held-out Korean text."""
from __future__ import annotations

from pathlib import Path

import pytest

from compress_models import ASSETS, make_model  # noqa: F401


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """One saved tiny model per supported family: {'llama': path, 'qwen3': ..., 'exaone4': ...}."""
    root = tmp_path_factory.mktemp("tiny")
    return {kind: make_model(kind, root / kind) for kind in ("llama", "qwen3", "exaone4")}


@pytest.fixture(scope="session")
def heldout() -> Path:
    return ASSETS / "compress_ko.txt"


@pytest.fixture(autouse=True)
def _single_thread(one_torch_thread):
    """Every test here runs on one torch thread (the root conftest's `one_torch_thread`)."""

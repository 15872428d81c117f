"""Fixtures of the compression tests: tiny saved models of each supported family, held-out Korean text."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

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
def one_torch_thread():
    """One intra-op thread: on a busy 2-core machine, spinning OpenMP threads make tiny ops 10x slower."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)

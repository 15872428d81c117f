"""seed_everything: python, numpy and torch draw the same numbers after the same seed."""
from __future__ import annotations

import random

import numpy as np
import torch

from koforge import seed_everything


def _draws() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_the_same_seed_gives_the_same_draws_in_every_library():
    seed_everything(7)
    first = _draws()
    seed_everything(7)
    assert _draws() == first
    seed_everything(8)
    assert all(a != b for a, b in zip(_draws(), first))
    seed_everything(2**40)  # numpy takes seeds below 2**32 only: folded, not refused
    seed_everything(7, deterministic=True)
    try:
        assert torch.are_deterministic_algorithms_enabled() and _draws() == first
    finally:
        torch.use_deterministic_algorithms(False)

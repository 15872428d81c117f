"""Deterministic train / validation / test split by content hash.

A document's split depends only on its cleaned text (a BLAKE2 hash mapped to
[0, 1)), never on its position or on the rest of the corpus: re-running, adding
documents or re-ordering files never moves a document between splits, and an
exact duplicate always lands beside its twin (no train/test leakage).
"""
from __future__ import annotations

import dataclasses
import hashlib

from koforge._utils.errors import ConfigError

SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(kw_only=True)
class SplitConfig:
    """Fractions of the three splits (they must sum to 1) and an optional salt."""

    train: float = 0.98
    """Share of documents in the train split."""
    validation: float = 0.01
    """Share of documents in the validation split."""
    test: float = 0.01
    """Share of documents in the test split."""
    salt: str = ""
    """Mixed into the hash: a different salt gives a different (still deterministic) split."""

    def __post_init__(self) -> None:
        for name in SPLITS:
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"split fraction {name}={v} must be between 0 and 1.")
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-6:
            rest = (1.0 - self.train) / 2
            raise ConfigError(f"split fractions must sum to 1: train={self.train:g} validation={self.validation:g} "
                              f"test={self.test:g} sum to {total:g}. Set all three, e.g. train={self.train:g} "
                              f"validation={rest:g} test={rest:g}.")

    @property
    def fractions(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in SPLITS}


def hash_unit(text: str, salt: str = "") -> float:
    """A uniform number in [0, 1) determined by the text (and salt) alone."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8, key=salt.encode("utf-8")[:64]).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def assign_split(text: str, config: SplitConfig | None = None) -> str:
    """The split ('train', 'validation' or 'test') a document belongs to."""
    config = config or SplitConfig()
    u = hash_unit(text, config.salt)
    edge = 0.0
    for name, fraction in config.fractions.items():
        edge += fraction
        if u < edge:
            return name
    return next(n for n in reversed(SPLITS) if config.fractions[n] > 0)

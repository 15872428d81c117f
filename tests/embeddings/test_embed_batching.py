"""Length-grouped batches: every row once an epoch, little padding, no duplicate texts when asked."""
from __future__ import annotations

import random

import pytest

pytest.importorskip("sentence_transformers")
from datasets import Dataset  # noqa: E402

from koforge.embeddings.batching import LengthGroupedBatchSampler  # noqa: E402
from koforge.embeddings.train import TrainSettings, _batch_sampler  # noqa: E402

LABELS = ["label", "score"]


def _pairs(n: int = 1000, seed: int = 0) -> Dataset:
    rng = random.Random(seed)
    anchors = [f"{i} " + "가" * rng.randint(1, 80) for i in range(n)]
    positives = [f"{i} " + "나" * rng.randint(1, 80) for i in range(n)]
    return Dataset.from_dict({"anchor": anchors, "positive": positives, "score": [0.5] * n})


def _padded(sampler: LengthGroupedBatchSampler, batches: list[list[int]]) -> int:
    """Characters a step would pad to: each batch costs its size times its longest row."""
    return sum(len(b) * max(sampler.lengths[i] for i in b) for b in batches)


def test_every_row_once_an_epoch_in_batches_of_similar_length():
    data = _pairs()
    sampler = LengthGroupedBatchSampler(data, batch_size=32, drop_last=False, valid_label_columns=LABELS, seed=3)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert len(batches) == len(sampler) == 32
    assert sorted(map(len, batches))[1:] == [32] * 31  # one partial batch of 1000 - 31 * 32 = 8 rows
    # the score column is no text: length counts the two text columns only
    assert sampler.lengths[0] == len(data[0]["anchor"]) + len(data[0]["positive"])
    # in file order (what a random sampler gives on average) the same rows pad to ~1.7x more
    in_order = [list(range(i, min(i + 32, 1000))) for i in range(0, 1000, 32)]
    assert _padded(sampler, batches) < 0.7 * _padded(sampler, in_order)
    assert _padded(sampler, batches) < 1.05 * sum(sampler.lengths)


def test_order_is_seeded_by_seed_and_epoch():
    data = _pairs(300)
    a = LengthGroupedBatchSampler(data, 16, True, LABELS, seed=0)
    b = LengthGroupedBatchSampler(data, 16, True, LABELS, seed=0)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    assert len(list(a)) == len(a) == 300 // 16 and all(len(batch) == 16 for batch in a)


def test_no_duplicates_keeps_shared_texts_apart():
    rng = random.Random(1)
    positives = [f"{i} " + "다" * rng.randint(1, 60) for i in range(400)]
    anchors = ["같은 질문" if i % 10 == 0 else f"q{i}" for i in range(400)]  # 40 rows share one anchor
    data = Dataset.from_dict({"anchor": anchors, "positive": positives})
    sampler = LengthGroupedBatchSampler(data, 16, False, LABELS, seed=0, no_duplicates=True)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(400))
    for batch in batches:
        texts = [t for i in batch for t in (anchors[i], positives[i])]
        assert len(texts) == len(set(texts))


def test_trainer_gets_the_grouped_sampler_unless_turned_off():
    on = _batch_sampler(TrainSettings(learning_rate=1e-5, batch_size=8, no_duplicates=True))
    assert on.func is LengthGroupedBatchSampler and on.keywords == {"no_duplicates": True}
    off = _batch_sampler(TrainSettings(learning_rate=1e-5, batch_size=8, no_duplicates=True, group_by_length=False))
    assert off.value == "no_duplicates"

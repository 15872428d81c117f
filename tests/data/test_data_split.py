"""Content-hash splits never move a document."""
from __future__ import annotations

import json
import random

import pytest

from koforge._utils.errors import ConfigError, OutputExistsError
from koforge.data.corpus import split_corpus
from koforge.data.split import SplitConfig, assign_split


def test_split_is_a_function_of_the_text_alone():
    docs = [f"문서 번호 {i}: 내용" for i in range(3000)]
    first = {d: assign_split(d) for d in docs}
    shuffled = docs[:]
    random.Random(0).shuffle(shuffled)
    more = shuffled + [f"새 문서 {i}" for i in range(500)]
    assert all(assign_split(d) == first[d] for d in more if d in first)
    counts = {s: list(first.values()).count(s) for s in ("train", "validation", "test")}
    assert 2880 <= counts["train"] <= 2990 and counts["validation"] > 0 and counts["test"] > 0
    salted = SplitConfig(salt="other")
    assert any(assign_split(d, salted) != first[d] for d in docs)


def test_split_corpus_rerun_is_identical(assets, tmp_path):
    cfg = SplitConfig(train=0.8, validation=0.1, test=0.1)
    a = split_corpus([assets / "tok_nsmc_400.txt"], tmp_path / "a", config=cfg)
    b = split_corpus([assets / "tok_nsmc_400.txt"], tmp_path / "b", config=cfg)
    assert a == b and sum(a.values()) == 400
    for name in a:
        assert (tmp_path / "a" / f"{name}.jsonl").read_bytes() == (tmp_path / "b" / f"{name}.jsonl").read_bytes()
    test_docs = [json.loads(line)["text"] for line in (tmp_path / "a" / "test.jsonl").open(encoding="utf-8")]
    assert all(assign_split(d, cfg) == "test" for d in test_docs)
    with pytest.raises(OutputExistsError):
        split_corpus([assets / "tok_nsmc_400.txt"], tmp_path / "a", config=cfg)


def test_fractions_must_sum_to_one():
    with pytest.raises(ConfigError, match="sum to 1"):
        SplitConfig(train=0.9, validation=0.2, test=0.0)
    # train=0.9 alone keeps the default 0.01 / 0.01: the message says to set the other two
    with pytest.raises(ConfigError, match=r"train=0.9 validation=0.01 test=0.01 sum to 0.92. Set all three, e.g. "
                                          r"train=0.9 validation=0.05 test=0.05"):
        SplitConfig(train=0.9)

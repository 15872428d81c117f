"""Byte-level tokenizers round-trip arbitrary Unicode (after NFC)."""
from __future__ import annotations

import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from koforge.tokenizers.io import load_tokenizer
from koforge.tokenizers.train import TokenizerTrainConfig, train_tokenizer

HANGUL = st.characters(min_codepoint=0xAC00, max_codepoint=0xD7A3)
JAMO = st.characters(min_codepoint=0x1100, max_codepoint=0x11FF)
TEXT = st.text(st.one_of(st.characters(blacklist_categories=("Cs",)), HANGUL, JAMO, st.sampled_from(" \n\t0123456789")), max_size=60)


@pytest.fixture(scope="module")
def tokenizers(assets, tmp_path_factory):
    texts = (assets / "tok_nsmc_400.txt").read_text(encoding="utf-8").splitlines()[:200]
    out = tmp_path_factory.mktemp("rt")
    return [load_tokenizer(train_tokenizer(texts, cfg, out / cfg.kind).path) for cfg in (
        TokenizerTrainConfig(vocab_size=500, whitespace="preserve", chat_roles=["user"]),
        TokenizerTrainConfig(kind="superbpe", vocab_size=500, superbpe_transition=400))]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXT)
def test_round_trip_arbitrary_unicode(tokenizers, text):
    expected = unicodedata.normalize("NFC", text)
    for tok in tokenizers:
        backend = tok.backend_tokenizer
        ids = backend.encode(text, add_special_tokens=False).ids
        assert backend.decode(ids, skip_special_tokens=False) == expected, (tok.name_or_path, text, ids)

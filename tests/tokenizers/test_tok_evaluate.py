"""Tokenizer comparison: exact figures on a tiny case, reference deltas, markdown / JSON / PNG outputs."""
from __future__ import annotations

import json

import pytest

from koforge._utils.errors import DataError, TokenizerError
from koforge.tokenizers.evaluate import evaluate_tokenizers
from koforge.tokenizers.io import load_tokenizer
from koforge.tokenizers.train import TokenizerTrainConfig, train_tokenizer


@pytest.fixture(scope="module")
def pair(assets, tmp_path_factory):
    texts = (assets / "tok_nsmc_400.txt").read_text(encoding="utf-8").splitlines()
    out = tmp_path_factory.mktemp("ev")
    small = train_tokenizer(texts, TokenizerTrainConfig(vocab_size=300), out / "small").path
    large = train_tokenizer(texts, TokenizerTrainConfig(vocab_size=1200), out / "large").path
    return {"small": small, "large": large}, texts


def test_figures_are_exact(pair):
    tokenizers, texts = pair
    sets = {"reviews": texts[:50], "short": ["한국어 문장", "둘째 문장입니다"]}
    cmp = evaluate_tokenizers(tokenizers, sets, reference="small")
    assert [(r["tokenizer"], r["text_set"]) for r in cmp.rows] == [
        ("small", "reviews"), ("small", "short"), ("large", "reviews"), ("large", "short")]
    tok = load_tokenizer(tokenizers["large"])
    n = sum(len(tok.encode(t, add_special_tokens=False)) for t in sets["short"])
    row = cmp.rows[3]
    assert row["tokens"] == n
    assert row["chars_per_token"] == pytest.approx(sum(map(len, sets["short"])) / n)
    assert row["bytes_per_token"] == pytest.approx(sum(len(t.encode()) for t in sets["short"]) / n)
    assert row["tokens_per_text"] == pytest.approx(n / 2)
    assert row["tokens_per_sentence"] == pytest.approx(n / 2)  # one sentence each
    multi = evaluate_tokenizers({"large": tokenizers["large"]}, {"t": ["첫 문장이다. 둘째 문장! \"셋째?\" 넷째\n다섯째",
                                                                       "3.14는 원주율이다."]}).rows[0]
    assert multi["tokens_per_sentence"] == pytest.approx(multi["tokens"] / 6)
    assert row["tokens_per_1k_syllables"] == pytest.approx(1000 * n / 12)
    assert row["round_trip_rate"] == 1.0 and row["unk_rate"] == 0.0
    # byte-level BPE: no unk/byte-fallback pieces, but fragments of 3-byte Hangul syllables decode to U+FFFD alone
    ids = [i for t in sets["short"] for i in tok.backend_tokenizer.encode(t, add_special_tokens=False).ids]
    fragments = sum("\ufffd" in tok.backend_tokenizer.decode([i]) for i in ids)
    small = cmp.rows[1]
    assert row["partial_char_rate"] == pytest.approx(fragments / n)
    assert small["partial_char_rate"] > row["partial_char_rate"] and small["unk_rate"] == 0.0
    small_short = cmp.rows[1]["tokens"]
    assert row["tokens_vs_reference"] == pytest.approx(n / small_short - 1) and cmp.rows[1]["tokens_vs_reference"] == 0
    assert cmp.rows[2]["hangul_vocab_share"] > cmp.rows[0]["hangul_vocab_share"] > 0


def test_figures_are_summed_chunk_by_chunk(pair, monkeypatch):
    """A large text set is encoded in chunks (flat memory); the figures are those of one pass."""
    import koforge.tokenizers.evaluate as ev

    tokenizers, texts = pair
    whole = evaluate_tokenizers(tokenizers, {"reviews": texts}).rows
    monkeypatch.setattr(ev, "MEASURE_CHUNK", 7)
    chunked = evaluate_tokenizers(tokenizers, {"reviews": texts}).rows
    for a, b in zip(whole, chunked):
        a.pop("encode_mb_per_s"), b.pop("encode_mb_per_s")  # wall clock
        assert a == b
    as_set = evaluate_tokenizers({"small": tokenizers["small"]}, {"s": set(texts[:20])}).rows[0]  # sized, not sliceable
    assert as_set["tokens"] == evaluate_tokenizers({"small": tokenizers["small"]}, {"s": list(set(texts[:20]))}).rows[0]["tokens"]


def test_outputs(pair, tmp_path):
    tokenizers, texts = pair
    cmp = evaluate_tokenizers(tokenizers, {"reviews": texts[:20]}, reference="small")
    md = cmp.to_markdown()
    assert md.splitlines()[0].startswith("| tokenizer | text set |") and "tokens vs ref (small)" in md and "+0.0%" in md
    assert "| tokens/document | tokens/sentence |" in md and "| partial-char % |" in md
    data = json.loads(cmp.to_json(tmp_path / "c.json").read_text())
    assert data["reference"] == "small" and len(data["rows"]) == 2
    assert cmp.plot(tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_inputs(pair, tmp_path):
    tokenizers, texts = pair
    with pytest.raises(DataError, match="text set 'none' is empty"):
        evaluate_tokenizers(tokenizers, {"none": []})
    with pytest.raises(TokenizerError, match="reference 'qwen3'"):
        evaluate_tokenizers(tokenizers, {"a": texts[:2]}, reference="qwen3")
    with pytest.raises(TokenizerError, match="not found"):
        evaluate_tokenizers({"x": tmp_path / "missing"}, {"a": texts[:2]})


def test_fixed_padding_in_tokenizer_json_does_not_inflate_counts(tmp_path):
    """A tokenizer.json that pads/truncates to 128 (as all-MiniLM-L6-v2's does) still counts real tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from koforge.tokenizers.evaluate import measure

    backend = Tokenizer(models.WordLevel({"[PAD]": 0, "[UNK]": 1, "가": 2, "나": 3}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.enable_padding(length=128, pad_id=0, pad_token="[PAD]")
    backend.enable_truncation(max_length=128)
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]")
    row = measure(tok, ["가 나", "가 다 나"])
    assert row["tokens"] == 5
    assert tok.backend_tokenizer.padding is not None  # the caller's tokenizer is left as it was


def test_byte_fallback_pieces_count_as_unknown_and_only_multibyte_ones_as_partial():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from koforge.tokenizers.evaluate import measure, token_classes

    vocab = {"<unk>": 0, "<0x41>": 1, "<0xEC>": 2, "<0x95>": 3, "가": 4, "나": 5, "<sep>": 6}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.add_special_tokens(["<sep>"])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    classes = token_classes(tok)
    assert classes.unknown == {0, 1, 2, 3} and classes.partial_char == {2, 3}  # <0x41> is "A", a whole character
    row = measure(tok, ["가 <0xEC> <0x95> <0x41> 다"], classes)
    assert (row["tokens"], row["unk_rate"], row["partial_char_rate"]) == (5, 4 / 5, 2 / 5)

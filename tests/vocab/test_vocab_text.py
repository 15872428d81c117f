"""Token conventions and filters: byte-level / metaspace / WordPiece strings <-> text."""
from __future__ import annotations

import re

from koforge.vocab.text import Convention, bytes_to_unicode, decomposes_hangul, passes_filter

BYTE = Convention(model_type="BPE", style="byte-level")


def test_byte_level_round_trip_korean_and_partial_bytes():
    token = BYTE.to_token(" 안녕")
    assert token == "ĠìķĪëħķ"
    assert BYTE.to_text(token).text == " 안녕" and BYTE.to_text(token).core == "안녕"
    partial = "".join(bytes_to_unicode()[b] for b in "안".encode()[:2])
    assert not BYTE.to_text(partial).decodable


def test_metaspace_and_wordpiece_conventions():
    meta = Convention(model_type="BPE", style="metaspace")
    assert meta.to_text("▁안녕").text == " 안녕" and meta.to_token(" 안녕") == "▁안녕"
    assert not meta.to_text("<0xEC>").decodable
    wp = Convention(model_type="WordPiece", style="wordpiece", continuing_prefix="##")
    assert wp.to_text("##하세요").text == "하세요"
    assert wp.to_text("안녕").text == " 안녕"
    assert wp.to_token(" 안녕") == "안녕" and wp.to_token("하세요") == "##하세요"


def test_convention_read_from_tokenizer_json():
    spec = {"model": {"type": "BPE", "vocab": {}, "merges": []},
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split"}, {"type": "ByteLevel"}]}}
    assert Convention.from_json(spec).style == "byte-level"
    spec = {"model": {"type": "WordPiece", "continuing_subword_prefix": "##", "vocab": {}}, "pre_tokenizer": {"type": "BertPreTokenizer"}}
    assert Convention.from_json(spec).style == "wordpiece"


def test_filter_hangul_script_pattern_and_controls():
    assert passes_filter("안녕", "hangul", None)
    assert not passes_filter("안녕!", "hangul", None)
    assert not passes_filter("abc", "hangul", None) and passes_filter("abc", "any", None)
    assert not passes_filter("안\x00", "any", None) and not passes_filter("", "any", None)
    assert not passes_filter("안 녕", "any", None)
    assert passes_filter("안녕", "hangul", re.compile("[가-힣]{2,}")) and not passes_filter("안", "hangul", re.compile("[가-힣]{2,}"))


def test_decomposes_hangul_detects_bert_accent_stripping():
    from tokenizers import normalizers

    assert decomposes_hangul(normalizers.BertNormalizer(lowercase=True).normalize_str)
    assert not decomposes_hangul(normalizers.NFC().normalize_str)
    sentencepiece_style = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    assert not decomposes_hangul(sentencepiece_style.normalize_str)

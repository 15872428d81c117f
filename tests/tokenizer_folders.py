"""The check every place that writes a tokenizer folder shares: portable form, same tokenizer.

A plain module, not a conftest (see tests/compress/compress_models.py); `tests/` is on sys.path through the
root conftest.py.
"""
from __future__ import annotations

import json
import unicodedata
from pathlib import Path

TEXTS = ["안녕하세요, 한국어 문장입니다. 2024년 5월!", unicodedata.normalize("NFD", "한글 자모 분해"),
         "The quick brown fox, don't   stop.", "들여쓰기\n    def f(x):\n\treturn x", "😀 é 漢字"]


def assert_portable(folder: Path) -> dict:
    """`folder`'s tokenizer_config.json names a class transformers 4.x and 5.x both have, in keys both read."""
    config = json.loads((Path(folder) / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast", config["tokenizer_class"]  # 5.x writes TokenizersBackend
    assert not isinstance(config.get("extra_special_tokens"), list), "4.x reads extra_special_tokens only as a dict"
    assert (Path(folder) / "special_tokens_map.json").exists()
    return config


def assert_same_tokenizer(before, after: Path, texts: list[str] = TEXTS) -> None:
    """AutoTokenizer loads `after` with the ids, special tokens and chat template of `before` (a folder or a tokenizer)."""
    from transformers import AutoTokenizer

    a = AutoTokenizer.from_pretrained(str(before)) if isinstance(before, (str, Path)) else before
    b = AutoTokenizer.from_pretrained(str(after))
    specials = list(a.all_special_tokens)
    for text in list(texts) + [" ".join(specials)]:
        ids_a, ids_b = a.encode(text), b.encode(text)
        assert ids_a == ids_b, f"{text!r}: {ids_a} before, {ids_b} after"
        assert a.decode(ids_a) == b.decode(ids_b), text
    assert len(a) == len(b) and a.special_tokens_map == b.special_tokens_map
    assert sorted(a.all_special_tokens) == sorted(b.all_special_tokens)
    assert a.chat_template == b.chat_template

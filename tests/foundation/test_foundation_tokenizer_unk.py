"""`koforge tokenizer eval` counts unknown tokens that only the model of a bare tokenizer.json names."""
from __future__ import annotations

import pytest

from koforge.tokenizers.evaluate import evaluate_tokenizers


def _bare(folder, model):
    from tokenizers import Tokenizer, pre_tokenizers

    tok = Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    folder.mkdir()
    tok.save(str(folder / "tokenizer.json"))  # no tokenizer_config.json beside it to name the unknown token
    return folder / "tokenizer.json"


def test_unknown_rate_of_bare_word_level_and_unigram_tokenizers(tmp_path):
    from tokenizers import models

    word = _bare(tmp_path / "word", models.WordLevel({"[UNK]": 0, "가": 1, "나": 2}, unk_token="[UNK]"))
    unigram = _bare(tmp_path / "unigram", models.Unigram([("<unk>", 0.0), ("가", -1.0), ("나", -1.0)], unk_id=0))
    result = evaluate_tokenizers({"word": word, "unigram": unigram}, {"t": ["가 나 다 라", "가 마"]})
    for row in result.rows:  # 다, 라, 마: 3 of 6 tokens
        assert (row["tokens"], row["unk_rate"]) == (6, pytest.approx(0.5)), row

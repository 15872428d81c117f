"""load_tokenizer: koforge folders, bare tokenizer.json, shared reference tokenizers, clear failures."""
from __future__ import annotations

import shutil

import pytest

from koforge._utils.errors import TokenizerError
from koforge.tokenizers.io import load_tokenizer, tokenizer_fingerprint
from koforge.tokenizers.train import TokenizerTrainConfig, train_tokenizer


@pytest.fixture(scope="module")
def folder(assets, tmp_path_factory):
    texts = (assets / "tok_nsmc_400.txt").read_text(encoding="utf-8").splitlines()
    return train_tokenizer(texts, TokenizerTrainConfig(vocab_size=400), tmp_path_factory.mktemp("io") / "tok").path


def test_every_local_form_loads_the_same_pipeline(folder, tmp_path):
    only_json = tmp_path / "only_json"
    only_json.mkdir()
    shutil.copy(folder / "tokenizer.json", only_json / "tokenizer.json")
    forms = [folder, str(folder), folder / "tokenizer.json", only_json]
    toks = [load_tokenizer(f) for f in forms]
    ids = [t.encode("국민청원 게시판 2019", add_special_tokens=False) for t in toks]
    assert all(i == ids[0] for i in ids)
    assert len({tokenizer_fingerprint(f) for f in forms}) == 1
    assert tokenizer_fingerprint(folder).startswith("sha256:") and len(tokenizer_fingerprint(folder)) == 71
    assert load_tokenizer(toks[0]) is toks[0]


def test_unknown_paths_and_formats(tmp_path):
    with pytest.raises(TokenizerError, match="not found"):
        load_tokenizer(tmp_path / "nope")
    with pytest.raises(TokenizerError, match="not found"):
        load_tokenizer("./relative/missing")
    (tmp_path / "vocab.txt").write_text("a\nb\n")
    with pytest.raises(TokenizerError, match="not a tokenizer.json"):
        load_tokenizer(tmp_path / "vocab.txt")
    (tmp_path / "bad.json").write_text('{"not": "a tokenizer"}')
    with pytest.raises(TokenizerError, match="is not a Hugging Face tokenizer.json"):
        load_tokenizer(tmp_path / "bad.json")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(TokenizerError, match="holds no tokenizer"):
        load_tokenizer(tmp_path / "empty_dir")
    with pytest.raises(TokenizerError, match="cannot use a int"):
        load_tokenizer(3)


def test_shared_qwen3_tokenizer_loads(shared_tokenizers):
    tok = load_tokenizer(shared_tokenizers / "qwen3")
    assert len(tok) == 151_669 and tok.eos_token == "<|im_end|>"
    text = "국민청원 게시판에 글을 남깁니다."
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text and 1.2 < len(text) / len(ids) < 2.0
    bare = load_tokenizer(shared_tokenizers / "qwen3" / "tokenizer.json")
    assert bare.encode(text, add_special_tokens=False) == ids

"""load_tokenizer: koforge folders, bare tokenizer.json, shared reference tokenizers, clear failures; save_tokenizer."""
from __future__ import annotations

import json
import shutil
import time

import pytest

from koforge._utils.errors import TokenizerError
from koforge.tokenizers.io import load_tokenizer, portable_tokenizer_config, save_tokenizer, tokenizer_fingerprint
from koforge.tokenizers.train import TokenizerTrainConfig, train_tokenizer
from tokenizer_folders import assert_portable, assert_same_tokenizer


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
    (tmp_path / "empty_dir" / "spm1.model").write_bytes(b"\x00")
    with pytest.raises(TokenizerError, match="holds only spm1.model: a bare SentencePiece model loads when it is named "
                                             "tokenizer.model"):
        load_tokenizer(tmp_path / "empty_dir")
    with pytest.raises(TokenizerError, match="cannot use a int"):
        load_tokenizer(3)


def test_bare_tokenizer_json_takes_its_special_tokens_from_siblings(folder, tmp_path):
    beside = load_tokenizer(folder / "tokenizer.json")  # koforge folder: tokenizer_config.json names them
    assert (beside.eos_token, beside.bos_token, beside.name_or_path) == ("</s>", "<s>", str(folder / "tokenizer.json"))
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(folder / "tokenizer.json", alone / "tokenizer.json")
    assert load_tokenizer(alone / "tokenizer.json").eos_token is None  # nothing says which token ends a document
    (alone / "special_tokens_map.json").write_text('{"eos_token": {"content": "</s>"}, "pad_token": "<not-in-vocab>"}')
    tok = load_tokenizer(alone / "tokenizer.json")
    assert tok.eos_token == "</s>" and tok.pad_token is None and len(tok) == 400  # a missing token is not added


def test_a_mistyped_local_name_fails_fast_offline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    start = time.perf_counter()
    with pytest.raises(TokenizerError, match=r"'mytok' not found: there is no file or folder .*Hub names look like "
                                             r"'org/name'.*HF_HUB_OFFLINE is set"):
        load_tokenizer("mytok")
    assert time.perf_counter() - start < 5


def test_a_mistyped_local_name_asks_the_hub_once(tmp_path, monkeypatch, hub_online):
    monkeypatch.chdir(tmp_path)
    hub_online("missing")
    start = time.perf_counter()
    with pytest.raises(TokenizerError, match="'mytok' not found.*Nor is it a hub repository"):
        load_tokenizer("mytok")
    hub_online("unreachable")
    with pytest.raises(TokenizerError, match="'org/mytok' not found.*The hub could not be reached"):
        load_tokenizer("org/mytok")
    assert time.perf_counter() - start < 5  # no retries with backoff (about 50 s before)


def test_shared_qwen3_tokenizer_loads(shared_tokenizers):
    tok = load_tokenizer(shared_tokenizers / "qwen3")
    assert len(tok) == 151_669 and tok.eos_token == "<|im_end|>"
    text = "국민청원 게시판에 글을 남깁니다."
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text and 1.2 < len(text) / len(ids) < 2.0
    bare = load_tokenizer(shared_tokenizers / "qwen3" / "tokenizer.json")
    assert bare.encode(text, add_special_tokens=False) == ids


def test_portable_config_rewrites_only_what_transformers_4_cannot_read():
    saved = {"tokenizer_class": "Qwen2Tokenizer", "backend": "tokenizers", "eos_token": "<|im_end|>", "errors": "replace",
             "extra_special_tokens": ["<|im_start|>", "<|im_end|>"], "model_specific_special_tokens": {"image_token": "<img>"}}
    portable = portable_tokenizer_config(saved, chat_template="{{ messages }}")
    assert portable == {"tokenizer_class": "PreTrainedTokenizerFast", "backend": "tokenizers", "eos_token": "<|im_end|>",
                        "errors": "replace", "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
                        "extra_special_tokens": {"image_token": "<img>"}, "clean_up_tokenization_spaces": False,
                        "chat_template": "{{ messages }}"}
    four = {"tokenizer_class": "LlamaTokenizer", "additional_special_tokens": ["<a>"], "extra_special_tokens": {"image_token": "<img>"},
            "clean_up_tokenization_spaces": True, "chat_template": "inline"}
    assert portable_tokenizer_config(four, chat_template="file") == {**four, "tokenizer_class": "PreTrainedTokenizerFast"}
    # custom code, no tokenizer.json, or another 5.x backend: the class decides how to load, so it stays
    assert portable_tokenizer_config({"tokenizer_class": "MyTok", "auto_map": {"AutoTokenizer": ["m.MyTok", None]}})["tokenizer_class"] == "MyTok"
    assert portable_tokenizer_config({"tokenizer_class": "T5Tokenizer"}, has_tokenizer_json=False)["tokenizer_class"] == "T5Tokenizer"
    assert portable_tokenizer_config({"tokenizer_class": "T5Tokenizer", "backend": "sentencepiece"})["tokenizer_class"] == "T5Tokenizer"


def test_save_tokenizer_keeps_ids_special_tokens_and_chat_template(folder, tmp_path):
    """transformers 5 saves class TokenizersBackend and a list of extra special tokens: 4.x loads neither."""
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), eos_token="</s>", pad_token="<pad>",
                                  extra_special_tokens=["<sep>", "<cls>"], model_specific_special_tokens={"image_token": "<img>"})
    tok.chat_template = "{% for m in messages %}<sep>{{ m['content'] }}</s>{% endfor %}"
    tok.save_pretrained(str(tmp_path / "plain"))
    assert json.loads((tmp_path / "plain" / "tokenizer_config.json").read_text())["tokenizer_class"] == "TokenizersBackend"
    save_tokenizer(tok, tmp_path / "portable")
    config = assert_portable(tmp_path / "portable")
    assert config["additional_special_tokens"] == ["<sep>", "<cls>"] and config["extra_special_tokens"] == {"image_token": "<img>"}
    assert config["chat_template"] == (tmp_path / "portable" / "chat_template.jinja").read_text(encoding="utf-8")
    assert json.loads((tmp_path / "portable" / "special_tokens_map.json").read_text()) == {
        "eos_token": "</s>", "pad_token": "<pad>", "image_token": "<img>", "additional_special_tokens": ["<sep>", "<cls>"]}
    assert_same_tokenizer(tmp_path / "plain", tmp_path / "portable", ["안녕<sep>하세요<cls> <img></s>"])
    assert_same_tokenizer(tok, tmp_path / "portable")


@pytest.mark.parametrize("name", ["qwen3", pytest.param("gemma3", marks=pytest.mark.slow)])  # gemma3: 10 s
def test_shared_reference_tokenizers_save_portably(shared_tokenizers, name, tmp_path):
    """Qwen3: a model class and a list of extra specials; Gemma 3: named extras (image_token) and a processor class."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(shared_tokenizers / name))
    save_tokenizer(tok, tmp_path / name)
    assert_portable(tmp_path / name)
    assert_same_tokenizer(tok, tmp_path / name)
    if name == "gemma3":
        assert AutoTokenizer.from_pretrained(str(tmp_path / name)).image_token == tok.image_token == "<image_soft_token>"

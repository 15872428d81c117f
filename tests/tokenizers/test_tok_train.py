"""Tokenizer training: determinism, NFC, digits, whitespace, chat template, SuperBPE, SentencePiece, bad input."""
from __future__ import annotations

import json
import unicodedata

import pytest

from koforge._utils.errors import ConfigError, DataError, OutputExistsError, TokenizerError
from koforge.tokenizers.bpe import is_superword
from koforge.tokenizers.io import load_tokenizer
from koforge.tokenizers.train import TokenizerTrainConfig, train_tokenizer

KOREAN = ["안녕하세요 반갑습니다 2024년 3월", "  들여쓰기\n\t탭", "한글 ᄒᆞᆫ글 😀 é"]


@pytest.fixture(scope="module")
def corpus(assets):
    texts = (assets / "tok_nsmc_400.txt").read_text(encoding="utf-8").splitlines()
    petitions = [json.loads(line)["content"] for line in (assets / "data_petitions_12.jsonl").open(encoding="utf-8")]
    return texts + petitions


def test_same_corpus_same_vocabulary(corpus, tmp_path):
    cfg = TokenizerTrainConfig(vocab_size=700)
    a = train_tokenizer(corpus, cfg, tmp_path / "a")
    b = train_tokenizer(iter(corpus), cfg, tmp_path / "b")
    assert a.vocab_size == b.vocab_size == 700 and a.documents == len(corpus)
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "koforge_tokenizer_config.json"):
        assert (tmp_path / "a" / name).exists()


def test_folder_loads_with_auto_tokenizer_and_round_trips(corpus, tmp_path):
    from transformers import AutoTokenizer

    train_tokenizer(corpus, TokenizerTrainConfig(vocab_size=600, chat_roles=["system", "user", "assistant"]), tmp_path / "t")
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "t"))
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token) == ("<s>", "</s>", "<pad>", "<unk>")
    assert tok.convert_tokens_to_ids(["<unk>", "<s>", "</s>", "<pad>", "<|system|>"]) == [0, 1, 2, 3, 4]
    for text in KOREAN:
        assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    chat = tok.apply_chat_template([{"role": "user", "content": "안녕"}], tokenize=False, add_generation_prompt=True)
    assert chat == "<|user|>안녕<|end|><|assistant|>"
    ids = tok.apply_chat_template([{"role": "user", "content": "안녕"}], tokenize=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    assert ids[0] == tok.convert_tokens_to_ids("<|user|>") and ids[-1] == tok.convert_tokens_to_ids("<|end|>")


def test_folder_config_is_the_form_transformers_4_and_5_both_load(corpus, tmp_path):
    """transformers 5 would save class TokenizersBackend and a list-valued extra_special_tokens, which 4.x rejects."""
    from transformers import AutoTokenizer

    config = TokenizerTrainConfig(vocab_size=300, chat_roles=["user", "assistant"], extra_special_tokens=["<sep>"])
    train_tokenizer(corpus, config, tmp_path / "t")
    saved = json.loads((tmp_path / "t" / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert saved["tokenizer_class"] == "PreTrainedTokenizerFast" and "extra_special_tokens" not in saved
    assert saved["additional_special_tokens"] == ["<|user|>", "<|assistant|>", "<|end|>", "<sep>"]
    assert saved["chat_template"] == (tmp_path / "t" / "chat_template.jinja").read_text(encoding="utf-8")
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "t"))
    assert tok.eos_token == "</s>" and tok.tokenize("<sep>") == ["<sep>"]
    assert tok.apply_chat_template([{"role": "user", "content": "안녕"}], tokenize=False) == "<|user|>안녕<|end|>"


def test_nfc_digits_and_whitespace(corpus, tmp_path):
    tok = load_tokenizer(train_tokenizer(corpus, TokenizerTrainConfig(vocab_size=600, whitespace="preserve"), tmp_path / "t").path)
    text = "한국어 정규화"
    assert tok.encode(unicodedata.normalize("NFD", text)) == tok.encode(text)
    assert tok.tokenize("12345") == ["1", "2", "3", "4", "5"]
    assert tok.convert_ids_to_tokens(tok.encode("def f():\n        return 1")).count("\n        ") == 1
    keep = load_tokenizer(train_tokenizer(["1234 5678 1234"] * 50, TokenizerTrainConfig(vocab_size=300, digits="keep"), tmp_path / "k").path)
    assert len(keep.tokenize("1234")) == 1


@pytest.mark.parametrize("kind", ["bpe", "superbpe"])
def test_preserved_whitespace_runs_are_not_learned_twice(corpus, tmp_path, kind):
    """With indentation in the corpus, the trainer also learned each run as a raw-space vocab entry sharing the added
    token's id: 5 of 600 ids were lost (595 tokens) and merges were spent on text the byte-level model never sees."""
    code = ["def f(x):\n    return x  +  1    # 주석    입니다\n\tpass"] * 30
    cfg = TokenizerTrainConfig(kind=kind, vocab_size=600, whitespace="preserve")
    r = train_tokenizer(corpus + code, cfg, tmp_path / "t")
    spec = json.loads((r.path / "tokenizer.json").read_text(encoding="utf-8"))
    ids = list(spec["model"]["vocab"].values()) + [a["id"] for a in spec["added_tokens"] if a["content"] not in spec["model"]["vocab"]]
    assert r.vocab_size == len(load_tokenizer(r.path)) == 600 and sorted(ids) == list(range(600))
    raw_space = [t for t in spec["model"]["vocab"] if any(c in t for c in " \t\n")]
    assert not raw_space, f"raw whitespace in the byte-level vocabulary: {raw_space}"
    tok = load_tokenizer(r.path)
    for text in code[:1] + ["a    b\n\t\tc"]:
        assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


@pytest.mark.parametrize("kind", ["sentencepiece-bpe", "sentencepiece-unigram"])
def test_sentencepiece_preserved_whitespace_runs_are_single_tokens(corpus, tmp_path, kind):
    """SentencePiece extracts user-defined symbols before segmenting; the converted BPE has no merges for them, so
    "\\n    " came out as <0x0A> + "▁▁▁▁" although whitespace=preserve guarantees each run as one token."""
    from koforge.tokenizers.train import WHITESPACE_RUNS

    code = ["def f(x):\n    return x  +  1\n\tpass"] * 30
    cfg = TokenizerTrainConfig(kind=kind, vocab_size=1200, whitespace="preserve", character_coverage=0.99)
    r = train_tokenizer(corpus + code, cfg, tmp_path / "sp")
    tok = load_tokenizer(r.path)
    assert r.vocab_size == len(tok) == 1200
    for run in WHITESPACE_RUNS:
        text = f"x{run}y"
        ids = tok.encode(text, add_special_tokens=False)
        assert len(ids) == 3 and tok.decode(ids) == text, (run, tok.convert_ids_to_tokens(ids))


def test_superbpe_learns_superwords(corpus, tmp_path):
    r = train_tokenizer(corpus, TokenizerTrainConfig(kind="superbpe", vocab_size=900, superbpe_transition=600), tmp_path / "s")
    assert r.vocab_size == 900 and r.stats["stage2_tokens"] > 0 and r.stats["superword_tokens"] > 0
    tok = load_tokenizer(r.path)
    vocab = tok.get_vocab()
    assert any(is_superword(t) for t in vocab)
    assert is_superword("Ġ수Ġìŀĺ") and not is_superword("Ġ수") and not is_superword("ĠĠ")
    for text in KOREAN + corpus[:50]:
        assert tok.decode(tok.encode(text)) == unicodedata.normalize("NFC", text)
    plain = load_tokenizer(train_tokenizer(corpus, TokenizerTrainConfig(vocab_size=900), tmp_path / "p").path)
    n_super = sum(len(tok.encode(t)) for t in corpus)
    n_plain = sum(len(plain.encode(t)) for t in corpus)
    assert n_super < n_plain


def test_sentencepiece_too_small_for_the_characters_says_to_raise_vocab_size(corpus, tmp_path):
    with pytest.raises(TokenizerError, match=r"vocab_size=300 is below the \d+ pieces it needs.*Use vocab_size >= \d+, "
                                             r"or lower character_coverage"):
        train_tokenizer(corpus, TokenizerTrainConfig(kind="sentencepiece-bpe", vocab_size=300), tmp_path / "sp")
    assert not (tmp_path / "sp").exists()


SPACE = "\u2581"


@pytest.mark.parametrize("kind", ["sentencepiece-unigram", "sentencepiece-bpe"])
def test_sentencepiece_backends(corpus, tmp_path, kind):
    r = train_tokenizer(corpus, TokenizerTrainConfig(kind=kind, vocab_size=1500, character_coverage=0.99,
                                                              chat_roles=["user", "assistant"]), tmp_path / "sp")
    tok = load_tokenizer(r.path)
    assert r.vocab_size == len(tok) == 1500
    for text in KOREAN:  # byte fallback: no unknown tokens, exact round trip
        ids = tok.encode(text, add_special_tokens=False)
        assert tok.unk_token_id not in ids and tok.decode(ids) == text
    assert tok.tokenize("<|user|>") == ["<|user|>"]
    # Text beside special tokens gets no stray "▁" token, so a chat template decodes to itself.
    chat = [{"role": "user", "content": "안녕 하세요"}, {"role": "assistant", "content": "네"}]
    text = tok.apply_chat_template(chat, tokenize=False)
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text and SPACE not in tok.convert_ids_to_tokens(ids)[-3:]
    for text in ("첫 문서<|end|>둘째 문서", "  앞 공백 둘", "<|user|>바로"):
        ids = tok.encode(text, add_special_tokens=False)
        assert tok.decode(ids) == text and tok.convert_ids_to_tokens(ids).count(SPACE) <= text.count(" ")


def test_bad_inputs(corpus, tmp_path):
    with pytest.raises(ConfigError, match="below the 256-byte alphabet plus 4"):
        TokenizerTrainConfig(vocab_size=259)
    with pytest.raises(ConfigError, match="kind="):
        TokenizerTrainConfig(kind="wordpiece")
    with pytest.raises(ConfigError, match="superbpe_transition"):
        TokenizerTrainConfig(kind="superbpe", vocab_size=1000, superbpe_transition=1000)
    with pytest.raises(DataError, match="empty corpus"):
        train_tokenizer(["", "  "], TokenizerTrainConfig(vocab_size=300), tmp_path / "e")
    assert not (tmp_path / "e").exists()
    (tmp_path / "exists").mkdir()
    (tmp_path / "exists" / "keep.txt").write_text("good", encoding="utf-8")
    with pytest.raises(OutputExistsError):
        train_tokenizer(corpus, TokenizerTrainConfig(vocab_size=300), tmp_path / "exists")
    assert (tmp_path / "exists" / "keep.txt").read_text() == "good"
    train_tokenizer(corpus[:20], TokenizerTrainConfig(vocab_size=300), tmp_path / "exists", overwrite=True)
    assert not (tmp_path / "exists" / "keep.txt").exists()


def test_one_string_is_refused_where_texts_or_named_sets_are_expected(corpus, tmp_path):
    """A string iterates as one-character texts: a file name given as the corpus trained on its letters."""
    from koforge.tokenizers.evaluate import evaluate_tokenizers

    with pytest.raises(ConfigError, match="texts must be an iterable of texts, got one str .*read_texts"):
        train_tokenizer("corpus.txt", TokenizerTrainConfig(vocab_size=300), tmp_path / "t")
    assert not (tmp_path / "t").exists()
    tok = train_tokenizer(corpus, TokenizerTrainConfig(vocab_size=300), tmp_path / "ok").path
    with pytest.raises(ConfigError, match="text set 'x' must be a list of texts, got str"):
        evaluate_tokenizers({"a": tok}, {"x": "안녕하세요 반갑습니다"})
    with pytest.raises(ConfigError, match="tokenizers and texts are mappings"):
        evaluate_tokenizers([tok], {"x": ["안녕하세요"]})

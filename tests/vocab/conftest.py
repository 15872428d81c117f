"""Tiny tokenizers and models for the vocab tests (built in seconds from tests/assets/vocab_*.txt)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch


def _texts(assets: Path, name: str) -> list[str]:
    return [line for line in (assets / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def byte_bpe(texts: list[str], size: int, specials: list[str]):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=size, special_tokens=specials, show_progress=False,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=specials[0], pad_token=specials[0])


def wordpiece(texts: list[str], size: int):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)  # strips accents: NFD, Hangul -> jamo
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=size, special_tokens=specials, show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")


def sentencepiece_style_bpe(texts: list[str], size: int, alphabet_texts: list[str]):
    """A Llama-2 / Mistral-style BPE: spaces become "▁" in the normalizer, which also prepends one."""
    from tokenizers import Tokenizer, decoders, models, normalizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    alphabet = sorted({ch for t in alphabet_texts for ch in t.replace(" ", "▁")} | {"▁"})
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=size, special_tokens=["<unk>", "</s>"],
                                                       initial_alphabet=alphabet, show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="</s>")


@pytest.fixture(scope="session")
def ko_texts(assets) -> list[str]:
    return _texts(assets, "vocab_ko.txt")


@pytest.fixture(scope="session")
def en_texts(assets) -> list[str]:
    return _texts(assets, "vocab_en.txt")


@pytest.fixture(scope="session")
def tok_dirs(tmp_path_factory, ko_texts, en_texts) -> dict[str, Path]:
    """Saved tokenizers: `base` (byte-level BPE, mostly English), `donor` (byte-level BPE, Korean), `wp` (WordPiece),
    `sp` (SentencePiece-style BPE, mostly English, every Hangul syllable of the Korean texts in its alphabet)."""
    root = tmp_path_factory.mktemp("toks")
    out = {}
    for name, tok in {
        "base": byte_bpe(en_texts + ko_texts[:10], 500, ["<|endoftext|>", "<|im_start|>"]),
        "donor": byte_bpe(ko_texts, 900, ["</s>"]),
        "wp": wordpiece(en_texts + ko_texts[:10], 400),
        "sp": sentencepiece_style_bpe(en_texts + ko_texts[:10], 1200, ko_texts),
    }.items():
        tok.save_pretrained(root / name)
        out[name] = root / name
    return out


def tiny_model(arch: str, vocab_size: int):
    """A 2-layer random model of `arch` (qwen3 untied, llama tied, exaone4, bert)."""
    import transformers as tf

    torch.manual_seed(0)
    if arch == "bert":
        cfg = tf.BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=64, max_position_embeddings=256)
        return tf.BertModel(cfg)
    common = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    if arch == "qwen3":
        return tf.Qwen3ForCausalLM(tf.Qwen3Config(**common, head_dim=8, tie_word_embeddings=False))
    if arch == "llama":
        return tf.LlamaForCausalLM(tf.LlamaConfig(**common, tie_word_embeddings=True))
    if arch == "exaone4":
        return tf.Exaone4ForCausalLM(tf.Exaone4Config(**common, tie_word_embeddings=False))
    raise ValueError(arch)


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory, tok_dirs) -> dict[str, Path]:
    """Saved tiny models with their tokenizer: qwen3, llama, exaone4 on `base`; bert on `wp`."""
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("models")
    out = {}
    for arch in ("qwen3", "llama", "exaone4", "bert"):
        tok = AutoTokenizer.from_pretrained(tok_dirs["wp" if arch == "bert" else "base"])
        model = tiny_model(arch, len(tok))
        model.save_pretrained(root / arch)
        tok.save_pretrained(root / arch)
        out[arch] = root / arch
    return out


@pytest.fixture(scope="session")
def make_tiny_model():
    """The `tiny_model(arch, vocab_size)` factory."""
    return tiny_model

"""SentencePiece (unigram and BPE) training, converted to a `tokenizers` pipeline.

SentencePiece is trained in memory with byte fallback (no unknown tokens for
any UTF-8 input), `identity` normalisation (koforge applies NFC itself so
that the converted pipeline and training see the same text) and no
whitespace collapsing (so decoding gives the input back). The model is then
rebuilt as a Hugging Face `tokenizers` Unigram or BPE model with Gemma's
pipeline: spaces to "▁", byte-fallback decoding, and no dummy "▁" prefix. A
prefix would be added to every stretch of text between special tokens (the
normalizer runs on each), so each chat turn would get a stray "▁" token and
decode with a space the template never wrote; Llama 2's "first only" fix
loses a leading space instead. Special tokens are control symbols, so text
never produces them.
"""
from __future__ import annotations

import io
import os
import re
import unicodedata
from typing import Any, Iterable, Iterator

from koforge._utils.errors import TokenizerError
from koforge.tokenizers.train import WHITESPACE_RUNS, TokenizerTrainConfig

SPACE = "\u2581"


def _sentences(texts: Iterable[str], form: str) -> Iterator[str]:
    for text in texts:
        if form != "none":
            text = unicodedata.normalize(form.upper(), text)
        for line in text.split("\n"):
            if line.strip():
                yield line


def _train_proto(texts: Iterable[str], config: TokenizerTrainConfig) -> bytes:
    import sentencepiece as spm

    named = [config.unk_token or "<unk>", config.bos_token, config.eos_token, config.pad_token]
    ids = {"unk_id": 0}
    next_id = 1
    for key, piece in zip(("bos", "eos", "pad"), named[1:]):
        ids[f"{key}_id"] = next_id if piece else -1
        ids[f"{key}_piece"] = piece or f"<{key}>"
        next_id += bool(piece)
    user = [WHITESPACE_RUNS[i].replace(" ", SPACE) for i in range(len(WHITESPACE_RUNS))] if config.whitespace == "preserve" else []
    model = io.BytesIO()
    spm.set_random_generator_seed(config.seed)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=_sentences(texts, config.normalization), model_writer=model,
            model_type=config.kind.split("-")[1], vocab_size=config.vocab_size,
            character_coverage=config.character_coverage, byte_fallback=True, split_digits=config.digits == "split",
            normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=False,
            allow_whitespace_only_pieces=config.whitespace == "preserve", max_sentence_length=1 << 16,
            input_sentence_size=config.input_sentence_size, shuffle_input_sentence=True, seed_sentencepiece_size=1_000_000,
            control_symbols=config.chat_tokens + list(config.extra_special_tokens), user_defined_symbols=user,
            unk_piece=named[0], num_threads=max(1, min(8, os.cpu_count() or 1)),
            minloglevel=2, hard_vocab_limit=False, **ids)
    except RuntimeError as e:
        raise TokenizerError(_training_failure(str(e), config)) from None
    return model.getvalue()


def _training_failure(message: str, config: TokenizerTrainConfig) -> str:
    """SentencePiece's error without its C++ source location, and the fix that applies."""
    first = message.splitlines()[0]
    reason = first.split("] ", 1)[1] if "] " in first else first
    required = re.search(r"required_chars\. \d+ vs (\d+)", reason)
    if required:
        # every character that character_coverage keeps must be a piece, so a small vocabulary cannot hold them
        needed = required.group(1)
        return (f"SentencePiece training failed: vocab_size={config.vocab_size} is below the {needed} pieces it needs "
                f"(every character that character_coverage={config.character_coverage} keeps, plus the special tokens). "
                f"Use vocab_size >= {needed}, or lower character_coverage (e.g. 0.99) so that rare characters use byte fallback.")
    return (f"SentencePiece training failed: {reason.rstrip('.')}. "
            "Check that the corpus holds enough distinct text for this vocab_size.")


def _bpe_merges(vocab: dict[str, int], pieces: list[str]) -> list[tuple[str, str]]:
    """Merges of a SentencePiece BPE model, ordered by the rank of the merged piece (as transformers' extractor)."""
    merges = []
    for piece in pieces:
        if len(piece) < 2:
            continue
        found = [(piece[:i], piece[i:]) for i in range(1, len(piece)) if piece[:i] in vocab and piece[i:] in vocab]
        found.sort(key=lambda ab: (vocab[ab[0]], vocab[ab[1]]))
        merges.extend((a, b, vocab[piece]) for a, b in found)  # type: ignore[misc]
    merges.sort(key=lambda m: (m[2], vocab[m[0]], vocab[m[1]]))  # type: ignore[index]
    return [(a, b) for a, b, _ in merges]  # type: ignore[misc]


def train_sentencepiece(texts: Iterable[str], config: TokenizerTrainConfig) -> Any:
    """Train SentencePiece and return the equivalent `tokenizers.Tokenizer`."""
    import sentencepiece as spm
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers

    proto = _train_proto(texts, config)
    sp = spm.SentencePieceProcessor(model_proto=proto)
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    if config.kind == "sentencepiece-unigram":
        model = models.Unigram([(p, sp.get_score(i)) for i, p in enumerate(pieces)], unk_id=sp.unk_id(), byte_fallback=True)
    else:
        vocab = {p: i for i, p in enumerate(pieces)}
        mergeable = [p for i, p in enumerate(pieces) if sp.is_unknown(i) is False and not sp.is_control(i) and not sp.is_byte(i)]
        model = models.BPE(vocab=vocab, merges=_bpe_merges(vocab, mergeable), unk_token=pieces[sp.unk_id()],
                           byte_fallback=True, fuse_unk=True)
    tok = Tokenizer(model)
    steps = [normalizers.NFC()] if config.normalization == "nfc" else [normalizers.NFKC()] if config.normalization == "nfkc" else []
    tok.normalizer = normalizers.Sequence(steps + [normalizers.Replace(" ", SPACE)])
    tok.decoder = decoders.Sequence([decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in config.special_tokens])
    if config.whitespace == "preserve":
        # SentencePiece extracts user-defined symbols before segmenting, but the converted BPE has no merges that
        # build "\n▁▁▁▁": matched as added tokens on the normalised text, each run keeps its own piece id.
        tok.add_tokens([AddedToken(w.replace(" ", SPACE), normalized=True) for w in WHITESPACE_RUNS])
    return tok

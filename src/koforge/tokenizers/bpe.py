"""Byte-level BPE and SuperBPE pipelines on the Hugging Face `tokenizers` library.

Pipeline stages are separate objects, assembled here from named choices:
NFC is a normaliser (decomposed Hangul becomes syllables before any merge),
digit splitting a pre-tokeniser, the GPT-2 byte-level regex the word splitter,
and byte-level decoding guarantees `decode(encode(x)) == x` for any string
(modulo the normaliser).

SuperBPE (Liu et al., 2025, "SuperBPE: Space Travel for Language Models"):
stage 1 is ordinary byte-level BPE up to the transition size `t`; stage 2
lifts whitespace pre-tokenisation (chunks now end only at newlines, after
sentence-final punctuation and, with `digits="split"`, at digits) and
continues merging, so tokens such as " 수 있습니다" or "하고 있습니다."
spanning several words are learned, but never across sentences. Every
stage-2 chunk boundary is also a stage-1 boundary. As in the paper, a
superword spans at most `superbpe_max_words` words (4): the trainer is asked
for ~10% spare merges and a merge making a longer token is dropped, with the
merges built on it (the counts of the merges after it were taken as if it
had happened, a small approximation: 4 of 16K merges on the bench corpus).
Stage 2 may learn from long documents only (`superbpe_stage2_min_chars`).
Measured on Korean at 32K, superwords save ~7% tokens on formal text, and
no variant tried reached the -15% of issue 2: see bench/tokenizer_efficiency.py.
Stage 2 re-uses the Rust trainer: every stage-1 token becomes one private-use
character, each chunk of the corpus is rewritten as its stage-1 token
sequence, and the new merges are translated back. The final model's merge list is stage 1's
followed by stage 2's, so encoding reproduces stage 1 inside each word before
any superword merge, as in the paper.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import unicodedata
from pathlib import Path
from typing import Any, Iterable, Iterator

from koforge._utils.errors import DataError, TokenizerError
from koforge.tokenizers.train import WHITESPACE_RUNS, TokenizerTrainConfig

_NEWLINES = r"\s*\n\s*"
_SENTENCE_END = r"(?<=[.!?。？！])[^\S\n]+"  # the space after ". " starts the next chunk, as in stage 1
_PUA = 0xF0000  # Supplementary Private Use Area-A (65,534 code points), then -B
_PUA_MAX = 2 * 65534


def _show_progress() -> bool:
    # The Rust trainer's bars print bare newlines to stdout when it is not a terminal (a pipe, a log file).
    return os.environ.get("KOFORGE_PROGRESS", "1") != "0" and sys.stdout.isatty()


def _normalizer(config: TokenizerTrainConfig):
    from tokenizers import normalizers

    return {"nfc": normalizers.NFC, "nfkc": normalizers.NFKC}.get(config.normalization, lambda: None)()


def superword_chunker(config: TokenizerTrainConfig) -> list:
    """SuperBPE stage-2 chunking: digits (when split), newline runs, and sentence ends."""
    from tokenizers import Regex, pre_tokenizers

    steps = [pre_tokenizers.Digits(individual_digits=True)] if config.digits == "split" else []
    return steps + [pre_tokenizers.Split(Regex(_NEWLINES), behavior="isolated"),
                    pre_tokenizers.Split(Regex(_SENTENCE_END), behavior="merged_with_next")]


def pre_tokenizer(config: TokenizerTrainConfig, *, superwords: bool = False):
    """The byte-level pre-tokeniser: digits, then words (BPE, SuperBPE stage 1) or sentence chunks (SuperBPE)."""
    from tokenizers import pre_tokenizers

    if superwords:
        return pre_tokenizers.Sequence(superword_chunker(config) + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    steps = [pre_tokenizers.Digits(individual_digits=True)] if config.digits == "split" else []
    steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True))
    return pre_tokenizers.Sequence(steps)


def _assemble(model: Any, config: TokenizerTrainConfig, *, superwords: bool = False, whitespace_runs: bool = True) -> Any:
    from tokenizers import AddedToken, Tokenizer, decoders

    tok = Tokenizer(model)
    norm = _normalizer(config)
    if norm is not None:
        tok.normalizer = norm
    tok.pre_tokenizer = pre_tokenizer(config, superwords=superwords)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in config.special_tokens])
    if whitespace_runs and config.whitespace == "preserve":
        tok.add_tokens([AddedToken(w, normalized=False) for w in WHITESPACE_RUNS])
    return tok


def _ws_budget(config: TokenizerTrainConfig) -> int:
    return len(WHITESPACE_RUNS) if config.whitespace == "preserve" else 0


def train_byte_bpe(batches: Iterable[list[str]], config: TokenizerTrainConfig, vocab_size: int | None = None) -> Any:
    """Byte-level BPE over `batches` of texts; returns a `tokenizers.Tokenizer`."""
    from tokenizers import models, pre_tokenizers, trainers

    size = (vocab_size or config.vocab_size) - _ws_budget(config)
    # The runs are added after training: added before, the trainer sees each as a raw-space word (no byte-level
    # mapping) and learns it again as a model entry sharing the added token's id, leaving the vocabulary short.
    tok = _assemble(models.BPE(), config, whitespace_runs=False)
    trainer = trainers.BpeTrainer(vocab_size=size, min_frequency=config.min_frequency, special_tokens=config.special_tokens,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=_show_progress(),
                                  max_token_length=config.max_token_length)
    tok.train_from_iterator(batches, trainer=trainer)
    if config.whitespace == "preserve":
        from tokenizers import AddedToken

        tok.add_tokens([AddedToken(w, normalized=False) for w in WHITESPACE_RUNS])
    return tok


def _byte_decoder() -> dict[str, int]:
    from koforge.tokenizers.bytelevel import bytes_to_unicode

    return {c: b for b, c in bytes_to_unicode().items()}


_BYTES = _byte_decoder()


def token_text(token: str) -> str:
    """The text a byte-level token stands for (partial UTF-8 sequences dropped)."""
    return bytes(_BYTES.get(ch, 0x3F) for ch in token).decode("utf-8", errors="ignore")


def is_superword(token: str) -> bool:
    """Whether a byte-level token spans a word boundary (whitespace after a non-space character)."""
    text = token_text(token).lstrip()
    return any(ch.isspace() for ch in text.rstrip()) if text else False


def _spool(texts: Iterable[str], folder: Path) -> tuple[Path, Iterator[list[str]]]:
    path = folder / "corpus.jsonl"

    def batches() -> Iterator[list[str]]:
        with open(path, "w", encoding="utf-8") as f:
            batch: list[str] = []
            for text in texts:
                f.write(json.dumps(text, ensure_ascii=False) + "\n")
                batch.append(text)
                if len(batch) == 1000:
                    yield batch
                    batch = []
            if batch:
                yield batch

    return path, batches()


def _read_spool(path: Path, size: int = 2000, decode: Any = json.loads) -> Iterator[list[str]]:
    """Batches of a spool file's lines, each decoded (JSON texts; stage-2 sequences are plain lines)."""
    with open(path, encoding="utf-8") as f:
        batch = []
        for line in f:
            batch.append(decode(line))
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch


def _map(token_id: int) -> str:
    return chr(_PUA + token_id if token_id < 65534 else _PUA + 65536 + token_id - 65534)


def _unmap(ch: str) -> int:
    offset = ord(ch) - _PUA
    return offset if offset < 65534 else offset - 2


def _stage2_sequences(spool: Path, stage1: Any, config: TokenizerTrainConfig, alphabet: set[str]) -> Iterator[list[str]]:
    """Each multi-token chunk of the corpus as a string of one private-use character per stage-1 token."""
    from tokenizers import pre_tokenizers

    chunker = pre_tokenizers.Sequence(superword_chunker(config))
    n_special = len(config.special_tokens)
    n_model = stage1.get_vocab_size(with_added_tokens=False)
    form = config.normalization.upper()
    for docs in _read_spool(spool):
        chunks = []
        for doc in docs:
            if len(doc) < config.superbpe_stage2_min_chars:
                continue
            doc = doc if form == "NONE" else unicodedata.normalize(form, doc)
            chunks.extend(c for c, _ in chunker.pre_tokenize_str(doc) if len(c) > 1)
        out = []
        for enc in stage1.encode_batch(chunks, add_special_tokens=False):
            ids = enc.ids
            if len(ids) < 2 or min(ids) < n_special:
                continue
            # added tokens (preserved whitespace runs) are no BPE entries: stage 2 learns only between them
            for run in _model_runs(ids, n_model):
                s = "".join(map(_map, run))
                alphabet.update(s)
                out.append(s)
        yield out


def _model_runs(ids: list[int], n_model: int) -> Iterator[list[int]]:
    """The stretches of at least two ids below `n_model` (BPE model entries) between added-token ids."""
    run: list[int] = []
    for i in ids + [n_model]:
        if i < n_model:
            run.append(i)
            continue
        if len(run) > 1:
            yield run
        run = []


def superword_words(token: str) -> int:
    """How many whitespace-separated words the text of a byte-level token holds."""
    return len(token_text(token).split())


def _spool_sequences(batches: Iterable[list[str]], path: Path) -> int:
    """Write stage-2 sequences one per line (private-use characters hold no newline); returns how many."""
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for batch in batches:
            f.writelines(s + "\n" for s in batch)
            n += len(batch)
    return n


def _train_stage2(sequences: Path, alphabet: set[str], budget: int, config: TokenizerTrainConfig) -> list[tuple[str, str]]:
    from tokenizers import Tokenizer, models, trainers

    stage2 = Tokenizer(models.BPE())
    trainer = trainers.BpeTrainer(vocab_size=len(alphabet) + budget, min_frequency=config.min_frequency,
                                  show_progress=_show_progress(), max_token_length=config.max_token_length)
    stage2.train_from_iterator(_read_spool(sequences, decode=lambda line: line[:-1]), trainer=trainer)
    return [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in json.loads(stage2.to_str())["model"]["merges"]]


def _keep_merges(stage2: list[tuple[str, str]], translate: Any, vocab: dict[str, int], merges: list, n_new: int,
                 max_words: int | None) -> tuple[int, int]:
    """Append translated stage-2 merges to `vocab`/`merges` until `n_new` tokens are added.

    A merge whose token would span more than `max_words` words is dropped, and
    so is every later merge built on a dropped token. Returns (added, dropped).
    """
    added = dropped = 0
    for a, b in stage2:
        if added >= n_new:
            break
        left, right = translate(a), translate(b)
        if left not in vocab or right not in vocab or (max_words is not None and superword_words(left + right) > max_words):
            dropped += 1
            continue
        merges.append((left, right))
        if left + right not in vocab:
            vocab[left + right] = len(vocab)
            added += 1
    return added, dropped


def train_superbpe(texts: Iterable[str], config: TokenizerTrainConfig) -> tuple[Any, dict[str, Any]]:
    """Two-stage SuperBPE; returns the tokenizer and superword statistics."""
    from tokenizers import models

    t = config.transition_size
    if t - _ws_budget(config) > _PUA_MAX:
        raise TokenizerError(f"superbpe_transition={t} is above the {_PUA_MAX} tokens SuperBPE stage 2 can map; lower it.")
    # The corpus and its stage-2 sequences are spooled to disk and streamed to each trainer pass, so only the
    # trainers' own counts of distinct words and chunks are held in memory.
    with tempfile.TemporaryDirectory(prefix="koforge-superbpe-") as tmp:
        spool, first_pass = _spool(texts, Path(tmp))
        stage1 = train_byte_bpe(first_pass, config, vocab_size=t)
        s1 = json.loads(stage1.to_str())["model"]
        alphabet: set[str] = set()
        sequences = Path(tmp) / "stage2.txt"
        if not _spool_sequences(_stage2_sequences(spool, stage1, config, alphabet), sequences):
            raise DataError(f"SuperBPE stage 2 has no text: no document of at least superbpe_stage2_min_chars="
                            f"{config.superbpe_stage2_min_chars} characters holds two stage-1 tokens. Lower it or add longer documents.")
        n_new = config.vocab_size - stage1.get_vocab_size(with_added_tokens=True)
        inverse = {i: tok for tok, i in s1["vocab"].items()}

        def translate(s: str) -> str:
            return "".join(inverse[_unmap(c)] for c in s)

        # The word limit drops a few stage-2 merges (and those built on them): ask the trainer for some spare
        # merges and, in the rare case they do not suffice, train again with more.
        spare = 1.0 if config.superbpe_max_words is None else 1.1
        while True:
            vocab = dict(s1["vocab"])
            merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in s1["merges"]]
            budget = int(n_new * spare) + 16
            stage2 = _train_stage2(sequences, alphabet, budget, config)
            added, dropped = _keep_merges(stage2, translate, vocab, merges, n_new, config.superbpe_max_words)
            if added >= n_new or len(stage2) < budget or spare >= 4:  # done, or the corpus has no more pairs to merge
                break
            spare *= 2
    tok = _assemble(models.BPE(vocab=vocab, merges=merges), config, superwords=True)
    superwords = sum(map(is_superword, vocab))
    return tok, {"transition_vocab_size": t, "stage2_tokens": added, "stage2_dropped_merges": dropped,
                 "superword_tokens": superwords, "superword_vocab_share": round(superwords / max(1, len(vocab)), 4)}

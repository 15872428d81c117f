"""Train a tokenizer and write it as a Hugging Face tokenizer folder.

One config (`TokenizerTrainConfig`) and one entry point (`train_tokenizer`)
for every backend:

- `bpe`: byte-level BPE with the Hugging Face `tokenizers` library (no unknown
  tokens, exact round trip of any Unicode string);
- `superbpe`: SuperBPE (Liu et al., 2025), byte-level BPE trained in two
  stages so that frequent multi-word "superword" tokens are learned
  (see `koforge.tokenizers.bpe`);
- `sentencepiece-unigram` / `sentencepiece-bpe`: SentencePiece with byte
  fallback, converted to a `tokenizers` pipeline.

The output folder (`tokenizer.json`, `tokenizer_config.json`,
`special_tokens_map.json`, and `chat_template.jinja` when chat roles are
configured) loads with `transformers.AutoTokenizer.from_pretrained` in
transformers 4.x and 5.x alike: it is written by
`koforge.tokenizers.io.save_tokenizer` (class `PreTrainedTokenizerFast`, extra
special tokens as `additional_special_tokens`), not as transformers 5 would
save it (class `TokenizersBackend` and a list-valued `extra_special_tokens`,
which 4.x rejects). The resolved config and training statistics are written
beside it. The folder appears only when training succeeded; an existing one is
never replaced unless `overwrite=True`, and an output path that cannot be
created is refused before training starts.
"""
from __future__ import annotations

import dataclasses
import itertools
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, List, Optional, Sequence

from koforge._utils.errors import ConfigError, DataError
from koforge._utils.io import atomic_dir, check_output, write_json
from koforge.config import save_config
from koforge.tokenizers.io import save_tokenizer

KINDS = ("bpe", "superbpe", "sentencepiece-unigram", "sentencepiece-bpe")
BYTE_ALPHABET = 256
WHITESPACE_RUNS = [" " * n for n in (2, 3, 4, 6, 8, 12, 16)] + ["\t" * n for n in (1, 2, 3, 4)] + \
    ["\n" + " " * n for n in (2, 4, 8, 12, 16)] + ["\n" + "\t" * n for n in (1, 2, 3)]
"""Indentation runs that `whitespace="preserve"` guarantees as single tokens (code)."""


@dataclasses.dataclass(kw_only=True)
class TokenizerTrainConfig:
    """What to train: backend, size, special tokens and the Korean-specific pipeline choices."""

    kind: str = "bpe"
    """Backend: bpe (byte-level), superbpe, sentencepiece-unigram or sentencepiece-bpe."""
    vocab_size: int = 32000
    """Target vocabulary size, special tokens included."""
    min_frequency: int = 2
    """A pair must occur this often to be merged (BPE backends)."""
    normalization: str = "nfc"
    """Unicode normaliser: nfc (decomposed Hangul jamo become syllables), nfkc, or none."""
    digits: str = "split"
    """split: every digit is its own pre-token (better arithmetic, no number-specific tokens); keep: digit runs merge."""
    whitespace: str = "default"
    """default: whitespace runs are learned only if frequent; preserve: indentation runs are guaranteed tokens (code)."""
    bos_token: Optional[str] = "<s>"
    """Beginning-of-sequence token (None: none)."""
    eos_token: Optional[str] = "</s>"
    """End-of-sequence token, placed between documents by `koforge data pack`."""
    pad_token: Optional[str] = "<pad>"
    """Padding token (None: none)."""
    unk_token: Optional[str] = "<unk>"
    """Unknown token (never produced by byte-level BPE; used by SentencePiece only without byte fallback)."""
    chat_roles: List[str] = dataclasses.field(default_factory=list)
    """Chat roles, e.g. [system, user, assistant]: adds <|role|> and <|end|> tokens and a chat template."""
    extra_special_tokens: List[str] = dataclasses.field(default_factory=list)
    """More special tokens, each a single id never split."""
    superbpe_transition: Optional[int] = None
    """SuperBPE: vocabulary size where stage 1 (subwords) stops and superword merging starts (None: 90% of vocab_size)."""
    superbpe_max_words: Optional[int] = 4
    """SuperBPE: longest superword in whitespace-separated words, as in the paper (None: no limit)."""
    superbpe_stage2_min_chars: int = 0
    """SuperBPE: stage 2 learns superwords only from documents at least this long (0: all, as in the paper).
    E.g. 200 leaves out short reviews and chat lines, for a tokenizer aimed at long formal prose."""
    max_token_length: Optional[int] = None
    """Longest token in characters (BPE backends; None: no limit)."""
    character_coverage: float = 0.9995
    """SentencePiece: share of characters covered by the vocabulary; the rest use byte fallback."""
    input_sentence_size: int = 0
    """SentencePiece: sample this many sentences for training (0: all)."""
    seed: int = 0
    """SentencePiece sampling seed (BPE training is deterministic by construction)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"kind={self.kind!r} is not one of {', '.join(KINDS)}.")
        for name, value, allowed in (("normalization", self.normalization, ("nfc", "nfkc", "none")),
                                     ("digits", self.digits, ("split", "keep")),
                                     ("whitespace", self.whitespace, ("default", "preserve"))):
            if value not in allowed:
                raise ConfigError(f"{name}={value!r} is not one of {', '.join(allowed)}.")
        if self.min_frequency < 1:
            raise ConfigError(f"min_frequency={self.min_frequency} must be >= 1.")
        specials = self.special_tokens
        if len(set(specials)) != len(specials):
            raise ConfigError(f"special tokens must be distinct, got {specials}.")
        floor = self.minimum_vocab_size
        if self.vocab_size < floor:
            raise ConfigError(f"vocab_size={self.vocab_size} is below the {BYTE_ALPHABET}-byte alphabet plus "
                              f"{floor - BYTE_ALPHABET} special/whitespace tokens ({floor}); use vocab_size >= {floor}.")
        if self.kind == "superbpe":
            t = self.transition_size
            if not floor <= t < self.vocab_size:
                raise ConfigError(f"superbpe_transition={t} must be >= {floor} and below vocab_size={self.vocab_size}. "
                                  f"Set superbpe_transition=N in that range, or superbpe_transition=null for 90% of vocab_size.")
        if self.superbpe_max_words is not None and self.superbpe_max_words < 1:
            raise ConfigError(f"superbpe_max_words={self.superbpe_max_words} must be >= 1 (or None for no limit).")
        if self.superbpe_stage2_min_chars < 0:
            raise ConfigError(f"superbpe_stage2_min_chars={self.superbpe_stage2_min_chars} must be >= 0.")
        if self.max_token_length is not None and self.max_token_length < 2:
            raise ConfigError(f"max_token_length={self.max_token_length} must be >= 2 (or None).")
        if not 0.9 <= self.character_coverage <= 1.0:
            raise ConfigError(f"character_coverage={self.character_coverage} must be between 0.9 and 1.0.")
        if any(not r or not r.isidentifier() for r in self.chat_roles):
            raise ConfigError(f"chat_roles={self.chat_roles} must be plain names like system, user, assistant.")

    @property
    def chat_tokens(self) -> list[str]:
        return [f"<|{r}|>" for r in self.chat_roles] + (["<|end|>"] if self.chat_roles else [])

    @property
    def special_tokens(self) -> list[str]:
        """All special tokens, in id order: unk, bos, eos, pad, chat tokens, extras."""
        named = [t for t in (self.unk_token, self.bos_token, self.eos_token, self.pad_token) if t]
        return named + self.chat_tokens + list(self.extra_special_tokens)

    @property
    def minimum_vocab_size(self) -> int:
        ws = len(WHITESPACE_RUNS) if self.whitespace == "preserve" else 0
        return BYTE_ALPHABET + len(self.special_tokens) + ws

    @property
    def transition_size(self) -> int:
        return self.superbpe_transition if self.superbpe_transition is not None else int(round(0.9 * self.vocab_size))


@dataclasses.dataclass(kw_only=True)
class TrainResult:
    """Where the tokenizer went and what training saw."""

    path: Path
    kind: str
    vocab_size: int
    seconds: float
    documents: int
    characters: int
    stats: dict[str, Any] = dataclasses.field(default_factory=dict)

    def as_row(self) -> dict[str, Any]:
        return {"path": str(self.path), "kind": self.kind, "vocab_size": self.vocab_size, "seconds": round(self.seconds, 2),
                "documents": self.documents, "characters": self.characters, **self.stats}


class _Counted:
    """Wrap a text iterable: count documents and characters as the trainer consumes them."""

    def __init__(self, texts: Iterable[str]) -> None:
        self.documents = 0
        self.characters = 0
        self._it = iter(texts)
        first = next(self._it, None)
        while first is not None and not first.strip():
            first = next(self._it, None)
        if first is None:
            raise DataError("empty corpus: the input holds no non-empty documents. Check the paths, the --field name and the cleaning filters.")
        self._it = itertools.chain([first], self._it)

    bar: Any = None
    """A progress bar advanced by the documents read (set by `train_tokenizer`)."""

    def __iter__(self) -> Iterator[str]:
        bar = self.bar if self.bar is not None and not self.bar.disable else None
        for text in self._it:
            if not isinstance(text, str):
                raise DataError(f"training texts must be strings, got {type(text).__name__}.")
            self.documents += 1
            self.characters += len(text)
            if bar is not None and self.documents - bar.n >= 10_000:
                bar.update(self.documents - bar.n)
            yield text
        if bar is not None:
            bar.update(self.documents - bar.n)
            bar.set_description_str("corpus read; training")

    def batches(self, size: int = 1000) -> Iterator[list[str]]:
        it = iter(self)
        while batch := list(itertools.islice(it, size)):
            yield batch


def chat_template(roles: list[str]) -> str:
    """A Jinja chat template over <|role|> ... <|end|> tokens that rejects unknown roles."""
    allowed = "[" + ", ".join(repr(r) for r in roles) + "]"
    gen = "{%- if add_generation_prompt %}<|assistant|>{% endif -%}" if "assistant" in roles else ""
    return ("{%- for message in messages %}"
            f"{{%- if message['role'] not in {allowed} %}}{{{{ raise_exception('unknown chat role: ' + message['role']) }}}}{{% endif -%}}"
            "<|{{ message['role'] }}|>{{ message['content'] }}<|end|>"
            "{%- endfor %}" + gen)


def _named_special_tokens(config: TokenizerTrainConfig) -> dict[str, str]:
    return {k: getattr(config, k) for k in ("bos_token", "eos_token", "pad_token", "unk_token") if getattr(config, k)}


def wrap_fast(tokenizer: Any, config: TokenizerTrainConfig) -> Any:
    """A transformers fast tokenizer around a trained `tokenizers.Tokenizer`, special tokens named."""
    from transformers import PreTrainedTokenizerFast

    extra = config.chat_tokens + list(config.extra_special_tokens)
    # additional_special_tokens is the keyword 4.x and 5.x both take; 5.x's list-valued extra_special_tokens fails in 4.x
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, additional_special_tokens=extra, **_named_special_tokens(config))
    if config.chat_roles:
        fast.chat_template = chat_template(config.chat_roles)
    return fast


def train_backend(counted: _Counted, config: TokenizerTrainConfig) -> tuple[Any, dict[str, Any]]:
    """Train the configured backend; returns a `tokenizers.Tokenizer` and backend statistics."""
    if config.kind == "bpe":
        from koforge.tokenizers.bpe import train_byte_bpe

        return train_byte_bpe(counted.batches(), config), {}
    if config.kind == "superbpe":
        from koforge.tokenizers.bpe import train_superbpe

        return train_superbpe(counted, config)
    from koforge.tokenizers.sentencepiece import train_sentencepiece

    return train_sentencepiece(counted, config), {}


def _reading_bar() -> Any:
    """Documents read, for runs whose output is not a terminal: the Rust trainer's own bars show only on one
    (tokenizers.bpe), and a 32K BPE on the shared corpus was otherwise silent for a minute in a log."""
    from koforge._utils.progress import progress

    quiet = os.environ.get("KOFORGE_PROGRESS", "1") == "0" or sys.stdout.isatty()
    return progress(desc="reading corpus", unit=" docs", mininterval=10, disable=quiet)


def train_tokenizer(texts: Iterable[str], config: TokenizerTrainConfig, output_dir: str | Path, *,
                    overwrite: bool = False, inputs: Sequence[str | Path] = ()) -> TrainResult:
    """Train a tokenizer on `texts` and write a Hugging Face tokenizer folder to `output_dir`, which may not be
    (or hold) one of the corpus files or folders `inputs`."""
    if isinstance(texts, (str, bytes, os.PathLike)):  # a string iterates as one-character texts
        raise ConfigError(f"texts must be an iterable of texts, got one {type(texts).__name__} ({str(texts)[:40]!r}). "
                          "To train on files: train_tokenizer(read_texts([path]), ...) (koforge.data.read).")
    output_dir = check_output(output_dir, overwrite, inputs)  # refuse before hours of training, not after
    counted = _Counted(texts)
    start = time.perf_counter()
    with _reading_bar() as counted.bar:
        tokenizer, stats = train_backend(counted, config)
    seconds = time.perf_counter() - start
    fast = wrap_fast(tokenizer, config)
    with atomic_dir(output_dir, overwrite=overwrite, inputs=inputs) as tmp:
        save_tokenizer(fast, tmp)
        save_config(config, tmp / "koforge_tokenizer_config.json")
        result = TrainResult(path=Path(output_dir), kind=config.kind, vocab_size=tokenizer.get_vocab_size(with_added_tokens=True),
                             seconds=seconds, documents=counted.documents, characters=counted.characters, stats=stats)
        write_json(tmp / "koforge_train_stats.json", result.as_row())
    return result

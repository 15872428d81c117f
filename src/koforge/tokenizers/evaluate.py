"""Compare tokenizers on named Korean text sets (`koforge tokenizer eval` / `compare`).

For each (tokenizer, text set) pair: bytes and characters per token, tokens
per document (a line of a .txt, a record of a .jsonl/.tsv/.csv: no sentence
splitting), tokens per 1,000 Hangul syllables, two rates of tokens that stand
for bytes or nothing rather than text, the exact round-trip rate
(`decode(encode(x)) == x`, no special tokens added, no clean-up), the share of
Hangul tokens in the vocabulary, encode throughput, and the token count
relative to a reference tokenizer on the same text set ("-38% tokens vs qwen3").

The two rates (shares of all tokens):
- `unk_rate` ("unk+byte-fallback %"): the unknown token and SentencePiece-style
  byte-fallback pieces `<0xNN>`; a byte-level BPE has neither, so it reads 0;
- `partial_char_rate` ("partial-char %"): tokens whose bytes are not whole
  UTF-8 characters, i.e. fragments of a character (a Hangul syllable is 3
  bytes): byte-level BPE pieces such as `ì` or `ìķ`, and byte-fallback pieces
  of multi-byte characters (those count in both rates). This is the figure
  that shows how often a byte-level tokenizer falls back to bytes;
- `superword_rate` ("superword %"): tokens whose text spans a word boundary
  (whitespace inside it, a leading space aside), as SuperBPE learns them
  ("수 있는"); ordinary BPE and SentencePiece tokenizers read about 0.

Tokens are counted with the Rust pipeline directly (`backend_tokenizer`), so
figures do not depend on transformers' post-processing or on BOS/EOS
insertion. Throughput is wall-clock and depends on the machine: it is a
figure to read, not to assert on.
"""
from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from koforge._utils.errors import ConfigError, DataError, TokenizerError
from koforge._utils.io import atomic_file, write_json
from koforge.data.clean import is_hangul_syllable
from koforge.tokenizers.bytelevel import bytes_to_unicode
from koforge.tokenizers.io import load_tokenizer, tokenizer_name

_BYTE_PIECE = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")

COLUMNS = {
    "tokenizer": "tokenizer", "text_set": "text set", "vocab_size": "vocab", "tokens": "tokens",
    "bytes_per_token": "bytes/token", "chars_per_token": "chars/token", "tokens_per_text": "tokens/document", "tokens_per_sentence": "tokens/sentence",
    "tokens_per_1k_syllables": "tokens/1k syllables", "unk_rate": "unk+byte-fallback %", "partial_char_rate": "partial-char %",
    "round_trip_rate": "round-trip %", "superword_rate": "superword %",
    "hangul_vocab_share": "Hangul vocab %", "encode_mb_per_s": "encode MB/s", "tokens_vs_reference": "tokens vs ref",
}


@dataclasses.dataclass(kw_only=True)
class TokenizerComparison:
    """Rows of metrics, one per (tokenizer, text set), and how to render them."""

    rows: list[dict[str, Any]]
    reference: str | None = None

    def to_markdown(self, columns: Sequence[str] | None = None) -> str:
        """A GitHub markdown table (percentages as %, relative change signed)."""
        keys = list(columns or [k for k in COLUMNS if any(k in r for r in self.rows)])
        head = [COLUMNS.get(k, k) + (f" ({self.reference})" if k == "tokens_vs_reference" and self.reference else "") for k in keys]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(keys)]
        for r in self.rows:
            lines.append("| " + " | ".join(_fmt(k, r.get(k)) for k in keys) + " |")
        return "\n".join(lines) + "\n"

    def to_json(self, path: str | Path) -> Path:
        """Write the rows and the reference as JSON."""
        return write_json(path, {"reference": self.reference, "rows": self.rows})

    def plot(self, path: str | Path, metric: str = "chars_per_token") -> Path:
        """A grouped bar chart (one group per text set, one bar per tokenizer) as PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        sets = list(dict.fromkeys(r["text_set"] for r in self.rows))
        names = list(dict.fromkeys(r["tokenizer"] for r in self.rows))
        width = 0.8 / max(1, len(names))
        fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(sets) * max(1, len(names)) / 3), 4))
        for i, name in enumerate(names):
            values = [next((r[metric] for r in self.rows if r["tokenizer"] == name and r["text_set"] == s), 0) for s in sets]
            ax.bar([j + i * width for j in range(len(sets))], values, width, label=name)
        ax.set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(sets))], sets)
        ax.set_ylabel(COLUMNS.get(metric, metric))
        ax.set_title(f"{COLUMNS.get(metric, metric)} by tokenizer")
        ax.legend(fontsize=8, ncol=2)
        fig.tight_layout()
        with atomic_file(path) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
        plt.close(fig)
        return Path(path)


def _fmt(key: str, value: Any) -> str:
    if value is None:
        return ""
    if key in ("unk_rate", "partial_char_rate", "round_trip_rate", "superword_rate", "hangul_vocab_share"):
        return f"{100 * value:.2f}"
    if key == "tokens_vs_reference":
        return f"{100 * value:+.1f}%"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def hangul_vocab_share(tokenizer: Any) -> float:
    """Share of vocabulary entries whose text contains a Hangul syllable."""
    backend = tokenizer.backend_tokenizer
    size = backend.get_vocab_size(with_added_tokens=True)
    texts = backend.decode_batch([[i] for i in range(size)], skip_special_tokens=False)
    return sum(any(is_hangul_syllable(c) for c in t) for t in texts) / max(1, size)


@dataclasses.dataclass(frozen=True)
class TokenClasses:
    """Ids of the tokens each rate counts (computed once per tokenizer)."""

    unknown: frozenset[int]
    """The unknown token and `<0xNN>` byte-fallback pieces."""
    partial_char: frozenset[int]
    """Tokens whose bytes are not whole UTF-8 characters."""
    superword: frozenset[int] = frozenset()
    """Tokens whose text spans a word boundary (SuperBPE's superwords)."""


def _is_byte_level(backend: Any) -> bool:
    """Whether the decoder maps GPT-2's byte alphabet back to bytes (Qwen3, Llama 3, GPT-4o, koforge BPE)."""
    if backend.decoder is None:
        return False
    return '"ByteLevel"' in backend.decoder.__getstate__().decode("utf-8", "replace")


def _model_unk_id(backend: Any) -> int | None:
    """The unknown id the model itself names: a bare tokenizer.json has no tokenizer_config.json to name it."""
    token = getattr(backend.model, "unk_token", None)  # BPE, WordPiece, WordLevel
    if token is not None:
        return backend.token_to_id(token)
    if type(backend.model).__name__ == "Unigram":
        return json.loads(backend.model.__getstate__()).get("unk_id")
    return None


def spans_words(text: str) -> bool:
    """Whether a token's text holds whitespace between two of its characters (a leading space aside)."""
    inner = text.strip()
    return any(ch.isspace() for ch in inner)


def token_classes(tokenizer: Any) -> TokenClasses:
    """Classify the vocabulary once: unknown/byte-fallback ids, partial-character ids and superword ids."""
    backend = tokenizer.backend_tokenizer
    byte_level = _is_byte_level(backend)
    to_byte = {c: b for b, c in bytes_to_unicode().items()}
    added = set(backend.get_added_tokens_decoder())  # added tokens are stored as plain text, never byte-encoded
    unknown, partial = set(), set()
    for token, i in backend.get_vocab(with_added_tokens=True).items():
        if i in added:
            continue
        if _BYTE_PIECE.match(token):
            unknown.add(i)
            raw = bytes([int(token[3:5], 16)])
        elif byte_level and all(c in to_byte for c in token):
            raw = bytes(to_byte[c] for c in token)
        else:
            continue  # plain text: whole characters by construction
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            partial.add(i)
    unknown.update(i for i in (tokenizer.unk_token_id, _model_unk_id(backend)) if i is not None)
    size = backend.get_vocab_size(with_added_tokens=True)
    texts = backend.decode_batch([[i] for i in range(size)], skip_special_tokens=False)
    superword = frozenset(i for i, t in enumerate(texts) if i not in added and spans_words(t))
    return TokenClasses(unknown=frozenset(unknown), partial_char=frozenset(partial), superword=superword)


def counting_backend(tokenizer: Any) -> Any:
    """A copy of the Rust tokenizer with any fixed padding / truncation switched off.

    Some tokenizer.json files carry them (all-MiniLM-L6-v2 pads and truncates to
    128), which would make every sentence "128 tokens" in a count.
    """
    from tokenizers import Tokenizer

    backend = tokenizer.backend_tokenizer
    if backend.padding is None and backend.truncation is None:
        return backend
    backend = Tokenizer.from_str(backend.to_str())
    backend.no_padding()
    backend.no_truncation()
    return backend


SENTENCE_END = re.compile(r"(?<=[.!?。…])[\"'”’)\]]*\s+|\n+")
"""Where a sentence ends: after . ! ? 。 … (and closing quotes or brackets) before whitespace, or at a line break."""


def count_sentences(text: str) -> int:
    """Sentences in `text` by punctuation and line breaks (Korean ends statements with '다.', '요.', '?' alike)."""
    return sum(1 for piece in SENTENCE_END.split(text) if piece.strip())


MEASURE_CHUNK = 10_000
"""Texts encoded per batch: the counts are summed chunk by chunk, so memory stays flat on a large text set
(the whole set's encodings at once took 3.2 GB for Qwen3 on the NSMC reviews)."""


def measure(tokenizer: Any, texts: Sequence[str], classes: TokenClasses | None = None, *, bar: Any = None) -> dict[str, Any]:
    """The metrics of one tokenizer on one list of texts (`classes`: `token_classes(tokenizer)`, computed if not given;
    `bar`: a progress bar advanced by the texts done)."""
    texts = list(texts)  # a set or deque has a length but no slices
    backend = counting_backend(tokenizer)
    classes = classes or token_classes(tokenizer)
    seconds = 0.0
    n_tokens = n_unknown = n_partial = n_superword = round_trips = 0
    for start in range(0, len(texts), MEASURE_CHUNK):
        chunk = list(texts[start:start + MEASURE_CHUNK])
        t0 = time.perf_counter()
        encodings = backend.encode_batch(chunk, add_special_tokens=False)
        seconds += time.perf_counter() - t0
        ids = [e.ids for e in encodings]
        del encodings
        n_tokens += sum(map(len, ids))
        n_unknown += sum(1 for seq in ids for i in seq if i in classes.unknown) if classes.unknown else 0
        n_partial += sum(1 for seq in ids for i in seq if i in classes.partial_char) if classes.partial_char else 0
        n_superword += sum(1 for seq in ids for i in seq if i in classes.superword) if classes.superword else 0
        decoded = backend.decode_batch(ids, skip_special_tokens=False)
        round_trips += sum(d == t for d, t in zip(decoded, chunk))
        if bar is not None:
            bar.update(len(chunk))
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    n_chars = sum(map(len, texts))
    syllables = sum(is_hangul_syllable(c) for t in texts for c in t)
    return {
        "vocab_size": backend.get_vocab_size(with_added_tokens=True), "tokens": n_tokens,
        "bytes_per_token": n_bytes / max(1, n_tokens), "chars_per_token": n_chars / max(1, n_tokens),
        "tokens_per_text": n_tokens / len(texts),
        "tokens_per_sentence": n_tokens / max(1, sum(map(count_sentences, texts))),
        "tokens_per_1k_syllables": 1000 * n_tokens / syllables if syllables else None,
        "unk_rate": n_unknown / max(1, n_tokens), "partial_char_rate": n_partial / max(1, n_tokens),
        "superword_rate": n_superword / max(1, n_tokens),
        "round_trip_rate": round_trips / len(texts),
        "encode_mb_per_s": n_bytes / 1e6 / max(seconds, 1e-9),
    }


def evaluate_tokenizers(tokenizers: Mapping[str, Any], texts: Mapping[str, Sequence[str]], *,
                        reference: str | None = None) -> TokenizerComparison:
    """Measure every tokenizer (path, hub name or loaded) on every named text set.

    Both are mappings: {"name": tokenizer} and {"set name": [text, ...]} (a list of specs or one string per set
    would otherwise be read as something else: a string is a sequence of one-character texts)."""
    if not isinstance(tokenizers, Mapping) or not isinstance(texts, Mapping):
        raise ConfigError("tokenizers and texts are mappings: {'name': path or tokenizer} and {'set': [text, ...]} "
                          "(default_names(paths) names a list of tokenizer paths).")
    for name, items in texts.items():
        if isinstance(items, str) or not hasattr(items, "__len__"):
            raise ConfigError(f"text set '{name}' must be a list of texts, got {type(items).__name__}: wrap one text "
                              "in a list; read files with koforge.data.read.read_texts([path]) and list() it.")
    if not tokenizers:
        raise TokenizerError("no tokenizers to evaluate: pass at least one folder, tokenizer.json or hub name.")
    if not texts:
        raise DataError("no text sets to evaluate on: pass at least one named list of texts.")
    for name, items in texts.items():
        if not items:
            raise DataError(f"text set '{name}' is empty. Check its path, --field and filters.")
    if reference is not None and reference not in tokenizers:
        raise TokenizerError(f"reference '{reference}' is not one of the tokenizers ({', '.join(tokenizers)}).")
    from koforge._utils.progress import progress

    rows = []
    with progress(total=len(tokenizers) * sum(map(len, texts.values())), unit="text", desc="tokenizers") as bar:
        for name, spec in tokenizers.items():
            bar.set_postfix_str(name)
            tok = load_tokenizer(spec)
            share = hangul_vocab_share(tok)
            classes = token_classes(tok)
            for set_name, items in texts.items():
                rows.append({"tokenizer": name, "text_set": set_name, **measure(tok, items, classes, bar=bar),
                             "hangul_vocab_share": share})
    if reference is not None:
        ref = {r["text_set"]: r["tokens"] for r in rows if r["tokenizer"] == reference}
        for r in rows:
            r["tokens_vs_reference"] = r["tokens"] / ref[r["text_set"]] - 1.0 if ref[r["text_set"]] else None
    return TokenizerComparison(rows=rows, reference=reference)


def default_names(specs: Sequence[str | Path]) -> dict[str, str | Path]:
    """Display names for tokenizer specs (folder or hub name), made unique."""
    names: dict[str, str | Path] = {}
    for spec in specs:
        base = tokenizer_name(spec)
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names[name] = spec
    return names

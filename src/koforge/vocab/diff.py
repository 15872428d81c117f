"""The donor-minus-base token set, as real text, filtered and ranked.

Each donor token is turned into the text it stands for (see `text.py`), then
dropped when it is special, not whole characters, outside the chosen script
or pattern, already in the base (as a vocabulary entry or an added token),
too rare in the reference corpus, or beyond `max_new_tokens`. The counts of
every reason are kept as statistics.

For a WordPiece base the word-start space is dropped (the base's
pre-tokenizer removes spaces, and an added token matches anywhere), so
" 안녕" and "안녕" become one candidate.
"""
from __future__ import annotations

import json

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from koforge._utils.errors import DataError, NothingToDoError
from koforge._utils.io import require_path, utf8_hint, write_json
from koforge.vocab.config import ExpansionConfig
from koforge.vocab.loading import load_tokenizer, tokenizer_spec
from koforge.vocab.text import Convention, passes_filter


@dataclass(kw_only=True)
class NewToken:
    """One donor token to add to the base."""

    text: str
    """The text to add (with a word-start space for non-WordPiece bases when the donor token starts a word)."""
    donor_token: str
    donor_id: int
    frequency: Optional[int] = None
    """Occurrences in the donor tokenization of the reference corpus (None without a reference)."""


@dataclass(kw_only=True)
class VocabDiff:
    """The result of `diff_vocabularies`."""

    tokens: list[NewToken]
    stats: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"stats": self.stats, "tokens": [t.__dict__ for t in self.tokens]}

    def write(self, path: str | Path) -> Path:
        return write_json(path, self.to_json())


def read_diff(path: str | Path) -> VocabDiff:
    """A diff JSON written by `koforge expand diff` (possibly edited: tokens removed or reordered)."""
    from koforge._utils.io import read_json

    data = read_json(path, "token list (diff JSON)")
    rows = data.get("tokens") if isinstance(data, dict) else None
    fields = ("text", "donor_token", "donor_id")
    if not isinstance(rows, list):
        raise DataError(f"'{path}' is not a token list of `koforge expand diff` (a 'tokens' list of objects with "
                        f"{', '.join(fields)}). Write one with `koforge expand diff BASE DONOR -o FILE`.")
    for i, r in enumerate(rows):  # an entry edited by hand: say which one and what it lacks
        missing = [f for f in fields if f not in r] if isinstance(r, dict) else list(fields)
        bad_id = not missing and not (isinstance(r["donor_id"], int) and not isinstance(r["donor_id"], bool))
        if missing or bad_id:
            what = f"lacks {', '.join(missing)}" if missing else f"has donor_id {r['donor_id']!r}, not an integer"
            raise DataError(f"'{path}': tokens[{i}] ({json.dumps(r, ensure_ascii=False)[:120]}) {what}. Each entry "
                            "needs the donor's token and its id in the donor vocabulary (see the other entries); "
                            "remove entries to drop tokens, or re-run `koforge expand diff` to get new ones.")
    tokens = [NewToken(text=str(r["text"]), donor_token=str(r["donor_token"]), donor_id=r["donor_id"],
                       frequency=r.get("frequency")) for r in rows]
    texts = [t.text for t in tokens]
    repeated = sorted(t for t, n in Counter(texts).items() if n > 1)
    if not tokens or not all(texts) or repeated:
        what = "no token" if not tokens else (f"the token text {repeated[0]!r} more than once" if repeated
                                              else f"an empty token text (tokens[{texts.index('')}])")
        raise DataError(f"'{path}' holds {what}; keep each token once, with its text.")
    stats = dict(data.get("stats") or {}, new_tokens=len(tokens), source=str(path))
    return VocabDiff(tokens=tokens, stats=stats)


def read_lines(path: str | Path, max_lines: int, what: str = "text file") -> list[str]:
    """Non-empty lines of a UTF-8 text file (at most `max_lines`), naming the file on failure."""
    p = require_path(path, what)
    lines: list[str] = []
    try:
        with p.open(encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line:
                    lines.append(line)
                    if len(lines) >= max_lines:
                        break
    except UnicodeDecodeError as e:
        raise DataError(f"{what} '{p}' is not UTF-8 ({e}). {utf8_hint(p)}") from None
    except IsADirectoryError:
        raise DataError(f"{what} '{p}' is a folder; expected a text file with one document a line.") from None
    if not lines:
        raise DataError(f"{what} '{p}' holds no non-empty line. Pass a text file with one document a line.")
    return lines


def base_keys(base_tok: Any) -> tuple[Convention, set[str]]:
    """The base's convention and the set of texts it already has (vocab entries and added tokens)."""
    spec = tokenizer_spec(base_tok)
    conv = Convention.from_json(spec)
    keys: set[str] = set()
    for tok in base_tok.backend_tokenizer.get_vocab(with_added_tokens=False):
        tt = conv.to_text(tok)
        if tt.decodable:
            keys.add(_key(tt.text, conv))
    for added in spec.get("added_tokens", []):
        keys.add(_key(added["content"], conv))
        keys.add(added["content"])
    return conv, keys


def _key(text: str, base_conv: Convention) -> str:
    return text[1:] if base_conv.style == "wordpiece" and text.startswith(" ") else text


def encode_ids(tok: Any, texts: Sequence[str], chunk: int = 10_000) -> list[list[int]]:
    """Token ids of each text without special tokens."""
    if getattr(tok, "backend_tokenizer", None) is None:  # a slow tokenizer
        return tok(list(texts), add_special_tokens=False, padding=False, truncation=False)["input_ids"] if texts else []
    from koforge.tokenizers.evaluate import counting_backend

    # The Rust tokenizer in chunks, with the padding/truncation a tokenizer.json may carry switched off
    # (all-MiniLM-L6-v2's pads every encoding to 128): the transformers wrapper spent ~2/3 of an analysis of
    # 100K lines turning its encodings into Python lists, and held them all at once.
    backend = counting_backend(tok)
    ids: list[list[int]] = []
    for start in range(0, len(texts), chunk):
        ids.extend(e.ids for e in backend.encode_batch(list(texts[start:start + chunk]), add_special_tokens=False))
    return ids


def donor_frequencies(donor_tok: Any, texts: Sequence[str], chunk: int = 10_000) -> Counter:
    """How often each donor id occurs in the donor tokenization of `texts`."""
    from koforge._utils.progress import progress

    counts: Counter = Counter()
    with progress(total=len(texts), unit=" lines", desc="counting donor tokens in the reference") as bar:
        for start in range(0, len(texts), chunk):
            for ids in encode_ids(donor_tok, texts[start:start + chunk]):
                counts.update(ids)
            bar.update(min(chunk, len(texts) - start))
    return counts


def diff_tokenizers(base_tok: Any, donor_tok: Any, config: ExpansionConfig,
                    reference_texts: Optional[Sequence[str]] = None) -> VocabDiff:
    """`diff_vocabularies` on loaded tokenizers."""
    base_conv, existing = base_keys(base_tok)
    donor_spec = tokenizer_spec(donor_tok)
    donor_conv = Convention.from_json(donor_spec)
    specials = {a["content"] for a in donor_spec.get("added_tokens", [])} | set(getattr(donor_tok, "all_special_tokens", []) or [])
    pattern = config.compiled_pattern()
    freq = donor_frequencies(donor_tok, reference_texts) if reference_texts else None

    reasons: Counter = Counter()
    seen: dict[str, NewToken] = {}
    donor_vocab = donor_tok.backend_tokenizer.get_vocab(with_added_tokens=False)
    for token, tid in sorted(donor_vocab.items(), key=lambda kv: kv[1]):
        if token in specials:
            reasons["special"] += 1
            continue
        tt = donor_conv.to_text(token)
        if not tt.decodable:
            reasons["not_whole_characters"] += 1
            continue
        if tt.text.startswith("  ") or not passes_filter(tt.core, config.script, pattern):
            reasons["filtered_script_or_pattern"] += 1
            continue
        key = _key(tt.text, base_conv)
        if key in existing:
            reasons["already_in_base"] += 1
            continue
        f = freq.get(tid, 0) if freq is not None else None
        if key in seen:
            reasons["duplicate_text"] += 1
            if f is not None and seen[key].frequency is not None:
                seen[key].frequency += f
            continue
        seen[key] = NewToken(text=key, donor_token=token, donor_id=tid, frequency=f)

    tokens = list(seen.values())
    if freq is not None:
        kept = [t for t in tokens if (t.frequency or 0) >= config.min_frequency]
        reasons["below_min_frequency"] = len(tokens) - len(kept)
        tokens = sorted(kept, key=lambda t: (-(t.frequency or 0), t.donor_id))
    if config.max_new_tokens is not None and len(tokens) > config.max_new_tokens:
        reasons["over_max_new_tokens"] = len(tokens) - config.max_new_tokens
        tokens = tokens[: config.max_new_tokens]

    overlap = sum(1 for tok in donor_vocab if donor_conv.to_text(tok).decodable and _key(donor_conv.to_text(tok).text, base_conv) in existing)
    stats = {
        "base_vocab_size": len(base_tok),
        "donor_vocab_size": len(donor_tok),
        "base_type": f"{base_conv.model_type} ({base_conv.style})",
        "donor_type": f"{donor_conv.model_type} ({donor_conv.style})",
        "overlap": overlap,
        "new_tokens": len(tokens),
        "excluded": dict(sorted(reasons.items())),
        "script": config.script,
        "pattern": config.pattern,
        "min_frequency": config.min_frequency,
        "max_new_tokens": config.max_new_tokens,
        "reference_lines": len(reference_texts) if reference_texts else 0,
    }
    return VocabDiff(tokens=tokens, stats=stats)


def diff_vocabularies(base: str | Path, donor: str | Path, config: ExpansionConfig | None = None, *,
                      output: str | Path | None = None, trust_remote_code: bool = False) -> VocabDiff:
    """Donor tokens the base lacks, as text, filtered and ranked; written to `output` JSON when given.

    Raises `NothingToDoError` when nothing is left to add (donor equal to base, or all filtered).
    """
    config = config or ExpansionConfig()
    base_tok = load_tokenizer(base, trust_remote_code=trust_remote_code, what="base tokenizer")
    donor_tok = load_tokenizer(donor, trust_remote_code=trust_remote_code, what="donor tokenizer")
    reference = read_lines(config.reference, config.reference_max_lines, "reference corpus") if config.reference else None
    diff = diff_tokenizers(base_tok, donor_tok, config, reference)
    if not diff.tokens:
        raise NothingToDoError(f"donor '{donor}' has no token to add to base '{base}' "
                               f"(excluded: {diff.stats['excluded'] or 'none'}). Nothing was written. "
                               "Use a donor with other tokens, or relax script/pattern/min_frequency.")
    if output is not None:
        diff.write(output)
    return diff

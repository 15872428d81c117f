"""`analyze`: what an expansion would buy, measured on tokenizers only (no model).

For the base, the donor and the base expanded in each mode: vocabulary size,
tokens per line of the Korean text (a line is one text, whatever it holds: a
sentence, a review, a paragraph), characters per token, unknown-token rate and
coverage of the Hangul syllables that occur in the text (share that is one
whole token), the share of lines that decode back to themselves, plus the
share of English lines whose token sequence the expansion leaves unchanged.
The same figures are reused by the report of `expand apply`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from koforge._utils.errors import DataError, KoforgeError
from koforge.vocab.config import ExpansionConfig
from koforge.vocab.diff import diff_tokenizers, encode_ids, read_lines
from koforge.vocab.loading import load_tokenizer, tokenizer_spec
from koforge.vocab.text import Convention, is_hangul_syllable

# Used when no English file is given: plain ASCII news/tech sentences.
BUILTIN_ENGLISH = [
    "The committee will meet on Tuesday to discuss the new budget proposal.",
    "Researchers found that the model's accuracy improved by 12% after fine-tuning.",
    "Please send the report to john.doe@example.com before 5 p.m.",
    "Seoul is the capital of South Korea, with a population of about 9.4 million.",
    "def tokenize(text): return text.split()",
    "It's not what you say, it's how you say it!",
    "The quick brown fox jumps over the lazy dog.",
    "In 2023, the company's revenue grew 8.5 percent year over year.",
]


def single_syllables(tok: Any) -> set[str]:
    """Hangul syllables that are a whole token of `tok` (vocab entries and added tokens)."""
    conv = Convention.from_json(tokenizer_spec(tok))
    out = set()
    for t in tok.backend_tokenizer.get_vocab(with_added_tokens=False):
        core = conv.to_text(t).core
        if len(core) == 1 and is_hangul_syllable(core):
            out.add(core)
    for t in tok.get_added_vocab():
        core = t.strip()
        if len(core) == 1 and is_hangul_syllable(core):
            out.add(core)
    return out


def tokenizer_stats(tok: Any, texts: Sequence[str], name: str) -> dict[str, Any]:
    """Vocab size, tokens per line, chars per token, unknown rate, Hangul syllable coverage and the share of
    lines that decode back exactly (`roundtrip`) on `texts`."""
    ids = encode_ids(tok, texts)
    n_tokens = sum(len(x) for x in ids)
    unk = getattr(tok, "unk_token_id", None)
    n_unk = sum(1 for x in ids for i in x if unk is not None and i == unk)
    syllables = {ch for t in texts for ch in t if is_hangul_syllable(ch)}
    covered = len(syllables & single_syllables(tok)) / len(syllables) if syllables else 0.0
    chars = sum(len(t) for t in texts)
    roundtrip = sum(d == t for d, t in zip(tok.batch_decode(ids), texts)) if texts else 0
    return {
        "tokenizer": name,
        "vocab": len(tok),
        "tokens_per_line": n_tokens / max(len(texts), 1),
        "chars_per_token": chars / max(n_tokens, 1),
        "unk_rate": n_unk / max(n_tokens, 1),
        "syllable_coverage": covered,
        "roundtrip": roundtrip / max(len(texts), 1),
    }


def unchanged_share(base_tok: Any, new_tok: Any, texts: Sequence[str]) -> float:
    """Share of texts whose token-id sequence is identical under both tokenizers."""
    if not texts:
        return 1.0
    a, b = encode_ids(base_tok, texts), encode_ids(new_tok, texts)
    return sum(x == y for x, y in zip(a, b)) / len(texts)


@dataclass(kw_only=True)
class ExpansionAnalysis:
    """The result of `analyze_expansion`."""

    rows: list[dict[str, Any]]
    """One row per tokenizer: base, donor, base + new tokens in each mode."""
    diff_stats: dict[str, Any]
    sample_new_tokens: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    recommended_mode: Optional[str] = None
    """The mode with the fewest Korean tokens among those that keep English exact and decode Korean as the base does."""

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "diff": self.diff_stats, "sample_new_tokens": self.sample_new_tokens, "notes": self.notes,
                "recommended_mode": self.recommended_mode}


def recommend_mode(rows: Sequence[dict[str, Any]]) -> Optional[str]:
    """Among the `base+MODE` rows that keep every English line and decode Korean at least as often as the base,
    the mode with the fewest Korean tokens per line (None when no mode qualifies)."""
    base = rows[0]
    fit = [r for r in rows if r["tokenizer"].startswith("base+") and r.get("english_unchanged", 0.0) >= 1.0
           and r["roundtrip"] >= base["roundtrip"] and r["tokens_per_line"] < base["tokens_per_line"]]
    return min(fit, key=lambda r: r["tokens_per_line"])["tokenizer"].removeprefix("base+") if fit else None


def analyze_tokenizers(base_tok: Any, donor_tok: Any, texts: Sequence[str], config: ExpansionConfig,
                       english: Sequence[str] = (), reference: Optional[Sequence[str]] = None) -> ExpansionAnalysis:
    """`analyze_expansion` on loaded tokenizers."""
    from koforge.vocab.build import build_expanded_tokenizer

    diff = diff_tokenizers(base_tok, donor_tok, config, reference)
    rows = [tokenizer_stats(base_tok, texts, "base"), tokenizer_stats(donor_tok, texts, "donor")]
    notes: list[str] = []
    english = list(english) or BUILTIN_ENGLISH
    for mode in ("added-tokens", "merge"):
        if not diff.tokens:
            break
        try:
            expanded = build_expanded_tokenizer(base_tok, diff.tokens, mode, donor_tok, config.jamo_fallback)
        except KoforgeError as e:
            notes.append(f"{mode}: {e}")
            continue
        row = tokenizer_stats(expanded.tokenizer, texts, f"base+{mode}")
        row["english_unchanged"] = unchanged_share(base_tok, expanded.tokenizer, english)
        row["added"] = len(expanded.added_ids)
        rows.append(row)
        notes.extend(f"{mode}: {n}" for n in expanded.notes)
    return ExpansionAnalysis(rows=rows, diff_stats=diff.stats, sample_new_tokens=[t.text for t in diff.tokens[:40]], notes=notes,
                             recommended_mode=recommend_mode(rows))


def analyze_expansion(base: str | Path, donor: str | Path, texts: Sequence[str] | Sequence[Path], config: ExpansionConfig | None = None,
                      *, english: Sequence[str] = (), trust_remote_code: bool = False) -> ExpansionAnalysis:
    """Compare base, donor and both expansion modes on Korean `texts` (strings, or paths of text files)."""
    config = config or ExpansionConfig()
    sampled = []
    if texts and all(isinstance(t, Path) for t in texts):
        lines = []
        for path in texts:
            read = read_lines(path, config.eval_max_lines + 1, "text file")  # one more: was the file cut?
            if len(read) > config.eval_max_lines:
                read = read[:config.eval_max_lines]
                sampled.append(f"measured on the first {len(read):,} lines of '{path}' (eval_max_lines); set "
                               "eval_max_lines=N to read more")
            lines += read
        texts = lines
    if not texts:
        raise DataError("analyze needs Korean text: pass at least one non-empty sentence or text file (--text FILE).")
    base_tok = load_tokenizer(base, trust_remote_code=trust_remote_code, what="base tokenizer")
    donor_tok = load_tokenizer(donor, trust_remote_code=trust_remote_code, what="donor tokenizer")
    reference = read_lines(config.reference, config.reference_max_lines, "reference corpus") if config.reference else None
    analysis = analyze_tokenizers(base_tok, donor_tok, list(texts), config, english, reference)
    analysis.notes[:0] = sampled
    return analysis

"""Build the expanded tokenizer in either mode; old ids never move, new ids are appended.

`added-tokens` adds each new text as a (non-special) added token: the
tokenizer matches them in the text (leftmost-longest) before the base model
runs on the gaps. Works for every tokenizer type.

WordPiece bases such as all-MiniLM-L6-v2 normalise with BERT's accent
stripping, which NFD-decomposes every Hangul syllable into jamo (`안` ->
`ᄋ ᅡ ᆫ`). Added tokens that are matched on normalised text would then be
matched on jamo and could cut through syllables (`안녀`+`ᆼ`); so for a base
whose normaliser changes Hangul, the new tokens are marked `normalized=False`:
they are matched on the raw text, with accent stripping off for them, while
the rest of the text (English included) goes through the base normaliser
exactly as before. Bases whose normaliser leaves Hangul alone (Qwen3's NFC)
keep `normalized=True`, so NFD input still matches.

A normalised added token is matched against its *normalised* content, so a
base whose normaliser prepends "▁" to every text (Llama-2-style
`tokenizer.json`, koforge's SentencePiece presets) turns " 있다" into
"▁▁있다", which running text never holds, and "있다" into "▁있다", a word
start. For such a base a word-start token is added as its core text (matched
as "▁있다"); a mid-word token, which it cannot match, and a word-start token
whose core is already a base entry (the added token would take that entry's
id) are left out with a note (`merge` mode reaches them on BPE bases).

Those jamo fall back to the base's WordPiece vocabulary, which lacks some
modern jamo (all-MiniLM-L6-v2: a word holding one becomes [UNK], ~4% of
KorSTS tokens); with `jamo_fallback="complete"` the missing jamo (at most 134
word-start and `##` entries) are appended to the WordPiece vocabulary first, so
no Hangul becomes [UNK]. English words hold no jamo, so their pieces cannot change.

`merge` (BPE bases only) is in `merge.py`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from koforge._utils.errors import NothingToDoError, TokenizerError
from koforge.vocab.diff import NewToken
from koforge.vocab.loading import clone_tokenizer, id_space, tokenizer_spec
from koforge.vocab.merge import plan_merges, verify_merges
from koforge.vocab.text import Convention, decomposes_hangul


@dataclass(kw_only=True)
class ExpandedTokenizer:
    """A base tokenizer with the new tokens, and what was added."""

    tokenizer: Any
    mode: str
    added_texts: list[str]
    added_ids: list[int]
    unreachable: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    piece_ids: Optional[list[list[int]]] = None
    """Base ids each new token splits into (merge mode; added-tokens mode encodes the text instead)."""
    support: int = 0


def _normalizer_changes_hangul(base_tok: Any) -> bool:
    normalizer = base_tok.backend_tokenizer.normalizer
    return normalizer is not None and decomposes_hangul(normalizer.normalize_str)


def normalizer_prefix(base_tok: Any) -> str:
    """What the base normaliser puts before every text ("▁" for Llama-2-style `Prepend`), "" when nothing."""
    normalizer = base_tok.backend_tokenizer.normalizer
    if normalizer is None:
        return ""
    try:
        out = normalizer.normalize_str("가")
    except Exception:  # noqa: BLE001 - a normalizer that cannot run alone prepends nothing we can see
        return ""
    return out[:-1] if out.endswith("가") else ""


# Modern conjoining jamo: 19 initials, 21 medials, 27 finals (what NFD makes of the 11,172 syllables).
MODERN_JAMO = [chr(c) for c in (*range(0x1100, 0x1113), *range(0x1161, 0x1176), *range(0x11A8, 0x11C3))]


def _complete_jamo(base_tok: Any) -> tuple[Any, list[str]]:
    """A WordPiece backend with the missing modern jamo appended to its vocabulary, and their entries."""
    from tokenizers import Tokenizer

    spec = tokenizer_spec(base_tok)
    model = {**spec["model"], "vocab": dict(spec["model"]["vocab"])}
    vocab = model["vocab"]
    prefix = model.get("continuing_subword_prefix") or "##"
    next_id = max(list(vocab.values()) + [a["id"] for a in spec.get("added_tokens", [])]) + 1
    added = []
    for jamo in MODERN_JAMO:
        for entry in (jamo, prefix + jamo):
            if entry not in vocab:
                vocab[entry] = next_id
                added.append(entry)
                next_id += 1
    return Tokenizer.from_str(json.dumps({**spec, "model": model})), added


def add_as_added_tokens(base_tok: Any, tokens: Sequence[NewToken], jamo_fallback: str = "complete") -> ExpandedTokenizer:
    """`added-tokens` mode on a copy of `base_tok` (plus missing jamo for decomposing WordPiece bases)."""
    from tokenizers import AddedToken

    if id_space(base_tok) != len(base_tok):
        # New ids would follow the largest id, but `tokenizers` numbers non-special added tokens from the model's
        # vocabulary size when it loads a saved tokenizer.json: the saved tokenizer would move (and collide) them.
        raise TokenizerError(f"the base tokenizer's ids have holes ({len(base_tok):,} tokens, ids up to "
                             f"{id_space(base_tok) - 1:,}; e.g. GPT-4o's o200k): `tokenizers` renumbers the added tokens "
                             "of such a tokenizer when it is saved and loaded again, so mode 'added-tokens' cannot keep "
                             "their ids. Use mode=merge (BPE bases), which writes the new tokens into the vocabulary.")
    raw_match = _normalizer_changes_hangul(base_tok)
    prefix = "" if raw_match else normalizer_prefix(base_tok)
    notes = []
    if prefix:
        # the core must be no entry of the base either: the added token would take that entry's id
        taken = base_tok.backend_tokenizer.get_vocab(with_added_tokens=True)
        kept = [t for t in tokens if t.text.startswith(" ") and t.text[1:] not in taken]
        if not kept:
            raise NothingToDoError(f"the base normaliser puts {prefix!r} before every text, so an added token can only "
                                   f"match at a word start, and none of the {len(tokens)} new tokens is a word start "
                                   "whose text the base lacks. Use mode=merge (BPE bases).")
        if len(kept) < len(tokens):
            notes.append(f"{len(tokens) - len(kept)} tokens left out: the base normaliser puts {prefix!r} before every "
                         "text, so an added token matches only at a word start, and only when its text is no base entry "
                         "(mode=merge reaches them on BPE bases)")
        tokens = kept
    jamo: list[str] = []
    completed = None
    wordpiece = Convention.from_json(tokenizer_spec(base_tok)).model_type == "WordPiece"
    if raw_match and jamo_fallback == "complete" and wordpiece:
        backend, jamo = _complete_jamo(base_tok)
        completed = clone_tokenizer(base_tok, backend)  # kept free of the new tokens: it gives their pieces
        tok = clone_tokenizer(completed)
    else:
        tok = clone_tokenizer(base_tok)
    start = len(tok)
    texts = [t.text for t in tokens]
    contents = [t[1:] for t in texts] if prefix else texts  # normalised to prefix + core: the word start
    new = [AddedToken(c, single_word=False, lstrip=False, rstrip=False, normalized=not raw_match, special=False)
           for c in contents]
    n = tok.add_tokens(new)
    ids = tok.convert_tokens_to_ids(contents)
    if n != len(tokens) or ids != list(range(start, start + len(tokens))):
        raise TokenizerError(f"the base tokenizer did not append the {len(tokens)} new tokens at ids {start}.. "
                             f"(added {n}). It may already hold some of them as added tokens (an expanded model expanded again?); "
                             "expand the original base model instead.")
    if raw_match:
        notes.append("base normaliser decomposes Hangul (NFD accent stripping): new tokens are matched on the raw "
                     "text (normalized=False), accent stripping stays on for everything else")
    if jamo:
        notes.append(f"{len(jamo)} missing jamo pieces appended to the WordPiece vocabulary (jamo_fallback=complete): "
                     "uncovered syllables fall back to jamo, never [UNK]")
    if raw_match and wordpiece:
        notes.append("WordPiece decoding puts a space between adjacent added tokens ('일 일 연'); ids and embeddings "
                     "are unaffected, and encoders rarely decode")
    from koforge.vocab.init_embeddings import piece_ids

    if not jamo:
        # with a prefix, the core's pieces are the word start's ("▁있다"), not those of "▁▁있다"
        return ExpandedTokenizer(tokenizer=tok, mode="added-tokens", added_texts=texts, added_ids=ids, notes=notes,
                                 piece_ids=piece_ids(base_tok, contents) if prefix else None)

    # A missing jamo was [UNK] to the base model: its new row starts as the [UNK] row. A new token's pieces come
    # from the jamo-completed tokenizer (a word the base saw as one [UNK] splits into jamo), keeping the jamo
    # the base already had; only a token with none of those starts as [UNK] too.
    unk, n_base = base_tok.unk_token_id, len(base_tok)
    pieces = [[unk]] * len(jamo) + [[i for i in ids if i < n_base and i != unk] or [unk]
                                    for ids in piece_ids(completed, texts)]
    return ExpandedTokenizer(tokenizer=tok, mode="added-tokens", added_texts=jamo + texts,
                             added_ids=[tok.convert_tokens_to_ids(j) for j in jamo] + ids, notes=notes, piece_ids=pieces)


def add_as_merges(base_tok: Any, tokens: Sequence[NewToken], donor_tok: Any = None) -> ExpandedTokenizer:
    """`merge` mode on a copy of `base_tok` (BPE bases)."""
    from tokenizers import Tokenizer

    spec = tokenizer_spec(base_tok)
    plan = plan_merges(spec, tokens, donor_spec=tokenizer_spec(donor_tok) if donor_tok is not None else None,
                       base_model=base_tok.backend_tokenizer.model)
    if not plan.added:
        raise NothingToDoError(f"mode 'merge' could not make any of the {len(tokens)} new tokens reachable with "
                               "one appended merge each. Use mode=added-tokens.")
    backend = Tokenizer.from_str(json.dumps(plan.spec))
    bad = verify_merges(backend, plan, Convention.from_json(spec))
    if bad:
        raise TokenizerError(f"merge mode built a tokenizer that does not produce {len(bad)} planned tokens "
                             f"(first: {bad[0]!r}). Use mode=added-tokens and report this base tokenizer.")
    tok = clone_tokenizer(base_tok, backend)
    notes = [f"{len(plan.unreachable)} donor tokens not reachable by appended merges were left out"] if plan.unreachable else []
    if plan.support:
        notes.append(f"{plan.support} donor sub-tokens added as support to reach longer tokens")
    return ExpandedTokenizer(tokenizer=tok, mode="merge", added_texts=[t for t, _ in plan.added],
                             added_ids=[i for _, i in plan.added], unreachable=plan.unreachable, notes=notes,
                             piece_ids=plan.pieces, support=plan.support)


def build_expanded_tokenizer(base_tok: Any, tokens: Sequence[NewToken], mode: str, donor_tok: Any = None,
                             jamo_fallback: str = "complete") -> ExpandedTokenizer:
    """The expanded tokenizer for `mode` (`added-tokens` or `merge`; `donor_tok` lets merge follow the donor's merges)."""
    if mode == "merge":
        return add_as_merges(base_tok, tokens, donor_tok)
    return add_as_added_tokens(base_tok, tokens, jamo_fallback)

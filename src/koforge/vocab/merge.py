"""`merge` mode: extend a BPE base's vocabulary and merges so the model itself produces the new tokens.

Every old entry and merge keeps its id and rank; each new token gets the next
id and exactly one new merge, appended after all old merges. Because the new
merges rank last, BPE first runs every old merge to completion, so a word
without a new token is tokenized exactly as before; and because each new
token is Hangul text, a new merge can only fire on text containing Hangul:
English token sequences cannot change.

A new token t is reachable when, after the old merges and the new merges
already added, the base splits t's text into exactly two pieces that spell it
(no <unk> or byte-fallback piece); its merge joins those two. Tokens are
visited in donor rank order (shorter first), so most longer tokens are built
from shorter new ones. When the base splits t into more pieces, t is built
along the donor's own merge tree: the donor's two halves of t are added first
as *support* tokens (they may be pieces of a character, but always hold a
Hangul lead byte, so English still cannot change). Tokens still not reachable
are reported and left out.

The base's added tokens (specials) are also written into the BPE vocabulary
with their own ids: `tokenizers` otherwise re-numbers added tokens after the
grown model vocabulary, which would move every special token's id.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Sequence

from koforge._utils.errors import TokenizerError
from koforge._utils.progress import progress
from koforge.vocab.diff import NewToken
from koforge.vocab.text import Convention, readable_bytes

SUPPORTED = ("BPE",)


@dataclass(kw_only=True)
class MergePlan:
    """The result of `plan_merges`: the new tokenizer.json and what it added."""

    spec: dict[str, Any]
    added: list[tuple[str, int]] = field(default_factory=list)
    """(text, id) of each new token, in id order."""
    token_strings: list[str] = field(default_factory=list)
    """The vocabulary entry of each new token (its byte-level / `▁` form)."""
    pieces: list[list[int]] = field(default_factory=list)
    """Base ids of the pieces the base splits each new token into (for the mean init)."""
    unreachable: list[str] = field(default_factory=list)
    """Texts of tokens that no single appended merge can produce."""
    support: int = 0
    """How many of `added` are donor sub-tokens added only to reach a requested token."""


def check_merge_supported(spec: dict[str, Any]) -> Convention:
    """The base convention, or a TokenizerError naming the supported types and the other mode."""
    conv = Convention.from_json(spec)
    if conv.model_type not in SUPPORTED:
        raise TokenizerError(f"mode 'merge' does not support a {conv.model_type} base tokenizer; it supports "
                             f"{', '.join(SUPPORTED)} (byte-level BPE such as Qwen3/Llama 3, or SentencePiece-style BPE). "
                             "Use mode=added-tokens, which works with every tokenizer type.")
    return conv


def _apply_merges(pieces: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Plain BPE over `pieces` with the (new) merge ranks."""
    while len(pieces) > 1:
        best, best_i = None, -1
        for i in range(len(pieces) - 1):
            r = ranks.get((pieces[i], pieces[i + 1]))
            if r is not None and (best is None or r < best):
                best, best_i = r, i
        if best is None:
            break
        pieces = pieces[:best_i] + [pieces[best_i] + pieces[best_i + 1]] + pieces[best_i + 2:]
    return pieces


def donor_merge_tree(donor_spec: dict[str, Any] | None, base_conv: Convention) -> dict[str, tuple[str, str]]:
    """result -> (left, right) of the donor's merges, when donor and base write tokens the same way."""
    if not donor_spec or donor_spec.get("model", {}).get("type") != "BPE":
        return {}
    if Convention.from_json(donor_spec).style != base_conv.style or base_conv.style != "byte-level":
        return {}
    tree = {}
    for m in donor_spec["model"].get("merges", []):
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        tree.setdefault(a + b, (a, b))
    return tree


def _touches_hangul(token: str, conv: Convention) -> bool:
    # A byte-level support token must hold a lead byte of U+A000-U+DFFF (0xEA-0xED: Hangul), so that its
    # merge can never fire on text without Hangul (English stays exact).
    if conv.style != "byte-level":
        return True
    from koforge.vocab.text import unicode_to_bytes

    table = unicode_to_bytes()
    return any(0xEA <= table.get(c, 0) <= 0xED for c in token)


def _joins_to(pieces: list[str], target: str) -> bool:
    # Two pieces that spell the target: a character the base lacks is split into <unk> or <0xNN> byte pieces,
    # whose merge would build "▁가<unk>", not the token (and tokenizers refuses such a tokenizer.json).
    return len(pieces) == 2 and pieces[0] + pieces[1] == target


def plan_merges(spec: dict[str, Any], tokens: Sequence[NewToken], *, donor_spec: dict[str, Any] | None = None,
                base_model: Any = None, max_depth: int = 8) -> MergePlan:
    """Append vocabulary entries and merges for `tokens` to a BPE tokenizer.json (`spec` is not modified).

    A token the base splits into more than two pieces is built along the donor's own merge tree when donor
    and base are both byte-level: the donor's two halves are added first (as support tokens, which may be
    pieces of a character) and then the token itself.
    """
    from tokenizers import Tokenizer

    conv = check_merge_supported(spec)
    model = {**spec["model"], "vocab": dict(spec["model"]["vocab"]), "merges": list(spec["model"]["merges"])}
    spec = {**spec, "model": model}
    vocab: dict[str, int] = model["vocab"]
    merges: list = model["merges"]
    as_strings = bool(merges) and isinstance(merges[0], str)
    for added in spec.get("added_tokens", []):
        vocab.setdefault(added["content"], added["id"])
    next_id = [max(list(vocab.values()) + [a["id"] for a in spec.get("added_tokens", [])] + [-1]) + 1]
    if base_model is None:
        base_model = Tokenizer.from_str(json.dumps({**spec, "added_tokens": []})).model
    tree = donor_merge_tree(donor_spec, conv)

    ranks: dict[tuple[str, str], int] = {}
    plan = MergePlan(spec=spec)
    base_split: dict[str, list[str]] = {}

    def add(target: str, pieces: list[str], text: str) -> None:
        ranks[(pieces[0], pieces[1])] = len(ranks)
        merges.append(f"{pieces[0]} {pieces[1]}" if as_strings else [pieces[0], pieces[1]])
        vocab[target] = next_id[0]
        plan.added.append((text, next_id[0]))
        plan.token_strings.append(target)
        plan.pieces.append([vocab[p] for p in base_split[target]])
        next_id[0] += 1

    def ensure(target: str, text: str, depth: int) -> bool:
        if target in vocab:
            return True
        if target not in base_split:
            base_split[target] = [t.value for t in base_model.tokenize(target)]
        pieces = _apply_merges(base_split[target], ranks)
        if _joins_to(pieces, target):
            add(target, pieces, text)
            return True
        halves = tree.get(target)
        if depth >= max_depth or halves is None or not all(_touches_hangul(h, conv) or h in vocab for h in halves):
            return False
        if not all(ensure(h, _support_text(h, conv), depth + 1) for h in halves):
            return False
        pieces = _apply_merges(base_split[target], ranks)
        if _joins_to(pieces, target):
            add(target, pieces, text)
            return True
        return False

    requested = 0
    for tok in progress(sorted(tokens, key=lambda t: t.donor_id), desc="merges", leave=False):
        if ensure(conv.to_token(tok.text), tok.text, 0):
            requested += 1
        else:
            plan.unreachable.append(tok.text)
    plan.support = len(plan.added) - requested
    return plan


def _support_text(token: str, conv: Convention) -> str:
    # Support tokens may hold part of a character: their bytes are shown, never byte-level stand-ins ("ìķ").
    tt = conv.to_text(token)
    if tt.decodable:
        return tt.text
    return readable_bytes(token) if conv.style == "byte-level" else token


def verify_merges(backend: Any, plan: MergePlan, conv: Convention) -> list[str]:
    """Texts of planned tokens that the built tokenizer's model does not produce as one token (should be none)."""
    bad = []
    for (text, tid), target in zip(plan.added, plan.token_strings):
        out = backend.model.tokenize(target)
        if len(out) != 1 or out[0].id != tid:
            bad.append(text)
    return bad

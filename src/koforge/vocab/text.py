"""Token strings <-> the text they stand for, and the script filters.

Tokenizers store tokens in their own conventions: byte-level BPE writes bytes
as printable stand-ins (`ĠìķĪëħķ` is " 안녕"), SentencePiece marks a word start
with `▁`, WordPiece marks a continuation with `##`. Expansion compares and
adds tokens as real text, so every token is first turned into a `TokenText`:
its text (with one leading space when it starts a word) and whether it could
be decoded at all (a byte-level token holding half a UTF-8 character cannot).

Deliberately not done: guessing conventions from token statistics. The
convention is read from the tokenizer's own pipeline (model type, pre-tokenizer,
decoder), as saved in its `tokenizer.json`.
"""
from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Optional

from koforge.tokenizers.bytelevel import bytes_to_unicode  # noqa: F401  (re-exported for vocab users)

# Hangul syllables, conjoining jamo (+ extended A/B), compatibility jamo.
_HANGUL_RANGES = ((0xAC00, 0xD7A3), (0x1100, 0x11FF), (0xA960, 0xA97F), (0xD7B0, 0xD7FF), (0x3130, 0x318F))

SCRIPTS = ("hangul", "any")


def is_hangul(ch: str) -> bool:
    """True for a Hangul syllable or jamo character."""
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _HANGUL_RANGES)


def is_hangul_syllable(ch: str) -> bool:
    """True for one of the 11,172 precomposed Hangul syllables."""
    return 0xAC00 <= ord(ch) <= 0xD7A3


@functools.lru_cache(maxsize=1)
def unicode_to_bytes() -> dict[str, int]:
    return {c: b for b, c in bytes_to_unicode().items()}


@functools.lru_cache(maxsize=1)
def _to_latin1() -> dict[int, int]:
    # str.translate table: byte-level stand-in -> the latin-1 character of its byte (C-speed decoding).
    return {ord(c): b for b, c in bytes_to_unicode().items()}


def readable_bytes(token: str) -> str:
    """A byte-level token as text, its bytes that are no whole UTF-8 character written `<0xEC>` (byte-fallback style)."""
    raw = token.translate(_to_latin1()).encode("latin-1", errors="replace")
    out, i = [], 0
    while i < len(raw):
        for n in (4, 3, 2, 1):
            try:
                out.append(raw[i:i + n].decode("utf-8"))
                i += n
                break
            except UnicodeDecodeError:
                continue
        else:
            out.append(f"<0x{raw[i]:02X}>")
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class TokenText:
    """The text a vocabulary entry stands for."""

    text: str
    """Real text; starts with one space when the token starts a word (byte-level `Ġ`, `▁`)."""
    decodable: bool = True
    """False for byte-level pieces that are not whole UTF-8 characters."""

    @property
    def core(self) -> str:
        """The text without its word-start space."""
        return self.text[1:] if self.text.startswith(" ") else self.text


def _walk(component: Optional[dict]) -> list[dict]:
    """A pipeline component and, for a Sequence, its members."""
    if not component:
        return []
    items = [component]
    for key in ("pretokenizers", "normalizers", "decoders"):
        for sub in component.get(key, []) or []:
            items.extend(_walk(sub))
    return items


@dataclass(frozen=True)
class Convention:
    """How one tokenizer writes text into token strings."""

    model_type: str
    """`BPE`, `WordPiece`, `Unigram` or `WordLevel`."""
    style: str
    """`byte-level`, `metaspace`, `wordpiece` or `plain`."""
    continuing_prefix: str = ""
    metaspace: str = "▁"

    @classmethod
    def from_json(cls, spec: dict[str, Any]) -> "Convention":
        """Read the convention from a parsed `tokenizer.json`."""
        model = spec.get("model", {}) or {}
        mtype = model.get("type") or ("WordPiece" if "continuing_subword_prefix" in model and "merges" not in model else "BPE")
        parts = _walk(spec.get("pre_tokenizer")) + _walk(spec.get("decoder"))
        types = {p.get("type") for p in parts}
        if "ByteLevel" in types:
            return cls(model_type=mtype, style="byte-level")
        if "Metaspace" in types:
            repl = next((p.get("replacement", "▁") for p in parts if p.get("type") == "Metaspace"), "▁")
            return cls(model_type=mtype, style="metaspace", metaspace=repl)
        if mtype == "WordPiece":
            return cls(model_type=mtype, style="wordpiece", continuing_prefix=model.get("continuing_subword_prefix") or "##")
        if any(p.get("type") == "Replace" and "▁" in str(p) for p in parts):
            return cls(model_type=mtype, style="metaspace")
        return cls(model_type=mtype, style="plain", continuing_prefix=model.get("continuing_subword_prefix") or "")

    def to_text(self, token: str) -> TokenText:
        """The text a token string stands for."""
        if self.style == "byte-level":
            try:
                return TokenText(text=token.translate(_to_latin1()).encode("latin-1").decode("utf-8"))
            except (UnicodeEncodeError, UnicodeDecodeError):
                return TokenText(text=token, decodable=False)
        if self.style == "metaspace":
            text = token.replace(self.metaspace, " ")
            if re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", token):  # byte-fallback pieces
                return TokenText(text=token, decodable=False)
            return TokenText(text=text)
        if self.continuing_prefix and token.startswith(self.continuing_prefix) and len(token) > len(self.continuing_prefix):
            return TokenText(text=token[len(self.continuing_prefix):])
        # A WordPiece word-initial piece starts a word.
        return TokenText(text=(" " + token) if self.style == "wordpiece" else token)

    def to_token(self, text: str) -> str:
        """The token string this tokenizer would use for `text` (inverse of `to_text`)."""
        if self.style == "byte-level":
            table = bytes_to_unicode()
            return "".join(table[b] for b in text.encode("utf-8"))
        if self.style == "metaspace":
            return text.replace(" ", self.metaspace)
        if self.style == "wordpiece":
            return text[1:] if text.startswith(" ") else self.continuing_prefix + text
        return text


def passes_filter(core: str, script: str, pattern: Optional[re.Pattern]) -> bool:
    """Whether a token's core text is addable: no control/space chars, right script, matches `pattern`."""
    if not core or core != core.strip() or any(ch.isspace() for ch in core):
        return False
    if any(unicodedata.category(ch).startswith("C") or ch == "\ufffd" for ch in core):
        return False
    if script == "hangul" and not all(is_hangul(ch) for ch in core):
        return False
    if pattern is not None and not pattern.fullmatch(core):
        return False
    return True


def decomposes_hangul(normalize: Any) -> bool:
    """Whether a normalizer callable breaks precomposed Hangul apart (e.g. BERT's NFD accent stripping).

    Only the syllables count: SentencePiece-style normalizers that prepend or substitute "▁" keep them whole,
    and their added tokens must stay normalized (matched raw, each split piece got its own "▁" on decoding).
    """
    sample = "한국어"
    try:
        return sample not in normalize(sample)
    except Exception:  # a normalizer that cannot run on its own changes nothing we can see
        return False

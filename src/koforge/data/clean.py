"""Cleaning that Korean text needs, and de-duplication.

`clean_text` applies, in order: Unicode normalisation (NFC by default, so
decomposed Hangul jamo from macOS file names or old web pages become
syllables), HTML entity unescaping and tag removal (`<script>` and `<style>`
elements go with their contents, which are code, not text), control-character removal
(tab and newline are kept), whitespace normalisation, then the length and
Hangul-ratio filters. It returns `None` for a document a filter drops.

De-duplication is exact (a 16-byte BLAKE2 digest of the cleaned text, so a
100M-document corpus costs ~2 GB at most) or near (MinHash LSH over character
n-grams via `datasketch`; Korean has no reliable word boundaries for
shingling, so characters are used). Neither rewrites text.
"""
from __future__ import annotations

import dataclasses
import hashlib
import html
import re
import unicodedata
from typing import Iterable, Iterator, Optional

from koforge._utils.errors import ConfigError

_SCRIPT_OR_STYLE = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.S | re.I)
# Korean writes titles in angle brackets (<Love Letter>, <BOB>, <In English>), so a tag is a comment, a closing
# tag, an opening tag with a name=value attribute, or a bare tag (<p>, <br/>) of a common HTML element only.
_TAG = re.compile(r"<!--.*?-->|</[A-Za-z][\w:-]*\s*>"
                  r"|<(?=[^<>]*=)[A-Za-z][\w:-]*(?:\s+[^\s<>=/]+(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s\"'<>]+))?)+\s*/?>"
                  r"|<(?P<bare>[A-Za-z][A-Za-z0-9]*)\s*/?>", re.S)
_HTML_ELEMENTS = frozenset("a abbr b blockquote body br center code dd del div dl dt em font h1 h2 h3 h4 h5 h6 head hr "
                           "html i iframe img li link meta noscript ol p pre small span strike strong sub sup table "
                           "tbody td tfoot th thead title tr u ul".split())
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\ufeff]")
_HSPACE = re.compile(r"[^\S\n]+")
_MANY_NEWLINES = re.compile(r"\n\s*\n\s*(\n\s*)+")
_SPACE_AROUND_NEWLINE = re.compile(r"[^\S\n]*\n[^\S\n]*")

NORMALIZATIONS = ("nfc", "nfkc", "none")


def is_hangul(ch: str) -> bool:
    """Hangul syllables, jamo and compatibility jamo."""
    o = ord(ch)
    return 0xAC00 <= o <= 0xD7A3 or 0x1100 <= o <= 0x11FF or 0x3130 <= o <= 0x318F or 0xA960 <= o <= 0xA97F or 0xD7B0 <= o <= 0xD7FF


def is_hangul_syllable(ch: str) -> bool:
    """A precomposed Hangul syllable (U+AC00..U+D7A3)."""
    return 0xAC00 <= ord(ch) <= 0xD7A3


def hangul_ratio(text: str) -> float:
    """Share of Hangul characters among the non-space characters (0 for an empty text)."""
    chars = [c for c in text if not c.isspace()]
    return sum(map(is_hangul, chars)) / len(chars) if chars else 0.0


@dataclasses.dataclass(kw_only=True)
class CleanConfig:
    """How `clean_text` cleans and filters one document."""

    normalization: str = "nfc"
    """Unicode normal form: nfc (recommended for Korean), nfkc (also folds full-width forms), or none."""
    strip_html: bool = True
    """Unescape HTML entities, remove tags and comments, and drop <script>/<style> elements with their contents."""
    strip_control: bool = True
    """Remove control characters (except tab and newline), zero-width spaces and BOMs."""
    normalize_whitespace: bool = True
    """Collapse runs of spaces/tabs to one space, at most one blank line, strip the ends."""
    single_line: bool = False
    """Also turn newlines into spaces (one document per line)."""
    min_chars: int = 1
    """Drop documents shorter than this (after cleaning)."""
    max_chars: Optional[int] = None
    """Drop documents longer than this (None: no limit)."""
    min_hangul_ratio: float = 0.0
    """Drop documents whose share of Hangul among non-space characters is below this."""
    dedup: str = "exact"
    """Corpus-level de-duplication (`clean_corpus`): none, exact (content hash) or near (MinHash, also exact)."""
    near_threshold: float = 0.8
    """Estimated Jaccard similarity of character 5-grams at which `dedup="near"` drops a document."""

    def __post_init__(self) -> None:
        if self.normalization not in NORMALIZATIONS:
            raise ConfigError(f"normalization={self.normalization!r} is not one of {', '.join(NORMALIZATIONS)}.")
        if self.min_chars < 0:
            raise ConfigError(f"min_chars={self.min_chars} must be >= 0.")
        if self.max_chars is not None and self.max_chars < max(self.min_chars, 1):
            raise ConfigError(f"max_chars={self.max_chars} must be >= min_chars ({self.min_chars}) and >= 1.")
        if not 0.0 <= self.min_hangul_ratio <= 1.0:
            raise ConfigError(f"min_hangul_ratio={self.min_hangul_ratio} must be between 0 and 1.")
        if self.dedup not in ("none", "exact", "near"):
            raise ConfigError(f"dedup={self.dedup!r} is not one of none, exact, near.")
        if not 0.0 < self.near_threshold <= 1.0:
            raise ConfigError(f"near_threshold={self.near_threshold} must be in (0, 1].")


def normalize(text: str, form: str = "nfc") -> str:
    """Apply a Unicode normal form by name ('none' returns the text unchanged)."""
    return text if form == "none" else unicodedata.normalize(form.upper(), text)


def _drop_tag(match: re.Match) -> str:
    bare = match.group("bare")
    return match.group(0) if bare is not None and bare.lower() not in _HTML_ELEMENTS else " "


def clean_text(text: str, config: CleanConfig | None = None) -> str | None:
    """The cleaned document, or None when a filter drops it."""
    config = config or CleanConfig()
    text = normalize(text, config.normalization)
    if config.strip_html:
        # tags first: an escaped "&lt;b&gt;" is literal text, not markup
        text = html.unescape(_TAG.sub(_drop_tag, _SCRIPT_OR_STYLE.sub(" ", text)))
        text = normalize(text, config.normalization)  # entities may expand to decomposed jamo
    if config.strip_control:
        text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    if config.single_line:
        text = text.replace("\n", " ")
    if config.normalize_whitespace:
        text = _HSPACE.sub(" ", text)
        text = _SPACE_AROUND_NEWLINE.sub("\n", text)
        text = _MANY_NEWLINES.sub("\n\n", text).strip()
    n = len(text)
    if n == 0 or n < config.min_chars or (config.max_chars is not None and n > config.max_chars):
        return None
    if config.min_hangul_ratio > 0 and hangul_ratio(text) < config.min_hangul_ratio:
        return None
    return text


def text_digest(text: str) -> bytes:
    """A 16-byte content digest (exact de-duplication, content-hash splits)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def exact_dedup(texts: Iterable[str], seen: set[bytes] | None = None) -> Iterator[str]:
    """Yield each distinct text once, in first-seen order."""
    seen = set() if seen is None else seen
    for text in texts:
        key = text_digest(text)
        if key not in seen:
            seen.add(key)
            yield text


class NearDuplicateFilter:
    """MinHash LSH over character n-grams: `is_duplicate(text)` remembers what it saw.

    A text is a near-duplicate when it shares a band of its MinHash signature
    with a text kept before (datasketch's banding: its `MinHashLSH` picks the
    bands and rows that suit `threshold`), which is what `MinHashLSH.query`
    answers. The index keeps one 8-byte digest per band of each kept text in
    one set, about 0.3 KB per kept text at num_perm=64 (200 MB for the 668K
    NSMC reviews): `MinHashLSH` itself keeps each band twice, as bytes, with a
    set per bucket, ~2.3 KB.
    """

    def __init__(self, threshold: float = 0.8, num_perm: int = 64, ngram: int = 5, seed: int = 1) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ConfigError(f"near-duplicate threshold={threshold} must be in (0, 1].")
        if ngram < 1 or num_perm < 8:
            raise ConfigError(f"ngram={ngram} must be >= 1 and num_perm={num_perm} >= 8.")
        from datasketch import MinHash, MinHashLSH

        self.threshold, self.num_perm, self.ngram, self.seed = threshold, num_perm, ngram, seed
        banding = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.bands, self.rows = banding.b, banding.r
        self._buckets: set[int] = set()
        # The permutations drawn once and shared: MinHash(seed=...) draws them again for every text, which was
        # 60% of the filter's time (the same seed gives the same permutations, so the same hashes).
        self._template = MinHash(num_perm=num_perm, seed=seed)

    def _minhash(self, text: str):
        from datasketch import MinHash

        t = self._template
        m = MinHash(num_perm=self.num_perm, seed=self.seed, permutations=t.permutations, scheme=t.scheme)
        compact = " ".join(text.split())
        grams = {compact[i:i + self.ngram] for i in range(max(1, len(compact) - self.ngram + 1))}
        m.update_batch([g.encode("utf-8") for g in grams])
        return m

    def _band_keys(self, text: str) -> list[int]:
        """One digest per band, salted with the band's index (a band matches only the same band)."""
        values = self._minhash(text).hashvalues
        keys = []
        for band in range(self.bands):
            digest = hashlib.blake2b(values[band * self.rows:(band + 1) * self.rows].tobytes(), digest_size=8,
                                     salt=band.to_bytes(2, "little"))
            keys.append(int.from_bytes(digest.digest(), "little"))
        return keys

    def is_duplicate(self, text: str) -> bool:
        """True when a similar text was seen before; otherwise remember this one."""
        keys = self._band_keys(text)
        if any(k in self._buckets for k in keys):
            return True
        self._buckets.update(keys)
        return False


def near_dedup(texts: Iterable[str], threshold: float = 0.8, num_perm: int = 64, ngram: int = 5) -> Iterator[str]:
    """Yield texts that are not near-duplicates of an earlier one."""
    f = NearDuplicateFilter(threshold=threshold, num_perm=num_perm, ngram=ngram)
    for text in texts:
        if not f.is_duplicate(text):
            yield text

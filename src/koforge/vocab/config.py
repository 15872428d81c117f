"""`ExpansionConfig`: every choice of `koforge expand` (diff filter, mode, init)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from koforge._utils.errors import ConfigError
from koforge.vocab.text import SCRIPTS

MODES = ("added-tokens", "merge")
INITS = ("mean", "random", "focus")
JAMO_FALLBACKS = ("complete", "keep")


@dataclass(kw_only=True)
class ExpansionConfig:
    """How donor tokens are selected, added to the base and initialised."""

    mode: str = "added-tokens"
    """`added-tokens` (any tokenizer type: new tokens are matched in the text before the model runs) or
    `merge` (BPE bases: new entries + merges, so the BPE model itself produces them)."""
    init: str = "mean"
    """New rows: `mean` of the base rows of the pieces the base tokenizer gives for the token's text,
    `random` with the old rows' per-dimension mean/std, or `focus` (weighted old rows of similar tokens)."""
    noise_std: float = 0.0
    """Gaussian noise added to each new row, as a multiple of the old rows' per-dimension std (0 = none)."""
    seed: int = 0
    """Seed of the random init and the noise."""
    script: str = "hangul"
    """Which donor tokens may be added: `hangul` (text made only of Hangul syllables/jamo, plus a word-start
    space) or `any`."""
    pattern: Optional[str] = None
    """Optional regex the token text (without its word-start space) must fully match, on top of `script`."""
    reference: Optional[str] = None
    """Optional reference corpus (UTF-8 text, one document a line): donor tokens are counted in its
    donor tokenization, ranked by frequency and filtered by `min_frequency`."""
    reference_max_lines: int = 50000
    """At most this many lines of `reference` are read."""
    min_frequency: int = 0
    """Drop donor tokens seen fewer times in `reference` (needs `reference`)."""
    max_new_tokens: Optional[int] = None
    """Keep at most this many new tokens (most frequent first; by donor rank without `reference`)."""
    jamo_fallback: str = "complete"
    """WordPiece bases whose normaliser decomposes Hangul into jamo (BERT accent stripping): `complete` adds
    the modern jamo missing from the base vocabulary (word-start and `##` pieces), so a syllable no new token
    covers falls back to known jamo instead of turning its whole word into [UNK]; `keep` leaves the base as is."""
    focus_top_k: int = 8
    """`focus` init: number of similar old tokens combined for each new token."""
    focus_temperature: float = 0.05
    """`focus` init: softmax temperature over the similarities of those tokens."""
    pad_to_multiple_of: Optional[int] = None
    """Round the embedding matrix rows up to a multiple of this (e.g. 64 for tensor cores)."""
    korean_eval: Optional[str] = None
    """Korean text file, one text a line, for the report's tokens-per-line figures (default: `reference`, else a sample)."""
    english_eval: Optional[str] = None
    """English text file for the report's 'English token sequence unchanged' share (default: a few built-in lines)."""
    eval_max_lines: int = 2000
    """At most this many lines of each eval file are used in the report."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}; got '{self.mode}'.")
        if self.init not in INITS:
            raise ConfigError(f"init must be one of {', '.join(INITS)}; got '{self.init}'.")
        if self.jamo_fallback not in JAMO_FALLBACKS:
            raise ConfigError(f"jamo_fallback must be one of {', '.join(JAMO_FALLBACKS)}; got '{self.jamo_fallback}'.")
        if self.script not in SCRIPTS:
            raise ConfigError(f"script must be one of {', '.join(SCRIPTS)}; got '{self.script}'. Use `pattern` for other scripts.")
        if not self.noise_std >= 0:
            raise ConfigError(f"noise_std must be >= 0; got {self.noise_std}.")
        if self.min_frequency < 0:
            raise ConfigError(f"min_frequency must be >= 0; got {self.min_frequency}.")
        if self.min_frequency > 0 and not self.reference:
            raise ConfigError(f"min_frequency={self.min_frequency} needs a reference corpus: set reference=PATH.")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1 or null; got {self.max_new_tokens}.")
        if self.focus_top_k < 1 or not self.focus_temperature > 0:
            raise ConfigError(f"focus_top_k must be >= 1 and focus_temperature > 0; got {self.focus_top_k}, {self.focus_temperature}.")
        if self.pad_to_multiple_of is not None and self.pad_to_multiple_of < 1:
            raise ConfigError(f"pad_to_multiple_of must be >= 1 or null; got {self.pad_to_multiple_of}.")
        if self.reference_max_lines < 1 or self.eval_max_lines < 1:
            raise ConfigError("reference_max_lines and eval_max_lines must be >= 1.")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as e:
                raise ConfigError(f"pattern '{self.pattern}' is not a valid regex ({e}).") from None

    def compiled_pattern(self) -> Optional[re.Pattern]:
        return re.compile(self.pattern) if self.pattern else None

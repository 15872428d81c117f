"""`DemoConfig`: which steps `koforge demo` runs and how big each one is.

Two size presets: the default (about 10 minutes on a 2-core CPU) and `quick`
(about 2 minutes, for tests and a first look). Every size is a field, so a
user can grow one step (e.g. `lm_minutes=30`) without touching the others.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import List, Optional

from koforge._utils.errors import ConfigError

STEPS = ("tokenizer", "expand", "embed", "lm", "compress")
"""The demo's steps, in order; each can be skipped or run alone."""


@dataclass(kw_only=True)
class DemoConfig:
    """Steps and sizes of the demo."""

    steps: List[str] = field(default_factory=lambda: list(STEPS))
    """Steps to run, a subset of STEPS (always run in STEPS order)."""
    seed: int = 0
    heldout_docs: int = 1000
    """Reviews held out of training (tokenizer comparison, LM perplexity, compression)."""
    # tokenizer
    tokenizer_docs: int = 19000
    """Reviews the Korean tokenizer is trained on (and the LM pretrained on)."""
    vocab_size: int = 8192
    """Size of the Korean byte-level BPE (also the LM's vocabulary)."""
    # expand + embed
    max_new_tokens: Optional[int] = None
    """Cap on Hangul tokens added to all-MiniLM-L6-v2 (None: all the donor's)."""
    distill_texts: int = 2048
    """Sentences whose original-model embeddings teach the new rows."""
    distill_steps: int = 150
    distill_lr: float = 5e-3
    sts_pairs: Optional[int] = None
    """KorSTS train pairs of the fine-tuning stage (None: the whole bundled 2,000)."""
    sts_epochs: float = 1.0
    embed_minutes: float = 2.0
    """Wall-clock cap of each training stage."""
    korsts_eval_pairs: Optional[int] = None
    """KorSTS test pairs scored before / after (None: all 1,379)."""
    # lm
    lm_d_model: int = 256
    lm_layers: int = 4
    lm_heads: int = 4
    lm_kv_heads: int = 2
    lm_d_ff: int = 688
    lm_seq_len: int = 128
    lm_batch: int = 16
    lm_steps: int = 1500
    lm_minutes: float = 3.0
    """Wall-clock cap of pretraining (the run stops at lm_steps or here)."""
    lm_lr: float = 2e-3
    generation_tokens: int = 24
    # compress
    compress_docs: int = 200
    speed_repeats: int = 3

    def __post_init__(self) -> None:
        unknown = [s for s in self.steps if s not in STEPS]
        if unknown:
            raise ConfigError(f"unknown demo step(s) {', '.join(unknown)}; the steps are {', '.join(STEPS)}.")
        if not self.steps:
            raise ConfigError(f"no demo step left to run; choose among {', '.join(STEPS)}.")
        self.steps = [s for s in STEPS if s in self.steps]
        for name in ("heldout_docs", "tokenizer_docs", "distill_texts", "distill_steps", "lm_steps", "lm_batch",
                     "lm_seq_len", "compress_docs", "speed_repeats", "generation_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"DemoConfig.{name} must be >= 1, got {getattr(self, name)}.")
        for name in ("max_new_tokens", "sts_pairs", "korsts_eval_pairs"):
            value = getattr(self, name)
            if value is not None and value < 1:  # korsts_eval_pairs=-1 scored an empty file after all the training
                raise ConfigError(f"DemoConfig.{name} must be >= 1 or null (all of them), got {value}.")
        for name in ("embed_minutes", "lm_minutes", "sts_epochs", "distill_lr", "lm_lr"):
            if not getattr(self, name) > 0:  # 0 or less ran one step and reported it as ok
                raise ConfigError(f"DemoConfig.{name} must be > 0, got {getattr(self, name)}.")
        if self.heldout_docs + self.tokenizer_docs > 20000:
            raise ConfigError(f"heldout_docs + tokenizer_docs = {self.heldout_docs + self.tokenizer_docs} exceeds the "
                              "20,000 reviews of the bundled sample.")
        if self.vocab_size < 512:
            raise ConfigError(f"DemoConfig.vocab_size must be >= 512, got {self.vocab_size}.")
        if self.lm_heads < 1 or self.lm_kv_heads < 1 or self.lm_d_model % self.lm_heads or self.lm_heads % self.lm_kv_heads:
            raise ConfigError(f"lm_d_model={self.lm_d_model}, lm_heads={self.lm_heads}, lm_kv_heads={self.lm_kv_heads}: "
                              "lm_d_model must divide by lm_heads and lm_heads by lm_kv_heads (e.g. 256, 4, 2).")


QUICK = dict(heldout_docs=300, tokenizer_docs=4000, vocab_size=2048, max_new_tokens=1000, distill_texts=192,
             distill_steps=8, sts_pairs=128, embed_minutes=0.3, korsts_eval_pairs=150, lm_d_model=96, lm_layers=2,
             lm_heads=4, lm_kv_heads=2, lm_d_ff=256, lm_seq_len=64, lm_batch=8, lm_steps=60, lm_minutes=0.4,
             generation_tokens=12, compress_docs=40, speed_repeats=2)
"""Sizes of `koforge demo --quick` (about 2 minutes on a 2-core CPU)."""


def demo_config(quick: bool = False, steps: Optional[List[str]] = None, skip: Optional[List[str]] = None,
                **overrides) -> DemoConfig:
    """The default or quick preset, restricted to `steps` minus `skip`, with field overrides."""
    chosen = list(steps) if steps else list(STEPS)
    for s in list(chosen) + list(skip or []):
        if s not in STEPS:
            raise ConfigError(f"unknown demo step '{s}'; the steps are {', '.join(STEPS)}.")
    chosen = [s for s in chosen if s not in set(skip or [])]
    base = {**(QUICK if quick else {}), **overrides}
    known = {f.name for f in dataclasses.fields(DemoConfig)}
    bad = sorted(set(base) - known)
    if bad:
        raise ConfigError(f"unknown demo setting(s) {', '.join(bad)}; known: {', '.join(sorted(known))}.")
    return DemoConfig(steps=chosen, **base)

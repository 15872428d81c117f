"""koforge.vocab: teach an existing model a donor tokenizer's tokens (analyze, diff, expand).

Public API: `ExpansionConfig`, `expand_vocabulary` -> `ExpansionResult`, `analyze_expansion`,
`diff_vocabularies`. Modules: `text` (token conventions), `diff`, `analyze`, `build` /
`merge` (the two tokenizer modes), `init_embeddings`, `expand`, `report`.
"""
from __future__ import annotations

from koforge._utils.lazy import lazy_exports

__all__, __getattr__ = lazy_exports("koforge.vocab", (
    "config:ExpansionConfig expand:ExpansionResult,expand_vocabulary analyze:analyze_expansion diff:diff_vocabularies"))

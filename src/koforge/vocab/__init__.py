"""koforge.vocab: teach an existing model a donor tokenizer's tokens (analyze, diff, expand).

Public API: `ExpansionConfig`, `expand_vocabulary` -> `ExpansionResult`, `analyze_expansion`,
`diff_vocabularies`. Modules: `text` (token conventions), `diff`, `analyze`, `build` /
`merge` (the two tokenizer modes), `init_embeddings`, `expand`, `report`.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ExpansionConfig": "koforge.vocab.config",
    "ExpansionResult": "koforge.vocab.expand",
    "expand_vocabulary": "koforge.vocab.expand",
    "analyze_expansion": "koforge.vocab.analyze",
    "diff_vocabularies": "koforge.vocab.diff",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'koforge.vocab' has no attribute {name!r}")

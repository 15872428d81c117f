"""koforge.embeddings: Korean sentence embeddings trained in stages.

A recipe (`recipe.py`) lists stages; each picks a trainable scope
(`scopes.py`: new rows, embeddings, EEVE adapters, LoRA, top blocks), an
objective (`losses.py`: SimCSE, InfoNCE, CoSENT, AnglE, distillation, with
GradCache) and data (`data.py`), trains with the sentence-transformers trainer
(`train.py`), saves a `SentenceTransformer`-loadable checkpoint and evaluates
it (`evaluate.py` over `koforge.eval`). Names resolve lazily (no torch import
until used).
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Recipe": "koforge.embeddings.recipe", "StageConfig": "koforge.embeddings.recipe",
    "RecipeResult": "koforge.embeddings.recipe", "load_recipe": "koforge.embeddings.recipe",
    "run_recipe": "koforge.embeddings.recipe", "EmbeddingModelConfig": "koforge.embeddings.model",
    "build_embedding_model": "koforge.embeddings.model", "load_embedder": "koforge.embeddings.model",
    "apply_scope": "koforge.embeddings.scopes", "AdapterConfig": "koforge.embeddings.adapters",
    "EvalSuite": "koforge.embeddings.evaluate", "run_suite": "koforge.embeddings.evaluate",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'koforge.embeddings' has no attribute {name!r}")

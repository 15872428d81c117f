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

from koforge._utils.lazy import lazy_exports

__all__, __getattr__ = lazy_exports("koforge.embeddings", (
    "recipe:Recipe,StageConfig,RecipeResult,load_recipe,run_recipe "
    "model:EmbeddingModelConfig,build_embedding_model,load_embedder scopes:apply_scope adapters:AdapterConfig "
    "evaluate:EvalSuite,run_suite"))

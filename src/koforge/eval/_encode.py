"""The one way evaluators call a model: any object with `.encode(list[str], ...) -> array`."""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from koforge._utils.errors import ConfigError


def _show_progress(n_texts: int, batch_size: int) -> bool:
    """A bar past a few batches (KorQuAD's 964 paragraphs took ~2 minutes on MiniLM here), unless KOFORGE_PROGRESS=0."""
    return n_texts > 4 * batch_size and os.environ.get("KOFORGE_PROGRESS", "1") != "0"


def encode(model: Any, texts: Sequence[str], batch_size: int = 64, prompt: str | None = None) -> np.ndarray:
    """Embed `texts` with `model.encode` as a float32 (N, D) array.

    Passes `batch_size`/`convert_to_numpy` when the encoder accepts them
    (SentenceTransformer does); a plain `encode(texts)` works too.
    """
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):  # str.encode exists, and means something else
        raise ConfigError(f"model '{model}' is a name or path, not a loaded model. Load it first: "
                          "koforge.embeddings.model.build_embedding_model(path) or SentenceTransformer(path).")
    if isinstance(texts, str):
        raise ConfigError("texts must be a list of strings, not one string: wrap it in a list.")
    if not hasattr(model, "encode"):
        raise ConfigError(f"model of type {type(model).__name__} has no .encode(list[str]) method. "
                          "Pass a SentenceTransformer or any object with encode().")
    texts = [f"{prompt}{t}" for t in texts] if prompt else list(texts)
    try:
        out = model.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=_show_progress(len(texts), batch_size))
    except TypeError:
        out = model.encode(texts)
    if hasattr(out, "detach"):
        out = out.detach().float().cpu().numpy()
    return np.asarray(out, dtype=np.float32)

"""Teacher embeddings for the `distill` objective, computed once and cached.

The student learns to reproduce the teacher's sentence embedding of the same
text under the teacher's own tokenizer (e.g. the model before vocabulary
expansion teaching the expanded one's new rows). Caching matters on CPU: the
teacher pass over 8k sentences costs minutes, far more than one epoch of the
student's embedding-row updates.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from koforge._utils.io import atomic_file


def _weights_identity(teacher: str) -> str:
    """Size and modification time of a local teacher's weight and config files: a teacher retrained or
    replaced at the same path must not reuse the old embeddings ("" for a hub name)."""
    folder = Path(teacher).expanduser()
    if not folder.is_dir():
        return ""
    files = sorted(p for pattern in ("**/*.safetensors", "**/*.bin", "**/config*.json") for p in folder.glob(pattern))
    return ";".join(f"{p.relative_to(folder)}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)


def teacher_embeddings(teacher: str, texts: Sequence[str], cache_path: str | Path, *, device: str = "cpu",
                       max_length: Optional[int] = None, batch_size: int = 64) -> np.ndarray:
    """(N, D) teacher embeddings of `texts`, read from `cache_path` when it holds the same texts, teacher
    (name and, for a local folder, its weight files) and max_length."""
    from koforge.embeddings.encode import FastEncoder
    from koforge.embeddings.model import build_embedding_model

    cache_path = Path(cache_path)
    key = hashlib.sha256(("\n".join(texts) + f"|{teacher}|{max_length}|{_weights_identity(teacher)}").encode("utf-8")).hexdigest()[:16]
    keyed = cache_path.with_name(f"{cache_path.stem}-{key}.npy")
    if keyed.exists():
        return np.load(keyed)
    model = build_embedding_model(teacher, device=device)
    if max_length:
        model.max_seq_length = max_length
    emb = FastEncoder(model, batch_size=batch_size).encode(list(texts))
    keyed.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(keyed) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, emb)
    return emb

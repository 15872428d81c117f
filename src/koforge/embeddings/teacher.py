"""Teacher embeddings for the `distill` objective, computed once and cached.

The student learns to reproduce the teacher's sentence embedding of the same
text under the teacher's own tokenizer (e.g. the model before vocabulary
expansion teaching the expanded one's new rows). Caching matters on CPU: the
teacher pass over 8k sentences costs minutes, far more than one epoch of the
student's embedding-row updates.

Both sides embed the same text: the teacher gets the part of each text the
student sees within its training length (`student_visible_texts`), read to its
own length limit. Cutting both at one token count would give them different
spans, since the two tokenizers split Korean very differently (MiniLM's into
jamo, ~3x the tokens of a Korean BPE).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from koforge._utils.io import atomic_file
from koforge._utils.logging import get_logger

log = get_logger(__name__)


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


def student_visible_texts(tokenizer, texts: Sequence[str], max_length: int) -> list[str]:
    """Each text cut where the student's tokenizer truncates it at `max_length` tokens (special tokens
    included, as sentence-transformers tokenizes); texts that fit are kept whole. A tokenizer without
    offsets (a slow one) leaves the texts whole."""
    if not getattr(tokenizer, "is_fast", False):
        return list(texts)
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, return_offsets_mapping=True)
    out = []
    for text, offsets in zip(texts, enc["offset_mapping"]):
        end = max((e for s, e in offsets if e > s), default=0)  # special tokens have empty spans
        out.append(text if not text[end:].strip() else text[:end])
    cut = sum(a != b for a, b in zip(out, texts))
    if cut:
        log.info("teacher texts: %d of %d cut to the part the student sees in %d tokens", cut, len(out), max_length)
    return out

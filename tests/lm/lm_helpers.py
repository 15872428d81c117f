"""Tiny shards and tiny configs shared by the LM tests (not a test module)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from koforge.data.shards import ShardManifest, token_dtype, write_split
from koforge.lm.config import LMConfig

VOCAB = 64
EOS = 0


def tiny_config(**overrides) -> LMConfig:
    base = dict(vocab_size=VOCAB, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64, max_seq_len=64)
    base.update(overrides)
    return LMConfig(**base)


def write_tiny_shards(folder: Path, n_docs: int = 200, seed: int = 0, fingerprint: str = "test",
                      val_split: str | None = "val") -> Path:
    """A learnable toy corpus: documents are runs of counting sequences modulo the vocabulary.

    `fingerprint`: the tokenizer the manifest records (a run given a tokenizer checks it is the shards' one).
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    dtype = token_dtype(VOCAB)

    def docs(n: int):
        for _ in range(n):
            start, length = int(rng.integers(1, VOCAB)), int(rng.integers(8, 40))
            ids = [1 + (start + i) % (VOCAB - 1) for i in range(length)]
            yield ids, 3 * length

    splits = {"train": write_split(folder, "train", docs(n_docs), eos_id=EOS, dtype=dtype)}
    if val_split:
        splits[val_split] = write_split(folder, val_split, docs(max(10, n_docs // 10)), eos_id=EOS, dtype=dtype)
    ShardManifest(dtype=dtype.name, eos_id=EOS, vocab_size=VOCAB, tokenizer_fingerprint=fingerprint, splits=splits).write(folder)
    return folder

"""Fast inference: length-sorted batches under `torch.inference_mode`.

SentenceTransformer.encode already sorts by length; what this adds is
`inference_mode` (no version counters), token-count sorting on the real
tokenizer output instead of character length, and a bigger default batch on
CPU. The bench reports its throughput against SentenceTransformer's own
`encode` on the same saved model.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch


class FastEncoder:
    """Wraps a SentenceTransformer; `.encode(texts) -> (N, D) float32 array`."""

    def __init__(self, model: Any, batch_size: int = 64) -> None:
        self.model = model.eval()
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str], batch_size: int | None = None, prompt: str | None = None,
               **_: Any) -> np.ndarray:
        texts = [f"{prompt}{t}" for t in texts] if prompt else list(texts)
        if not texts:
            return np.zeros((0, self.model.get_embedding_dimension()), dtype=np.float32)
        bs = batch_size or self.batch_size
        tok = self.model.tokenizer
        max_len = self.model.max_seq_length
        lengths = [len(ids) for ids in tok(texts, add_special_tokens=True, truncation=True, max_length=max_len)["input_ids"]]
        order = np.argsort(lengths, kind="stable")[::-1]
        out = np.zeros((len(texts), self.model.get_embedding_dimension()), dtype=np.float32)
        device = self.model.device
        with torch.inference_mode():
            for start in range(0, len(texts), bs):
                idx = order[start:start + bs]
                features = self.model.preprocess([texts[i] for i in idx])
                features = {k: v.to(device) if hasattr(v, "to") else v for k, v in features.items()}
                emb = self.model(features)["sentence_embedding"]
                out[idx] = emb.float().cpu().numpy()
        return out

"""Fast inference: length-sorted batches under `torch.inference_mode`.

SentenceTransformer.encode already sorts by length; what this adds is
`inference_mode` (no version counters), one tokenizer call for all texts
(batches are then padded from the cached ids, never re-tokenized) and sorting
by real token count instead of character length, so batches pad less. The
bench reports its throughput against SentenceTransformer's own `encode` on the
same saved model. A model whose backbone reads chat messages (a folder saved
by sentence-transformers >= 6 with the `message` modality: texts are rendered
through the chat template) is encoded by SentenceTransformer itself, so both
always see the same tokens; koforge's own models read plain text.
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
        if "message" in (getattr(self.model[0], "modality_config", None) or {}):
            with torch.inference_mode():
                return self.model.encode(texts, batch_size=bs, convert_to_numpy=True).astype(np.float32, copy=False)
        tok = self.model.tokenizer
        max_len = self.model.max_seq_length
        encoded = tok(texts, add_special_tokens=True, truncation=True, max_length=max_len)
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in encoded]
        order = np.argsort([len(ids) for ids in encoded["input_ids"]], kind="stable")[::-1]
        out = np.zeros((len(texts), self.model.get_embedding_dimension()), dtype=np.float32)
        device = self.model.device
        with torch.inference_mode():
            for start in range(0, len(texts), bs):
                idx = order[start:start + bs]
                batch = tok.pad({k: [encoded[k][i] for i in idx] for k in keys}, return_tensors="pt")
                features = {k: v.to(device) for k, v in batch.items()}
                emb = self.model(features)["sentence_embedding"]
                out[idx] = emb.float().cpu().numpy()
        return out

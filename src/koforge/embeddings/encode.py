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

from koforge._utils.errors import ConfigError


class FastEncoder:
    """Wraps a SentenceTransformer; `.encode(texts) -> (N, D) float32 array`."""

    def __init__(self, model: Any, batch_size: int = 64) -> None:
        self.model = model.eval()
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str], batch_size: int | None = None, prompt: str | None = None,
               prompt_name: str | None = None, normalize_embeddings: bool = False,
               show_progress_bar: bool | None = None, convert_to_numpy: bool = True, **kwargs: Any) -> np.ndarray:
        if isinstance(texts, str):  # one sentence -> one (D,) vector, as SentenceTransformer.encode returns
            return self.encode([texts], batch_size, prompt, prompt_name, normalize_embeddings, show_progress_bar,
                               convert_to_numpy, **kwargs)[0]
        prompt = self._prompt(prompt, prompt_name)
        bs = batch_size or self.batch_size
        if kwargs or not convert_to_numpy or self._needs_sentence_transformer(prompt):
            # What this fast path does not do (truncate_dim, precision, tensors out, prompt tokens left out of
            # pooling) is SentenceTransformer's own job: the same call there, never a silently ignored option.
            with torch.inference_mode():
                return self.model.encode(list(texts), batch_size=bs, prompt=prompt, normalize_embeddings=normalize_embeddings,
                                         show_progress_bar=False, convert_to_numpy=convert_to_numpy, **kwargs)
        texts = [f"{prompt}{t}" for t in texts] if prompt else list(texts)
        if not texts:
            return np.zeros((0, self.model.get_embedding_dimension()), dtype=np.float32)
        if "message" in (getattr(self.model[0], "modality_config", None) or {}):
            with torch.inference_mode():
                out = self.model.encode(texts, batch_size=bs, convert_to_numpy=True).astype(np.float32, copy=False)
            return _l2(out) if normalize_embeddings else out
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
        return _l2(out) if normalize_embeddings else out

    def _prompt(self, prompt: str | None, prompt_name: str | None) -> str | None:
        """SentenceTransformer's rule: `prompt`, else the named prompt, else the model's default prompt, if any."""
        if prompt is not None:
            return prompt
        prompts = self.model.prompts or {}
        if prompt_name is not None:
            if prompt_name not in prompts:
                raise ConfigError(f"prompt_name '{prompt_name}' is not one of the model's prompts "
                                  f"({', '.join(prompts) or 'none'}); pass prompt= or a configured name.")
            return prompts[prompt_name]
        default = getattr(self.model, "default_prompt_name", None)
        return prompts.get(default) if default else None

    def _needs_sentence_transformer(self, prompt: str | None) -> bool:
        """True when the model pools without prompt tokens or truncates dimensions (SentenceTransformer's bookkeeping)."""
        if getattr(self.model, "truncate_dim", None):
            return True
        return bool(prompt) and any(getattr(m, "include_prompt", True) is False for m in self.model)


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)

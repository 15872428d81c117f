"""A pre-allocated, GQA-shaped key/value cache: [n_layers, B, n_kv_heads, max_len, head_dim].

Allocated once per engine and reused across requests (only `length` is reset),
so decoding never grows or copies tensors. Rows of a batch share one time axis;
left padding is handled by the engine's attention mask, not here (the engine
only asks to drop leading slots once they are padding for every row it still
decodes).
"""
from __future__ import annotations

import torch

from koforge.lm.config import LMConfig


class KVCache:
    """Keys and values of every layer for up to `max_batch` rows and `max_len` positions."""

    def __init__(self, config: LMConfig, max_batch: int, max_len: int, *, dtype: torch.dtype,
                 device: torch.device | str = "cpu") -> None:
        shape = (config.n_layers, max_batch, config.n_kv_heads, max_len, config.head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.max_batch, self.max_len = max_batch, max_len
        self.reset(max_batch)

    def reset(self, batch: int) -> None:
        """Start a new request of `batch` rows (keeps the memory)."""
        assert batch <= self.max_batch
        self.batch, self.length = batch, 0
        # Per-layer views of the rows in use, made once per request instead of once per layer and step.
        self._k = [self.k[i, :batch] for i in range(self.k.shape[0])]
        self._v = [self.v[i, :batch] for i in range(self.v.shape[0])]

    def layers(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per-layer keys and values of the rows in use, [B, Hkv, max_len, D] each (views, written in place)."""
        return self._k, self._v

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v [B, Hkv, T, D] after the cached positions; return all of them [B, Hkv, S, D]."""
        start, end = self.length, self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache full: {end} positions > {self.max_len}")
        kc, vc = self._k[layer], self._v[layer]
        kc.narrow(2, start, end - start).copy_(k)
        vc.narrow(2, start, end - start).copy_(v)
        return kc.narrow(2, 0, end), vc.narrow(2, 0, end)

    def drop_oldest(self, n: int) -> None:
        """Forget the first `n` positions of the rows in use, moving the later ones to the front (one copy).

        Covers the whole time axis, since the engine's compiled step writes by its own index, not `length`.
        """
        for kc, vc in zip(self._k, self._v):
            kc[:, :, :-n] = kc[:, :, n:].clone()
            vc[:, :, :-n] = vc[:, :, n:].clone()
        self.length = max(0, self.length - n)

    def advance(self, n: int) -> None:
        """Called by the model once every layer has stored its `n` new positions."""
        self.length += n

    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() * 2

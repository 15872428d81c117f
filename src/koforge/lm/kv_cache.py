"""A pre-allocated, GQA-shaped key/value cache: [n_layers, B, n_kv_heads, max_len, head_dim].

Allocated once per engine and reused across requests (only `length` is reset),
so decoding never grows or copies tensors. Rows of a batch share one time axis;
left padding is handled by the engine's attention mask, not here.
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
        self.batch = max_batch
        self.length = 0

    def reset(self, batch: int) -> None:
        """Start a new request of `batch` rows (keeps the memory)."""
        assert batch <= self.max_batch
        self.batch, self.length = batch, 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v [B, Hkv, T, D] after the cached positions; return all of them [B, Hkv, S, D]."""
        T, end = k.shape[2], self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache full: {end} positions > {self.max_len}")
        self.k[layer, :self.batch, :, self.length:end] = k
        self.v[layer, :self.batch, :, self.length:end] = v
        return self.k[layer, :self.batch, :, :end], self.v[layer, :self.batch, :, :end]

    def advance(self, n: int) -> None:
        """Called by the model once every layer has stored its `n` new positions."""
        self.length += n

    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() * 2

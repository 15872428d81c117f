"""A one-token decode step with fixed shapes, for `torch.compile` (the engine's `compile=True`).

The eager engine reads the cache's length as a Python int and attends over the
`length + 1` positions written so far, so every step has new shapes. Here the
step attends over the whole pre-allocated cache (a key mask hides the
positions not written yet) and the cache index, RoPE positions and key mask
are tensors updated in place, so one compiled graph serves every step of
every request of the same batch size. Inductor fuses the dozens of small ops
of a step (norms, RoPE, SwiGLU, residuals) that cost a few microseconds each
in eager mode on a CPU. The model code is the eager model's: `SlotCache`
only changes where attention reads and writes keys and values.
"""
from __future__ import annotations

import torch

from koforge.lm.model import KoLM


class SlotCache:
    """The engine's KV cache as the compiled step sees it: per-layer k, v [B, Hkv, S, D], write index `slot` [1]."""

    length = 0  # the model reads it only without explicit positions, and the step always passes them

    def __init__(self, k: list[torch.Tensor], v: list[torch.Tensor], slot: torch.Tensor) -> None:
        self.k, self.v, self.slot = k, v, slot

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v [B, Hkv, 1, D] at `slot`; return the whole cache of the layer [B, Hkv, S, D]."""
        # Indexing assignment (index_put_) writes into the cache in place in the compiled graph, where
        # index_copy_ made inductor copy the whole cache of every layer at every step.
        kc, vc = self.k[layer], self.v[layer]
        kc[:, :, self.slot] = k
        vc[:, :, self.slot] = v
        return kc, vc

    def advance(self, n: int) -> None:
        pass  # the step moves `slot` itself, once all layers have written


def decode_step(model: KoLM, k: list[torch.Tensor], v: list[torch.Tensor], tokens: torch.Tensor,
                positions: torch.Tensor, slot: torch.Tensor, key_valid: torch.Tensor) -> torch.Tensor:
    """Logits [B, V] for tokens [B] at RoPE `positions` [B], written at cache index `slot` [1].

    k, v: the engine's per-layer cache views [B, Hkv, S, D]; key_valid [B, S]: positions a row may attend to.
    Marks the new position valid and advances `positions` and `slot` in place, ready for the next step.
    """
    key_valid[:, slot] = True
    cache = SlotCache(k, v, slot)
    logits = model(tokens[:, None], positions=positions[:, None], attn_mask=key_valid[:, None, None, :],
                   cache=cache, last_only=True)[:, -1]
    positions.add_(1)
    slot.add_(1)
    return logits

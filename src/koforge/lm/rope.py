"""Rotary position embeddings with linear, static NTK and YaRN context extension.

The tables follow Hugging Face's Llama exactly (half-split "rotate_half"
layout, fp32 inverse frequencies, YaRN's ramp and attention factor) so that
exported weights give the same logits in `transformers`. Static NTK is a
change of base only, so it exports as a plain RoPE with the adjusted theta.
"""
from __future__ import annotations

import math

import torch

from koforge.lm.config import LMConfig


def effective_theta(config: LMConfig) -> float:
    """The base after static NTK-aware scaling (unchanged for other scalings)."""
    if config.rope_scaling == "ntk" and config.rope_factor > 1.0:
        d = config.head_dim
        return config.rope_theta * config.rope_factor ** (d / (d - 2))
    return config.rope_theta


def inverse_frequencies(config: LMConfig) -> tuple[torch.Tensor, float]:
    """[head_dim / 2] inverse frequencies and the attention (cos/sin) scaling factor."""
    dim, base = config.head_dim, effective_theta(config)
    pos_freqs = base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim)
    inv_freq = 1.0 / pos_freqs
    if config.rope_scaling == "linear":
        return inv_freq / config.rope_factor, 1.0
    if config.rope_scaling != "yarn":
        return inv_freq, 1.0
    factor = config.rope_factor
    original = config.rope_original_max_seq_len or int(config.max_seq_len / factor)
    attention_factor = 0.1 * math.log(factor) + 1.0 if factor > 1 else 1.0

    def correction_dim(rotations: float) -> float:
        return (dim * math.log(original / (rotations * 2 * math.pi))) / (2 * math.log(base))

    # YaRN defaults beta_fast=32, beta_slow=1 (paper, section 3.2); truncated like transformers.
    low = max(math.floor(correction_dim(32)), 0)
    high = min(math.ceil(correction_dim(1)), dim - 1)
    if low == high:
        high += 0.001
    ramp = torch.clamp((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low), 0, 1)
    extrapolation = 1 - ramp
    inv_freq = (inv_freq / factor) * (1 - extrapolation) + inv_freq * extrapolation
    return inv_freq, attention_factor


def rope_tables(config: LMConfig, length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The tables `apply_rope` takes: cos and sign-folded sin, each [length, head_dim] float32.

    The sin table carries rotate_half's minus sign on its first half (-sin, +sin), so applying RoPE
    needs no negation: one op fewer per call, for every layer and every decoding step.
    """
    inv_freq, scale = inverse_frequencies(config)
    t = torch.arange(length or config.max_seq_len, dtype=torch.float32)
    freqs = torch.outer(t, inv_freq)  # [T, D/2]
    emb = torch.cat((freqs, freqs), dim=-1)  # [T, D]
    sin = torch.cat((-freqs.sin(), freqs.sin()), dim=-1)
    return emb.cos() * scale, sin * scale


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [..., D] by the `rope_tables` cos/sin broadcast to it (e.g. [T, 1, D] for x [B, T, H, D]).

    Equals Llama's x * cos + rotate_half(x) * sin with rotate_half(x) = (-x2, x1): with the minus sign
    in the sin table, the rotation is a roll by half the head (one op forward and backward, where
    slicing and concatenating costs zero-filled gradients in the backward pass).
    """
    return torch.addcmul(x * cos, x.roll(x.shape[-1] // 2, dims=-1), sin)

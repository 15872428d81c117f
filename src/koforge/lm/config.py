"""The architecture of a koforge LM: one typed config, validated on creation.

Dimensions use one vocabulary: `d_model` (hidden), `n_heads` query heads,
`n_kv_heads` key/value heads (grouped-query attention when fewer), `d_ff`
(SwiGLU inner width), `max_seq_len` (context). A dense config maps 1:1 onto
Hugging Face's `LlamaConfig` (see `koforge.lm.hf`); the mixture-of-experts and
multi-token-prediction options are koforge extensions with no Llama layout.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from koforge._utils.errors import ConfigError

ROPE_SCALINGS = ("none", "linear", "ntk", "yarn")
MOE_BALANCING = ("aux_loss", "bias")


@dataclasses.dataclass(kw_only=True)
class LMConfig:
    """A decoder-only transformer: RoPE, GQA, SwiGLU, RMSNorm (Llama layout)."""

    vocab_size: int = 32000
    """Rows of the embedding matrix (the tokenizer's vocabulary size)."""
    d_model: int = 256
    """Hidden width."""
    n_layers: int = 4
    """Number of transformer blocks."""
    n_heads: int = 4
    """Query heads; `d_model` must divide by it."""
    n_kv_heads: int = 4
    """Key/value heads (grouped-query attention when < n_heads); `n_heads` must divide by it."""
    d_ff: int = 688
    """Inner width of the SwiGLU MLP."""
    max_seq_len: int = 512
    """Longest sequence (prompt + generated tokens) the model accepts."""
    rope_theta: float = 10000.0
    """RoPE base wavelength."""
    rope_scaling: str = "none"
    """Context extension: none, linear (position interpolation), ntk (static NTK-aware base), yarn."""
    rope_factor: float = 1.0
    """Scaling factor of linear / ntk / yarn (context multiplier)."""
    rope_original_max_seq_len: Optional[int] = None
    """yarn: the context the model was trained at (defaults to max_seq_len / rope_factor)."""
    norm_eps: float = 1e-6
    """RMSNorm epsilon."""
    tie_embeddings: bool = False
    """Share the input embedding with the output projection (lm_head)."""
    init_std: float = 0.02
    """Standard deviation of the normal weight initialisation."""
    moe_experts: int = 0
    """Routed experts per MLP (0 = dense SwiGLU MLP)."""
    moe_top_k: int = 2
    """Experts each token is routed to."""
    moe_shared_experts: int = 0
    """Always-on shared experts added to the routed output."""
    moe_d_ff: Optional[int] = None
    """Inner width of each expert (defaults to d_ff)."""
    moe_balancing: str = "aux_loss"
    """aux_loss (Switch-style load-balancing loss) or bias (auxiliary-loss-free router bias)."""
    moe_aux_weight: float = 0.01
    """Weight of the load-balancing loss (aux_loss balancing)."""
    moe_bias_rate: float = 0.001
    """Step size of the router bias update (bias balancing)."""
    mtp_heads: int = 0
    """Extra multi-token-prediction heads (head k predicts token t+1+k)."""
    mtp_weight: float = 0.3
    """Weight of the averaged MTP loss added to the next-token loss."""

    def __post_init__(self) -> None:
        positive = ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff", "max_seq_len")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"LMConfig.{name} must be > 0, got {getattr(self, name)}.")
        if self.d_model % self.n_heads:
            raise ConfigError(f"LMConfig.d_model={self.d_model} does not divide by n_heads={self.n_heads}; "
                              f"choose n_heads among the divisors of {self.d_model}.")
        if self.n_heads % self.n_kv_heads:
            raise ConfigError(f"LMConfig.n_heads={self.n_heads} does not divide by n_kv_heads={self.n_kv_heads}: "
                              f"each KV head must serve a whole group of query heads. Use n_kv_heads among "
                              f"{[k for k in range(1, self.n_heads + 1) if self.n_heads % k == 0]}.")
        if self.head_dim % 2:
            raise ConfigError(f"LMConfig head_dim = d_model / n_heads = {self.head_dim} must be even for RoPE.")
        if self.rope_theta <= 0:
            raise ConfigError(f"LMConfig.rope_theta must be > 0, got {self.rope_theta}.")
        if self.rope_scaling not in ROPE_SCALINGS:
            raise ConfigError(f"LMConfig.rope_scaling='{self.rope_scaling}' is unknown; use one of {', '.join(ROPE_SCALINGS)}.")
        if self.rope_scaling != "none" and self.rope_factor < 1.0:
            raise ConfigError(f"LMConfig.rope_factor must be >= 1 with rope_scaling={self.rope_scaling}, got {self.rope_factor}.")
        if self.moe_experts < 0 or self.moe_shared_experts < 0 or self.mtp_heads < 0:
            raise ConfigError("LMConfig.moe_experts, moe_shared_experts and mtp_heads must be >= 0.")
        if self.moe_experts and not 1 <= self.moe_top_k <= self.moe_experts:
            raise ConfigError(f"LMConfig.moe_top_k={self.moe_top_k} must be in [1, moe_experts={self.moe_experts}].")
        if self.moe_balancing not in MOE_BALANCING:
            raise ConfigError(f"LMConfig.moe_balancing='{self.moe_balancing}' is unknown; use aux_loss or bias.")
        if self.moe_d_ff is not None and self.moe_d_ff <= 0:
            raise ConfigError(f"LMConfig.moe_d_ff must be > 0, got {self.moe_d_ff}.")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def is_dense(self) -> bool:
        """True when the model has the plain Llama layout (no MoE)."""
        return self.moe_experts == 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> "LMConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"LMConfig has no field(s) {', '.join(unknown)}. Valid fields: {', '.join(sorted(known))}.")
        return cls(**raw)


def count_parameters(config: LMConfig) -> int:
    """Parameters of a model built from `config` (tied embeddings counted once)."""
    d, f, hd = config.d_model, config.d_ff, config.head_dim
    attn = d * hd * (config.n_heads * 2 + config.n_kv_heads * 2)
    if config.moe_experts:
        ef = config.moe_d_ff or f
        mlp = config.moe_experts * 3 * d * ef + config.moe_shared_experts * 3 * d * ef + d * config.moe_experts
    else:
        mlp = 3 * d * f
    block = attn + mlp + 2 * d
    emb = config.vocab_size * d * (1 if config.tie_embeddings else 2)
    return config.n_layers * block + emb + d + config.mtp_heads * (block + d * d + 2 * d)

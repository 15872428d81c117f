"""Mixture-of-experts SwiGLU MLP: routed top-k experts plus shared experts.

Balancing, as in the K-EXAONE / Solar Open / DeepSeek-V3 reports, is either a
Switch-style load-balancing loss (`aux_loss`, returned by `forward` through
`last_aux_loss`) or auxiliary-loss-free (`bias`): a per-expert bias added to
the router scores for the top-k choice only, nudged after each optimiser step
towards equal load (`update_bias`, fed by `take_step_load`; under DDP the
trainer sums the load over ranks first). `expert_counts` accumulates how many
tokens each expert received (expert-usage statistics), each token once even
when gradient checkpointing recomputes the layer. Dispatch loops over
experts with index_select: simple and exact, not the fastest kernel.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from koforge.lm.config import LMConfig


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)), with Llama's gate_proj and up_proj stacked into one projection."""

    def __init__(self, d_model: int, d_ff: int) -> None:
        super().__init__()
        self.gate_up_proj = nn.Linear(d_model, 2 * d_ff, bias=False)  # rows: gate, then up
        self.down_proj = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class MoE(nn.Module):
    """Top-k routed experts + optional shared experts."""

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        d_ff = config.moe_d_ff or config.d_ff
        self.n_experts, self.top_k = config.moe_experts, config.moe_top_k
        self.balancing, self.bias_rate = config.moe_balancing, config.moe_bias_rate
        self.gate = nn.Linear(config.d_model, config.moe_experts, bias=False)
        self.experts = nn.ModuleList(SwiGLU(config.d_model, d_ff) for _ in range(config.moe_experts))
        self.shared_experts = (SwiGLU(config.d_model, d_ff * config.moe_shared_experts)
                               if config.moe_shared_experts else None)
        self.register_buffer("expert_bias", torch.zeros(config.moe_experts), persistent=True)
        self.register_buffer("expert_counts", torch.zeros(config.moe_experts, dtype=torch.long), persistent=False)
        self.last_aux_loss: torch.Tensor | None = None
        self.step_load: torch.Tensor | None = None  # tokens per expert of the training forwards since the last take
        # Off while gradient checkpointing recomputes the layer in backward (KoLM switches it), so tokens count once.
        self.count_usage = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        flat = x.reshape(B * T, D)  # [N, D]
        probs = self.gate(flat).float().softmax(-1)  # [N, E]
        choice_scores = probs + self.expert_bias if self.balancing == "bias" else probs
        top_idx = choice_scores.topk(self.top_k, dim=-1).indices  # [N, K]
        top_w = probs.gather(-1, top_idx)
        # Renormalised over the chosen experts (Mixtral, DeepSeek-V3), except top-1: one weight renormalised is
        # always 1, which gives the router no gradient from the LM loss, so it weighs by its probability (Switch).
        top_w = (top_w / top_w.sum(-1, keepdim=True) if self.top_k > 1 else top_w).to(x.dtype)
        load = torch.bincount(top_idx.flatten(), minlength=self.n_experts)  # tokens per expert
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            rows, slot = torch.where(top_idx == e)
            if rows.numel():
                out.index_add_(0, rows, expert(flat[rows]) * top_w[rows, slot, None])
        if self.shared_experts is not None:
            out = out + self.shared_experts(flat)
        if self.count_usage:
            with torch.no_grad():
                self.expert_counts += load
                if self.training:
                    self.step_load = load if self.step_load is None else self.step_load + load
        # Switch Transformer: E * sum_i f_i * P_i (f = fraction of routed slots, P = mean router prob).
        frac = load.float() / max(1, top_idx.numel())
        self.last_aux_loss = self.n_experts * (frac * probs.mean(0)).sum()
        return out.view(B, T, D)

    def take_step_load(self) -> torch.Tensor:
        """Tokens routed to each expert [E] by the training forwards since the last call (then reset)."""
        load = self.step_load if self.step_load is not None else torch.zeros_like(self.expert_counts)
        self.step_load = None
        return load

    @torch.no_grad()
    def update_bias(self, load: torch.Tensor | None = None) -> None:
        """Auxiliary-loss-free balancing: raise the bias of under-loaded experts, lower over-loaded ones.

        `load` [E]: tokens per expert of the step; default `take_step_load()` (this process only; the
        trainer passes the sum over DDP ranks so that every rank moves its biases identically).
        """
        load = self.take_step_load() if load is None else load
        if self.balancing != "bias":
            return
        load = load.float()
        self.expert_bias += self.bias_rate * torch.sign(load.mean() - load)

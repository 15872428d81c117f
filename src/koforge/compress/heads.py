"""Attention-head pruning that respects grouped-query attention.

With GQA, `g = n_heads / n_kv_heads` query heads share one key/value head, so
heads are removed a whole KV group at a time: the group's K and V rows, its g
query rows (and their q_norm, which is per-head-shared and untouched) and the
matching o_proj columns. Hugging Face configs hold one head count for all
layers, so every layer keeps the same number of groups, each its own best
ones. `head_dim` is written explicitly into the config, since
hidden_size / n_heads no longer gives it.

Group importance: `magnitude` = L2 norm of the group's q, k, v rows and o_proj
columns; `activation` = mean L2 norm, over calibration tokens, of what the
group adds to the residual stream (its slice of o_proj's input times o_proj's
columns).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from koforge._utils.errors import ConfigError
from koforge.compress.layout import copy_linear, decoder_layers, head_dim, layout_of
from koforge.compress.calibration import run_with_hooks


def kv_group_size(config) -> int:
    """Query heads per KV head."""
    return config.num_attention_heads // config.num_key_value_heads


def check_keep_heads(config, keep_heads: int) -> int:
    """Validate `keep_heads` against the GQA grouping; return the number of KV heads kept."""
    n_heads, n_kv = config.num_attention_heads, config.num_key_value_heads
    g = kv_group_size(config)
    valid = ", ".join(str(g * k) for k in range(1, n_kv + 1))
    if not 1 <= keep_heads <= n_heads:
        raise ConfigError(f"keep_heads={keep_heads} out of range: the model has {n_heads} query heads per layer "
                          f"({n_kv} KV groups of {g}), so keep_heads must be one of: {valid}.")
    if keep_heads % g:
        raise ConfigError(
            f"keep_heads={keep_heads} does not divide into whole KV groups: {n_heads} query heads share "
            f"{n_kv} KV heads ({g} per group), so keep_heads must be a multiple of {g} (one of: {valid}).")
    return keep_heads // g


@torch.no_grad()
def _magnitude_scores(attn: nn.Module, n_kv: int, g: int, d: int) -> torch.Tensor:
    q = attn.q_proj.weight.float().view(n_kv, g * d, -1).pow(2).sum(dim=(1, 2))
    k = attn.k_proj.weight.float().view(n_kv, d, -1).pow(2).sum(dim=(1, 2))
    v = attn.v_proj.weight.float().view(n_kv, d, -1).pow(2).sum(dim=(1, 2))
    o = attn.o_proj.weight.float().view(attn.o_proj.weight.shape[0], n_kv, g * d).pow(2).sum(dim=(0, 2))
    return (q + k + v + o).sqrt()  # (n_kv,)


@torch.inference_mode()
def _activation_scores(model: nn.Module, sequences: torch.Tensor, n_kv: int, g: int, d: int,
                       batch_size: int = 8) -> list[torch.Tensor]:
    layers = decoder_layers(model)
    scores = [torch.zeros(n_kv, dtype=torch.float64) for _ in layers]

    def hook(index: int, o_proj: nn.Linear):
        def fn(module, args):
            x = args[0].float()  # (B, T, n_heads * d)
            B, T, _ = x.shape
            w = o_proj.weight.float().view(-1, n_kv, g * d)  # (hidden, n_kv, g*d)
            per_group = torch.einsum("btkc,hkc->btkh", x.view(B, T, n_kv, g * d), w)  # (B, T, n_kv, hidden)
            scores[index] += per_group.norm(dim=-1).double().sum(dim=(0, 1))
        return fn

    handles = [layer.self_attn.o_proj.register_forward_pre_hook(hook(i, layer.self_attn.o_proj))
               for i, layer in enumerate(layers)]
    tokens = run_with_hooks(model, sequences, handles, batch_size)
    return [s / max(tokens, 1) for s in scores]


def head_group_scores(model: nn.Module, importance: str = "magnitude",
                      sequences: Optional[torch.Tensor] = None) -> list[list[float]]:
    """Importance of each KV group in each layer: (layers x n_kv)."""
    layout_of(model)
    cfg = model.config
    n_kv, g, d = cfg.num_key_value_heads, kv_group_size(cfg), head_dim(cfg)
    if importance == "activation":
        if sequences is None:
            raise ConfigError("head_importance=activation needs calibration text.")
        return [s.tolist() for s in _activation_scores(model, sequences, n_kv, g, d)]
    if importance != "magnitude":
        raise ConfigError(f"head importance '{importance}' unknown; use magnitude or activation.")
    return [_magnitude_scores(layer.self_attn, n_kv, g, d).tolist() for layer in decoder_layers(model)]


@torch.no_grad()
def prune_heads(model: nn.Module, keep_heads: int, *, importance: str = "magnitude",
                sequences: Optional[torch.Tensor] = None,
                scores: Optional[list[list[float]]] = None) -> nn.Module:
    """Keep `keep_heads` query heads (whole KV groups) per layer, in place; config updated."""
    layout_of(model)
    cfg = model.config
    keep_kv = check_keep_heads(cfg, keep_heads)
    n_kv, g, d = cfg.num_key_value_heads, kv_group_size(cfg), head_dim(cfg)
    if scores is None:
        scores = head_group_scores(model, importance, sequences)
    for layer, layer_scores in zip(decoder_layers(model), scores):
        attn = layer.self_attn
        groups = sorted(sorted(range(n_kv), key=lambda k: -layer_scores[k])[:keep_kv])
        kv_rows = torch.cat([torch.arange(k * d, (k + 1) * d) for k in groups])
        q_rows = torch.cat([torch.arange(k * g * d, (k + 1) * g * d) for k in groups])
        attn.q_proj = copy_linear(attn.q_proj.weight, out_idx=q_rows)
        attn.k_proj = copy_linear(attn.k_proj.weight, out_idx=kv_rows)
        attn.v_proj = copy_linear(attn.v_proj.weight, out_idx=kv_rows)
        attn.o_proj = copy_linear(attn.o_proj.weight, in_idx=q_rows)
        for name, value in (("num_heads", keep_heads), ("num_attention_heads", keep_heads),
                            ("num_key_value_heads", keep_kv), ("num_key_value_groups", g)):
            if hasattr(attn, name):
                setattr(attn, name, value)
        attn.head_dim = d
        if hasattr(attn, "config"):
            attn.config = cfg
    cfg.num_attention_heads = keep_heads
    cfg.num_key_value_heads = keep_kv
    cfg.head_dim = d
    return model

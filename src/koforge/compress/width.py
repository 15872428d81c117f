"""Width reduction: MLP intermediate channels and the hidden size, by importance.

- Intermediate channels (per layer, `intermediate_size` kept in every layer):
  `magnitude` = ||gate row|| * ||up row|| * ||down column||; `activation` =
  mean |act(gate x) * up x| over calibration tokens times ||down column||
  (what the channel adds to the residual stream).
- Hidden size (one set of channels for the whole residual stream, as in
  Minitron, Muralidharan et al. 2024): `magnitude` = norm of the channel's
  embedding column and RMSNorm weights; `activation` = mean |hidden state|
  of the channel at every block's output on calibration tokens.
Hidden pruning slices the embedding, every projection's input or output
side, every hidden-size norm and the lm_head. An RMSNorm then averages over
fewer channels, so unlike the intermediate cut it is not exact even for
channels that were near zero: plan a `heal` step after it.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from koforge._utils.errors import ConfigError
from koforge.compress.layout import copy_linear, decoder_layers, head_dim, layout_of
from koforge.compress.calibration import run_with_hooks


@torch.inference_mode()
def _collect(model: nn.Module, sequences: torch.Tensor, batch_size: int = 8) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Mean |intermediate activation| per layer (I,) and mean |block output| per hidden channel (H,)."""
    layers = decoder_layers(model)
    inter = [torch.zeros(model.config.intermediate_size, dtype=torch.float64) for _ in layers]
    hidden = torch.zeros(model.config.hidden_size, dtype=torch.float64)

    def down_hook(i: int):
        def fn(module, args):
            inter[i] += args[0].float().abs().sum(dim=(0, 1)).double()
        return fn

    def block_hook(module, args, output):
        nonlocal hidden
        out = output[0] if isinstance(output, tuple) else output
        hidden += out.float().abs().sum(dim=(0, 1)).double()

    handles = [layer.mlp.down_proj.register_forward_pre_hook(down_hook(i)) for i, layer in enumerate(layers)]
    handles += [layer.register_forward_hook(block_hook) for layer in layers]
    tokens = run_with_hooks(model, sequences, handles, batch_size)
    return [s / tokens for s in inter], hidden / (tokens * len(layers))


@torch.no_grad()
def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
    return torch.sort(torch.topk(scores.float(), k).indices).values


@torch.no_grad()
def reduce_width(model: nn.Module, *, intermediate_size: Optional[int] = None, hidden_size: Optional[int] = None,
                 importance: str = "magnitude", sequences: Optional[torch.Tensor] = None) -> nn.Module:
    """Shrink the MLP intermediate size and/or the hidden size, in place; config updated."""
    layout = layout_of(model)
    cfg = model.config
    if intermediate_size is not None and not 1 <= intermediate_size <= cfg.intermediate_size:
        raise ConfigError(f"intermediate_size={intermediate_size} out of range: the model has {cfg.intermediate_size}.")
    if hidden_size is not None and not 1 <= hidden_size <= cfg.hidden_size:
        raise ConfigError(f"hidden_size={hidden_size} out of range: the model has {cfg.hidden_size}.")
    if importance not in ("magnitude", "activation"):
        raise ConfigError(f"width importance '{importance}' unknown; use magnitude or activation.")
    if importance == "activation" and sequences is None:
        raise ConfigError("width_importance=activation needs calibration text.")
    layers = decoder_layers(model)
    inter_act, hidden_act = _collect(model, sequences) if importance == "activation" else (None, None)

    if intermediate_size is not None and intermediate_size < cfg.intermediate_size:
        for i, layer in enumerate(layers):
            mlp = layer.mlp
            down_norm = mlp.down_proj.weight.float().norm(dim=0)  # (I,)
            if inter_act is not None:
                score = inter_act[i].float() * down_norm
            else:
                score = mlp.gate_proj.weight.float().norm(dim=1) * mlp.up_proj.weight.float().norm(dim=1) * down_norm
            idx = _top(score, intermediate_size)
            mlp.gate_proj = copy_linear(mlp.gate_proj.weight, out_idx=idx)
            mlp.up_proj = copy_linear(mlp.up_proj.weight, out_idx=idx)
            mlp.down_proj = copy_linear(mlp.down_proj.weight, in_idx=idx)
            if hasattr(mlp, "intermediate_size"):
                mlp.intermediate_size = intermediate_size
        cfg.intermediate_size = intermediate_size

    if hidden_size is not None and hidden_size < cfg.hidden_size:
        if hidden_act is not None:
            score = hidden_act.float()
        else:
            norms = [model.model.norm.weight.float().abs()]
            for layer in layers:
                norms += [getattr(layer, n).weight.float().abs() for n in layout.layer_norms]
            score = model.get_input_embeddings().weight.float().norm(dim=0) * torch.stack(norms).mean(dim=0)
        idx = _top(score, hidden_size)
        _slice_hidden(model, idx, layout.layer_norms)
    return model


@torch.no_grad()
def _slice_norm(norm: nn.Module, idx: torch.Tensor) -> None:
    norm.weight = nn.Parameter(norm.weight.index_select(0, idx.to(norm.weight.device)).clone())
    if hasattr(norm, "hidden_size"):
        norm.hidden_size = idx.numel()


@torch.no_grad()
def _slice_hidden(model: nn.Module, idx: torch.Tensor, layer_norms: tuple[str, ...]) -> None:
    cfg = model.config
    cfg.head_dim = head_dim(cfg)  # Exaone4 derives it from hidden_size when absent: pin it first
    tied = bool(getattr(cfg, "tie_word_embeddings", False))
    emb = model.get_input_embeddings()
    new_emb = nn.Embedding(emb.num_embeddings, idx.numel(), padding_idx=emb.padding_idx,
                           device=emb.weight.device, dtype=emb.weight.dtype)
    new_emb.weight.copy_(emb.weight.index_select(1, idx.to(emb.weight.device)))
    old_head = model.lm_head.weight
    model.set_input_embeddings(new_emb)
    for layer in decoder_layers(model):
        attn, mlp = layer.self_attn, layer.mlp
        attn.q_proj = copy_linear(attn.q_proj.weight, in_idx=idx)
        attn.k_proj = copy_linear(attn.k_proj.weight, in_idx=idx)
        attn.v_proj = copy_linear(attn.v_proj.weight, in_idx=idx)
        attn.o_proj = copy_linear(attn.o_proj.weight, out_idx=idx)
        mlp.gate_proj = copy_linear(mlp.gate_proj.weight, in_idx=idx)
        mlp.up_proj = copy_linear(mlp.up_proj.weight, in_idx=idx)
        mlp.down_proj = copy_linear(mlp.down_proj.weight, out_idx=idx)
        if hasattr(mlp, "hidden_size"):
            mlp.hidden_size = idx.numel()
        if hasattr(attn, "hidden_size"):
            attn.hidden_size = idx.numel()
        if hasattr(layer, "hidden_size"):
            layer.hidden_size = idx.numel()
        for name in layer_norms:
            _slice_norm(getattr(layer, name), idx)
    _slice_norm(model.model.norm, idx)
    if tied:
        model.lm_head = nn.Linear(idx.numel(), emb.num_embeddings, bias=False, device=new_emb.weight.device,
                                  dtype=new_emb.weight.dtype)
        model.lm_head.weight = new_emb.weight
    else:
        model.lm_head = copy_linear(old_head, in_idx=idx)
    cfg.hidden_size = idx.numel()

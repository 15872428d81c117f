"""Layer dropping: top, bottom, explicit indices, or by Block Influence (ShortGPT).

Block Influence of layer i (Men et al. 2024, "ShortGPT"): 1 - mean cosine
similarity between the hidden state entering the block and the one leaving it,
over every token of the calibration text. A block that barely turns the
residual stream scores near 0 and is dropped first. After a cut the kept
blocks are renumbered (`self_attn.layer_idx`, which indexes the KV cache) and
the config's `num_hidden_layers`, per-layer `layer_types` and Exaone4's
`sliding_window_pattern` follow the kept blocks, so the saved folder reloads
as the same network.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from koforge._utils.errors import ConfigError
from koforge.compress.layout import decoder_layers, layout_of


def sliding_window_pattern(layer_types: Sequence[str], old: int | str) -> int | str:
    """Exaone4's `sliding_window_pattern` for the kept layers' types: the period p (every p-th layer full,
    the rule its config applies when `layer_types` is absent) where one gives these types, else the layout
    spelled out ("LLG...", the string form its config documents). transformers reads `layer_types`; other
    readers of the config must not find the pre-cut period."""
    n = len(layer_types)
    periods = ([old] if isinstance(old, int) and old > 0 else []) + list(range(1, n + 2))
    for p in periods:
        if all((t == "full_attention") == ((i + 1) % p == 0) for i, t in enumerate(layer_types)):
            return p
    return "".join("G" if t == "full_attention" else "L" for t in layer_types)


@torch.inference_mode()
def block_influence(model: nn.Module, sequences: torch.Tensor, batch_size: int = 8) -> list[float]:
    """Block Influence of every decoder layer on (N, T) calibration token blocks."""
    layout_of(model)
    layers = decoder_layers(model)
    sums = torch.zeros(len(layers), dtype=torch.float64)
    count = 0
    captured: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def hook(index: int):
        def fn(module, args, kwargs, output):
            x_in = args[0] if args else kwargs["hidden_states"]
            x_out = output[0] if isinstance(output, tuple) else output
            captured[index] = (x_in, x_out)
        return fn

    handles = [layer.register_forward_hook(hook(i), with_kwargs=True) for i, layer in enumerate(layers)]
    device = next(model.parameters()).device
    try:
        for start in range(0, sequences.shape[0], batch_size):
            batch = sequences[start:start + batch_size].to(device)
            model(input_ids=batch, use_cache=False)
            for i, (x_in, x_out) in captured.items():
                cos = F.cosine_similarity(x_in.float(), x_out.float(), dim=-1)  # (B, T)
                sums[i] += (1 - cos).double().sum()
            count += batch.numel()
            captured.clear()
    finally:
        for h in handles:
            h.remove()
    return (sums / count).tolist()


def layers_to_keep(n_layers: int, *, strategy: str, keep_layers: int | None = None,
                   drop_indices: Sequence[int] = (), influence: Sequence[float] | None = None) -> list[int]:
    """The sorted indices of the layers kept by a strategy; validates the request."""
    if strategy == "explicit":
        bad = [i for i in drop_indices if not 0 <= int(i) < n_layers]
        if bad:
            raise ConfigError(f"drop_indices {bad} out of range: the model has {n_layers} layers (indices 0..{n_layers - 1}).")
        repeated = sorted({int(i) for i in drop_indices if list(map(int, drop_indices)).count(int(i)) > 1})
        if repeated:
            raise ConfigError(f"drop_indices names layer(s) {repeated} more than once; list each layer to drop once.")
        keep = [i for i in range(n_layers) if i not in set(int(i) for i in drop_indices)]
        if not keep:
            raise ConfigError(f"drop_indices would drop all {n_layers} layers; keep at least one.")
        return keep
    if keep_layers is None or not 1 <= keep_layers <= n_layers:
        raise ConfigError(f"keep_layers={keep_layers} out of range: the model has {n_layers} layers, so keep_layers "
                          f"must be between 1 and {n_layers}.")
    if strategy == "top":
        return list(range(keep_layers))
    if strategy == "bottom":
        return list(range(n_layers - keep_layers, n_layers))
    if strategy == "importance":
        if influence is None or len(influence) != n_layers:
            raise ConfigError("drop strategy 'importance' needs one Block Influence score per layer.")
        ranked = sorted(range(n_layers), key=lambda i: -influence[i])
        return sorted(ranked[:keep_layers])
    raise ConfigError(f"drop strategy '{strategy}' unknown; use top, bottom, explicit or importance.")


def drop_layers(model: nn.Module, keep: Optional[Sequence[int]] = None, *, strategy: str = "explicit",
                keep_layers: Optional[int] = None, drop_indices: Sequence[int] = (),
                sequences: Optional[torch.Tensor] = None) -> nn.Module:
    """Drop decoder layers in place (config updated) and return the model.

    Either `keep` (the indices to keep), or a `strategy`: top / bottom with
    `keep_layers`, explicit with `drop_indices`, importance with `keep_layers`
    and calibration `sequences` (N, T) for Block Influence.
    """
    layout_of(model)
    layers = decoder_layers(model)
    if keep is None:
        influence = None
        if strategy == "importance":
            layers_to_keep(len(layers), strategy="top", keep_layers=keep_layers)  # range check before the slow part
            if sequences is None:
                raise ConfigError("drop strategy 'importance' needs calibration token sequences.")
            influence = block_influence(model, sequences)
        keep = layers_to_keep(len(layers), strategy=strategy, keep_layers=keep_layers, drop_indices=drop_indices,
                              influence=influence)
    keep = sorted(int(i) for i in keep)
    if not keep or keep[0] < 0 or keep[-1] >= len(layers) or len(set(keep)) != len(keep):
        raise ConfigError(f"layers to keep {keep} invalid for a model of {len(layers)} layers (indices 0..{len(layers) - 1}).")
    kept = nn.ModuleList([layers[i] for i in keep])
    for new_index, layer in enumerate(kept):
        layer.self_attn.layer_idx = new_index
    model.model.layers = kept
    cfg = model.config
    layer_types = getattr(cfg, "layer_types", None)
    if layer_types:
        cfg.layer_types = [layer_types[i] for i in keep]
        if getattr(cfg, "sliding_window_pattern", None) is not None:
            cfg.sliding_window_pattern = sliding_window_pattern(cfg.layer_types, cfg.sliding_window_pattern)
    cfg.num_hidden_layers = len(keep)
    if getattr(cfg, "max_window_layers", None) is not None:
        # Layers below max_window_layers attend fully (Qwen): count the kept ones, which stay first.
        cfg.max_window_layers = sum(1 for i in keep if i < cfg.max_window_layers)
    return model

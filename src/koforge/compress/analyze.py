"""What a model is made of: layers, heads, widths, parameters per module type, size.

`analyze_model` works on a loaded model (and, given its folder, adds the size
on disk). Parameters are grouped by module type (embedding, attention, mlp,
norm, lm_head); a tied lm_head is counted once, under embedding.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from koforge.compress.layout import head_dim, layout_of


def _kind(name: str) -> str:
    if "embed_tokens" in name:
        return "embedding"
    if name.startswith("lm_head"):
        return "lm_head"
    if "self_attn" in name and "norm" not in name:
        return "attention"
    if ".mlp." in name:
        return "mlp"
    if "norm" in name:
        return "norm"
    return "other"


def folder_size_mb(folder: str | Path) -> float:
    """Total size of the weight files (*.safetensors, *.bin) in a folder, in MB (10^6 bytes)."""
    files = [p for p in Path(folder).glob("*") if p.suffix in (".safetensors", ".bin")]
    return sum(p.stat().st_size for p in files) / 1e6


def analyze_model(model: nn.Module, folder: str | Path | None = None) -> dict:
    """Shape, parameters per module type, dtype and size of a supported causal LM."""
    layout = layout_of(model)
    cfg = model.config
    per_kind: dict[str, int] = {}
    seen: set[int] = set()
    dtypes: dict[str, int] = {}
    param_bytes = 0
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            continue
        seen.add(id(p))
        per_kind[_kind(name)] = per_kind.get(_kind(name), 0) + p.numel()
        dtypes[str(p.dtype).replace("torch.", "")] = dtypes.get(str(p.dtype).replace("torch.", ""), 0) + p.numel()
        param_bytes += p.numel() * p.element_size()
    total = sum(per_kind.values())
    result: dict[str, Any] = {
        "model_type": layout.model_type,
        "number_of_layers": cfg.num_hidden_layers,
        "number_of_heads": cfg.num_attention_heads,
        "number_of_kv_heads": cfg.num_key_value_heads,
        "head_dim": head_dim(cfg),
        "hidden_dim": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "vocab_size": cfg.vocab_size,
        "tied_embeddings": bool(getattr(cfg, "tie_word_embeddings", False)),
        "layer_types": list(getattr(cfg, "layer_types", None) or []),
        "total_parameters": total,
        "parameters_by_type": dict(sorted(per_kind.items(), key=lambda kv: -kv[1])),
        "dtype": max(dtypes, key=dtypes.get) if dtypes else "none",
        "dtypes": dtypes,
        "model_size_mb": param_bytes / 1e6,
        "quantization": getattr(cfg, "koforge_quantization", None),
    }
    if folder is not None and Path(folder).exists():
        result["size_on_disk_mb"] = folder_size_mb(folder)
    return result

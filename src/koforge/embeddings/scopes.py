"""Trainable scopes: which parameters of the embedding model learn in a stage.

- `full`: everything.
- `new_embeddings`: only the input-embedding rows added by vocabulary
  expansion. The embedding is split into a frozen buffer of the old rows and a
  trainable parameter of the new rows (not gradient masking: AdamW's decoupled
  weight decay would still move masked rows). Old rows therefore stay
  bit-identical (tested); `finalize` writes the rows back into the backbone's own embedding module.
  Which rows are new comes from `expansion_report.json` (`base_vocab_size`,
  `added_token_ids`) written by `koforge expand`.
- `embeddings`: the whole input-embedding matrix.
- `adapters`: EEVE adapters in every block (see adapters.py; kind `ffn`: ffn_adapters.py), backbone frozen.
- `lora`: PEFT LoRA on the given target modules, merged back on `finalize`.
- `top_blocks`: the top N blocks (and the final norm, if any).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List

import torch
import torch.nn.functional as F
from torch import nn

from koforge._utils.errors import ConfigError
from koforge.embeddings.adapters import AdapterConfig, attach_adapters, find_blocks
from koforge.embeddings.ffn_adapters import attach_ffn_adapters, merge_ffn_adapters
from koforge.embeddings.model import backbone, transformer_module

SCOPES = ("full", "new_embeddings", "embeddings", "adapters", "lora", "top_blocks")
EXPANSION_REPORT = "expansion_report.json"


class NotExpandedError(ConfigError):
    """A `new_embeddings` stage was asked of a model that vocabulary expansion did not produce."""


@dataclass(kw_only=True)
class LoraSettings:
    """PEFT LoRA settings for a `lora` stage."""

    r: int = 64
    alpha: int = 128
    dropout: float = 0.05
    target_modules: List[str] = field(default_factory=lambda: ["query", "key", "value", "dense"])
    """Module name suffixes (BERT: query/key/value/dense; Llama/Qwen: q_proj/k_proj/v_proj/o_proj)."""

    def __post_init__(self) -> None:
        if self.r < 1 or self.alpha < 1:
            raise ConfigError(f"lora.r and lora.alpha must be >= 1, got r={self.r}, alpha={self.alpha}.")
        if not self.target_modules:
            raise ConfigError("lora.target_modules is empty; name at least one module (e.g. [query, value]).")


class SplitEmbedding(nn.Module):
    """An embedding whose first `n_old` rows are a frozen buffer and the rest a trainable parameter.

    Some backbones scale their input embeddings (Gemma 3, EmbeddingGemma: `embed_scale` = sqrt(hidden));
    the split keeps that scale, and `to_embedding` gives back the backbone's own module (its class, scale
    and all) holding the trained rows. Its weight is emptied meanwhile, so the table is not held twice.
    """

    def __init__(self, embedding: nn.Embedding, n_old: int) -> None:
        super().__init__()
        weight = embedding.weight.detach()
        self.register_buffer("old_rows", weight[:n_old].clone())
        self.new_rows = nn.Parameter(weight[n_old:].clone())
        self.padding_idx = embedding.padding_idx
        scale = getattr(embedding, "embed_scale", None)
        if isinstance(scale, torch.Tensor):
            self.register_buffer("embed_scale", scale.detach().clone(), persistent=False)
        else:
            self.embed_scale = scale  # a float (BART-style) or None
        self._original = [embedding]  # (in a list: not a submodule)
        embedding.weight = nn.Parameter(weight.new_empty(0), requires_grad=False)

    @property
    def weight(self) -> torch.Tensor:
        return torch.cat([self.old_rows, self.new_rows], dim=0)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        out = F.embedding(input_ids, self.weight, self.padding_idx)
        if isinstance(self.embed_scale, torch.Tensor):
            return out * self.embed_scale.to(out.dtype)
        return out if self.embed_scale is None else out * self.embed_scale

    def to_embedding(self) -> nn.Embedding:
        weight = self.weight.detach().clone()
        emb = self._original[0].to(device=weight.device)
        emb.weight = nn.Parameter(weight)
        return emb


def read_expansion_report(model_path: str | os.PathLike) -> dict:
    """The expansion report of an expanded model folder, or a clear error when absent."""
    path = Path(model_path) / EXPANSION_REPORT
    if not path.exists():
        raise NotExpandedError(
            f"scope 'new_embeddings' needs a model expanded by `koforge expand`, but '{model_path}' has no {EXPANSION_REPORT}. "
            "Run `koforge expand` first, or use scope 'embeddings' to train the whole embedding matrix.")
    report = json.loads(path.read_text(encoding="utf-8"))
    for key in ("base_vocab_size", "expanded_vocab_size"):
        if key not in report:
            raise NotExpandedError(f"'{path}' lacks '{key}'; it is not a koforge expansion report.")
    return report


class ScopeHandle:
    """What a scope changed, so `finalize` can give back a plain model."""

    def __init__(self, model, scope: str, split: SplitEmbedding | None = None, peft_model=None) -> None:
        self.model, self.scope, self.split, self.peft_model = model, scope, split, peft_model

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def finalize(self) -> None:
        """Merge split embeddings / LoRA / ffn adapters back so the model saves as a standard one."""
        hf = backbone(self.model)
        if getattr(hf, "koforge_ffn_adapter", None) is not None:  # find_blocks fails on backbones without block lists
            merge_ffn_adapters(hf, find_blocks(hf))
        if self.split is not None:
            hf.set_input_embeddings(self.split.to_embedding())
            self.split = None
        if self.peft_model is not None:
            transformer_module(self.model).model = self.peft_model.merge_and_unload()
            self.peft_model = None
        for p in self.model.parameters():
            p.requires_grad_(True)


def _freeze(model) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


def top_block_list(hf: nn.Module, top_blocks: int) -> list[nn.Module]:
    """The top `top_blocks` blocks of the backbone, or a ConfigError when it has fewer (or top_blocks < 1)."""
    blocks = find_blocks(hf)
    if not 1 <= top_blocks <= len(blocks):
        raise ConfigError(f"top_blocks={top_blocks} but the model has {len(blocks)} blocks; use 1..{len(blocks)}.")
    return list(blocks)[-top_blocks:]


def lora_targets(hf: nn.Module, settings: LoraSettings) -> list[str]:
    """The target module names that occur in the backbone, or a ConfigError naming the ones it has."""
    names = {n.split(".")[-1] for n, _ in hf.named_modules()}
    targets = [t for t in settings.target_modules if t in names]
    if not targets:
        named = sorted(n for n in names if n and not n.isdigit())  # not ModuleList indexes
        raise ConfigError(f"lora.target_modules {settings.target_modules} match no module of {type(hf).__name__}; "
                          f"module names include: {', '.join(named[:15])}.")
    return targets


def apply_scope(model, scope: str, *, model_path: str | os.PathLike | None = None, top_blocks: int = 2,
                adapter: AdapterConfig | None = None, lora: LoraSettings | None = None) -> ScopeHandle:
    """Freeze `model` except what `scope` trains; returns a handle whose `finalize()` undoes the wrapping."""
    if scope not in SCOPES:
        raise ConfigError(f"scope '{scope}' is unknown; use one of {', '.join(SCOPES)}.")
    hf = backbone(model)
    if scope == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return ScopeHandle(model, scope)
    _freeze(model)
    if scope == "new_embeddings":
        if model_path is None:
            raise NotExpandedError("scope 'new_embeddings' needs the model folder (to read its expansion report).")
        report = read_expansion_report(model_path)
        n_old = int(report["base_vocab_size"])
        emb = hf.get_input_embeddings()
        if emb.weight.shape[0] <= n_old:
            raise NotExpandedError(f"'{model_path}' has {emb.weight.shape[0]} embedding rows, not more than the base's "
                                   f"{n_old}: there are no new rows to train.")
        split = SplitEmbedding(emb, n_old)
        hf.set_input_embeddings(split)
        return ScopeHandle(model, scope, split=split)
    if scope == "embeddings":
        hf.get_input_embeddings().weight.requires_grad_(True)
        return ScopeHandle(model, scope)
    if scope == "adapters":
        adapter = adapter or AdapterConfig()
        if adapter.kind == "ffn":
            attach_ffn_adapters(hf, find_blocks(hf), adapter.r, adapter.dropout)
        else:
            attach_adapters(transformer_module(model), adapter)
        return ScopeHandle(model, scope)
    if scope == "top_blocks":
        for block in top_block_list(hf, top_blocks):
            for p in block.parameters():
                p.requires_grad_(True)
        for name in ("norm", "final_norm", "final_layernorm", "ln_f"):  # Llama/Qwen, ModernBERT, Phi, GPT-2
            if isinstance(getattr(hf, name, None), nn.Module):
                for p in getattr(hf, name).parameters():
                    p.requires_grad_(True)
        adapters = getattr(transformer_module(model), "koforge_adapters", None)
        if adapters is not None:  # adapters of an earlier stage keep learning in the top blocks' stage
            for p in adapters[-top_blocks:].parameters():
                p.requires_grad_(True)
        return ScopeHandle(model, scope)
    # lora
    from peft import LoraConfig, get_peft_model

    settings = lora or LoraSettings()
    targets = lora_targets(hf, settings)
    peft_model = get_peft_model(hf, LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                                               target_modules=targets))
    transformer_module(model).model = peft_model
    return ScopeHandle(model, scope, peft_model=peft_model)

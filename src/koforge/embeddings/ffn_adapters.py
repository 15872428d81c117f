"""`ffn` adapters: a bottleneck beside each block's feed-forward, merged into it exactly when the stage ends.

A feed-forward is out(act(in(x))) (BERT: intermediate.dense -> GELU ->
output.dense) or down(act(gate(x)) * up(x)) (Llama, Qwen, Exaone). An adapter
of width r parallel to it, with the same activation, is r more hidden units of
the same feed-forward (He et al. 2022 found the parallel adapter at the
feed-forward the best placement). So it trains as r extra rows of the input
projection(s) and r extra columns of the output projection, the old weights
frozen (kept in their own modules, so AdamW's weight decay cannot move them),
the extra output columns zero at step 0 (the model is unchanged before the
first update); `merge_ffn_adapters` then writes each projection back as one
`nn.Linear` and raises the config's `intermediate_size` by r. The saved model is
a plain Hugging Face model of a wider feed-forward that
`SentenceTransformer(path)` loads with no koforge code.
"""
from __future__ import annotations

import torch
from torch import nn

from koforge._utils.errors import ConfigError


class WidenedOutput(nn.Module):
    """An input-side projection with `extra` more output units: frozen base rows, trainable extra rows."""

    def __init__(self, base: nn.Linear, extra: int) -> None:
        super().__init__()
        self.base = base
        self.extra = nn.Linear(base.in_features, extra, bias=base.bias is not None).to(base.weight.device, base.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.base(x), self.extra(x)], dim=-1)

    def merged(self) -> nn.Linear:
        out = nn.Linear(self.base.in_features, self.base.out_features + self.extra.out_features,
                        bias=self.base.bias is not None).to(self.base.weight.device, self.base.weight.dtype)
        with torch.no_grad():
            out.weight.copy_(torch.cat([self.base.weight, self.extra.weight], dim=0))
            if out.bias is not None:
                out.bias.copy_(torch.cat([self.base.bias, self.extra.bias]))
        return out


class WidenedInput(nn.Module):
    """The output projection reading `extra` more hidden units through zero-initialised, trainable columns."""

    def __init__(self, base: nn.Linear, extra: int, dropout: float) -> None:
        super().__init__()
        self.base = base
        self.extra = nn.Linear(extra, base.out_features, bias=False).to(base.weight.device, base.weight.dtype)
        nn.init.zeros_(self.extra.weight)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        n = self.base.in_features
        return self.base(h[..., :n]) + self.extra(self.drop(h[..., n:]))

    def merged(self) -> nn.Linear:
        out = nn.Linear(self.base.in_features + self.extra.in_features, self.base.out_features,
                        bias=self.base.bias is not None).to(self.base.weight.device, self.base.weight.dtype)
        with torch.no_grad():
            out.weight.copy_(torch.cat([self.base.weight, self.extra.weight], dim=1))
            if out.bias is not None:
                out.bias.copy_(self.base.bias)
        return out


LAYOUTS = {"bert": (("intermediate.dense",), "output.dense"), "gated": (("mlp.gate_proj", "mlp.up_proj"), "mlp.down_proj")}
"""Feed-forward layouts: the input projection(s) and the output projection, by their names within a block."""


def _get(block: nn.Module, dotted: str) -> nn.Module | None:
    for part in dotted.split("."):
        block = getattr(block, part, None)
        if block is None:
            return None
    return block


def _set(block: nn.Module, dotted: str, module: nn.Module) -> None:
    parent, _, name = dotted.rpartition(".")
    setattr(_get(block, parent) if parent else block, name, module)


def ffn_layout(blocks: nn.ModuleList) -> tuple[tuple[str, ...], str]:
    """The layout every block's feed-forward has, or a ConfigError naming the ones koforge knows."""
    for inputs, output in LAYOUTS.values():
        names = (*inputs, output)
        if all(isinstance(_get(block, name), nn.Linear) for block in blocks for name in names):
            return inputs, output
    known = "; ".join(f"{', '.join(i)} -> {o}" for i, o in LAYOUTS.values())
    raise ConfigError(f"adapter.kind 'ffn' needs a feed-forward of plain linear layers ({known}) in every block; "
                      f"{type(blocks[0]).__name__} has neither. Use adapter.kind bottleneck, gated or parallel.")


def attach_ffn_adapters(hf: nn.Module, blocks: nn.ModuleList, r: int, dropout: float) -> list[nn.Parameter]:
    """Widen every block's feed-forward by `r` trainable units; returns the trainable parameters."""
    inputs, output = ffn_layout(blocks)
    trainable = []
    for block in blocks:
        for name in inputs:
            wide = WidenedOutput(_get(block, name), r)
            _set(block, name, wide)
            trainable += list(wide.extra.parameters())
        wide = WidenedInput(_get(block, output), r, dropout)
        _set(block, output, wide)
        trainable += list(wide.extra.parameters())
    hf.koforge_ffn_adapter = r
    return trainable


def merge_ffn_adapters(hf: nn.Module, blocks: nn.ModuleList) -> None:
    """Fold the widened projections into plain `nn.Linear`s and record the wider `intermediate_size`."""
    r = getattr(hf, "koforge_ffn_adapter", None)
    if r is None:
        return
    inputs, output = next((i, o) for i, o in LAYOUTS.values() if isinstance(_get(blocks[0], o), WidenedInput))
    for block in blocks:
        for name in (*inputs, output):
            _set(block, name, _get(block, name).merged())
    hf.config.intermediate_size += r
    del hf.koforge_ffn_adapter

"""EEVE-style adapters inserted into every transformer block, backbone frozen.

Three variants, all identity at step 0 because their output is multiplied by
a per-channel gate initialised to zero (the model is bit-for-bit unchanged
before the first update, tested):
- `bottleneck`: y + g * up(drop(gelu(down(y)))), y the block output;
- `gated`:      same, with a token-wise sigmoid gate sigmoid(W y) on the update;
- `parallel`:   y + g * up(drop(gelu(down(x)))), x the block *input* (He et al. 2022);
- `ffn`:        r more units of each block's feed-forward, beside it with its activation; merged into
  a plain, wider feed-forward when the stage ends (ffn_adapters.py), so the saved model needs no
  koforge code to load.

Adapters attach through forward hooks, so the Hugging Face weights keep their
names and `save_pretrained` writes a clean backbone. The first three are non-linear
where the blocks are not and cannot be folded into the base weights: "merged" saving keeps them inside the
model folder (`AdaptedTransformer`, a sentence-transformers module that
re-attaches them when the folder loads; sentence-transformers >= 6 imports a
module class from outside its own package only with `trust_remote_code=True`,
so plain ST loads such a folder as `SentenceTransformer(path,
trust_remote_code=True)` with koforge installed, and koforge's own loaders pass
it for this one class); `save_adapters` also writes them alone
(`adapters.safetensors` + config) to apply to the same base later.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from koforge._utils.errors import ConfigError, ModelLoadError

ADAPTER_KINDS = ("bottleneck", "gated", "parallel", "ffn")
ADAPTER_CONFIG = "koforge_adapters.json"
ADAPTER_WEIGHTS = "koforge_adapters.safetensors"


@dataclass(kw_only=True)
class AdapterConfig:
    """Adapter shape and where it goes."""

    kind: str = "bottleneck"
    """bottleneck, gated, parallel or ffn (merged into the feed-forward: loads with no koforge code)."""
    r: int = 256
    """Bottleneck width (hidden -> r -> hidden)."""
    dropout: float = 0.1
    """Dropout inside the adapter."""
    save: str = "merged"
    """merged: ship inside the model folder; separate: also write the adapters alone under adapters/."""

    def __post_init__(self) -> None:
        if self.kind not in ADAPTER_KINDS:
            raise ConfigError(f"adapter.kind '{self.kind}' is unknown; use one of {', '.join(ADAPTER_KINDS)}.")
        if self.r < 1:
            raise ConfigError(f"adapter.r must be >= 1, got {self.r}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"adapter.dropout must be in [0, 1), got {self.dropout}.")
        if self.save not in ("merged", "separate"):
            raise ConfigError(f"adapter.save '{self.save}' is unknown; use merged or separate.")
        if self.kind == "ffn" and self.save == "separate":
            raise ConfigError("adapter.kind 'ffn' merges into the feed-forward when its stage ends, so it has no separate "
                              "adapters to save; use save: merged, or kind bottleneck/gated/parallel.")


class Adapter(nn.Module):
    """One bottleneck adapter with a zero-initialised output gate."""

    def __init__(self, hidden: int, config: AdapterConfig) -> None:
        super().__init__()
        self.kind = config.kind
        self.down = nn.Linear(hidden, config.r)
        self.up = nn.Linear(config.r, hidden)
        self.act = nn.GELU()
        self.drop = nn.Dropout(config.dropout)
        self.gate = nn.Parameter(torch.zeros(hidden))
        self.gate_proj = nn.Linear(hidden, hidden) if config.kind == "gated" else None

    def forward(self, source: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, D) update
        update = self.up(self.drop(self.act(self.down(source))))
        if self.gate_proj is not None:
            update = update * torch.sigmoid(self.gate_proj(source))
        return self.gate * update


def find_blocks(model: nn.Module) -> nn.ModuleList:
    """The list of transformer blocks (encoder.layer, model.layers, h, ...)."""
    best = None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0 and name.split(".")[-1] in ("layer", "layers", "h", "block", "blocks"):
            if best is None or len(module) > len(best):
                best = module
    if best is None:
        raise ModelLoadError(f"cannot find the transformer blocks of {type(model).__name__} "
                             "(looked for a ModuleList named layer/layers/h/blocks).")
    return best


def _hook(adapter: Adapter):
    def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        y = output[0] if isinstance(output, tuple) else output
        if adapter.kind == "parallel":
            x = args[0] if args else kwargs["hidden_states"]
            new = y + adapter(x).to(y.dtype)
        else:
            new = y + adapter(y).to(y.dtype)
        return (new, *output[1:]) if isinstance(output, tuple) else new
    return hook


def attach_adapters(transformer: nn.Module, config: AdapterConfig) -> nn.ModuleList:
    """Insert one adapter per block of the ST `Transformer` module; returns the adapters (trainable)."""
    if getattr(transformer, "koforge_adapters", None) is not None:
        raise ConfigError("this model already has koforge adapters; a second adapters stage would stack them. "
                          "Use another scope (top_blocks, lora) after an adapters stage.")
    hf = transformer.auto_model
    blocks = find_blocks(hf)
    hidden = hf.config.hidden_size
    param = next(hf.parameters())
    adapters = nn.ModuleList([Adapter(hidden, config) for _ in blocks]).to(device=param.device, dtype=param.dtype)
    handles = [block.register_forward_hook(_hook(a), with_kwargs=True) for block, a in zip(blocks, adapters)]
    transformer.koforge_adapters = adapters
    transformer.koforge_adapter_config = config
    transformer._koforge_adapter_handles = handles
    transformer.__class__ = adapted_transformer_class()
    return adapters


def save_adapters(transformer: nn.Module, folder: str | Path) -> Path:
    """Write the adapters alone: koforge_adapters.safetensors + koforge_adapters.json."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in transformer.koforge_adapters.state_dict().items()}
    save_file(state, str(folder / ADAPTER_WEIGHTS))
    (folder / ADAPTER_CONFIG).write_text(json.dumps(asdict(transformer.koforge_adapter_config), indent=2), encoding="utf-8")
    return folder


def load_adapters(transformer: nn.Module, folder: str | Path) -> None:
    """Attach adapters saved by `save_adapters` to a matching backbone."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / ADAPTER_CONFIG).exists():
        raise ModelLoadError(f"no {ADAPTER_CONFIG} in '{folder}'; it is not a koforge adapter folder.")
    cfg = AdapterConfig(**json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8")))
    adapters = attach_adapters(transformer, cfg)
    missing, unexpected = adapters.load_state_dict(load_file(str(folder / ADAPTER_WEIGHTS)), strict=False)
    if missing or unexpected:
        raise ModelLoadError(f"adapters in '{folder}' do not fit this backbone (missing {missing[:3]}, unexpected {unexpected[:3]}).")


def adapted_transformer_class() -> type:
    """`AdaptedTransformer`, built on first use: its base class is sentence-transformers' `Transformer`, and
    importing sentence-transformers costs ~5 s, which a recipe that fails its checks should not pay."""
    cls = globals().get("AdaptedTransformer")
    if cls is not None:
        return cls
    from sentence_transformers.base.modules import Transformer

    class AdaptedTransformer(Transformer):
        """A sentence-transformers `Transformer` whose blocks carry koforge adapters (saved beside the weights)."""

        def save(self, output_path: str, *args: Any, **kwargs: Any) -> None:
            super().save(output_path, *args, **kwargs)
            save_adapters(self, output_path)

        @classmethod
        def load(cls, model_name_or_path: str, subfolder: str = "", **kwargs: Any):
            module = Transformer.load(model_name_or_path, subfolder=subfolder, **kwargs)
            # A hub name is no local folder: fetch the adapter files as sentence-transformers fetches its own
            # (reading only Path(name) loaded a hub model without its adapters, silently).
            where = {k: kwargs[k] for k in ("token", "cache_folder", "revision", "local_files_only") if k in kwargs}
            config = cls.load_file_path(model_name_or_path, ADAPTER_CONFIG, subfolder=subfolder, **where)
            if config is not None:
                weights = cls.load_file_path(model_name_or_path, ADAPTER_WEIGHTS, subfolder=subfolder, **where)
                if weights is None or Path(weights).parent != Path(config).parent:
                    raise ModelLoadError(f"'{model_name_or_path}' has {ADAPTER_CONFIG} but not {ADAPTER_WEIGHTS} beside it.")
                load_adapters(module, Path(config).parent)
            return module

    AdaptedTransformer.__module__, AdaptedTransformer.__qualname__ = __name__, "AdaptedTransformer"
    globals()["AdaptedTransformer"] = AdaptedTransformer  # the name saved model folders give in modules.json
    return AdaptedTransformer


def __getattr__(name: str) -> Any:
    if name == "AdaptedTransformer":  # `koforge.embeddings.adapters.AdaptedTransformer`, as modules.json names it
        return adapted_transformer_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

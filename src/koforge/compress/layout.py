"""Where the parts of a supported causal LM live, and loading/saving it as a plain HF folder.

Every supported family is a Llama-style decoder: `model.model.embed_tokens`,
`model.model.layers[i].self_attn.{q,k,v,o}_proj`, `.mlp.{gate,up,down}_proj`,
RMSNorms, `model.model.norm`, `model.lm_head`. They differ only in their norms
(Exaone4 normalises *after* attention/MLP; Qwen3 and Exaone4 add per-head
q_norm/k_norm) and in per-layer `layer_types` (sliding/full attention), which
the pruning code keeps in step with the weights. Other layouts (GPT-2, MoE,
Gemma's scaled embeddings, biased projections) are refused with the list of
supported ones rather than cut wrongly. A saved folder's tokenizer is in the
form transformers 4.x and 5.x both load (`koforge.tokenizers.io.save_tokenizer`).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from koforge._utils.errors import ModelLoadError, TokenizerError, corrupted_weights, load_failure
from koforge._utils.hub import require_cached_or_on_hub
from koforge._utils.io import require_path
from koforge._utils.logging import quiet_load_report
from koforge.tokenizers.io import save_tokenizer

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen3", "exaone4")
PROVENANCE_FILE = "koforge_compression.json"


class UnsupportedModelError(ModelLoadError):
    """The model's layout is not one the compression methods know how to cut."""


@dataclass(kw_only=True)
class Layout:
    """Names of the norms of one decoder layer (all hidden-size RMSNorms)."""

    model_type: str
    layer_norms: tuple[str, ...]
    has_qk_norm: bool


_LAYOUTS = {
    "llama": Layout(model_type="llama", layer_norms=("input_layernorm", "post_attention_layernorm"), has_qk_norm=False),
    "mistral": Layout(model_type="mistral", layer_norms=("input_layernorm", "post_attention_layernorm"), has_qk_norm=False),
    "qwen3": Layout(model_type="qwen3", layer_norms=("input_layernorm", "post_attention_layernorm"), has_qk_norm=True),
    "exaone4": Layout(model_type="exaone4", layer_norms=("post_attention_layernorm", "post_feedforward_layernorm"),
                      has_qk_norm=True),
}


def layout_of(model: nn.Module) -> Layout:
    """The layout of `model`, or `UnsupportedModelError` listing the supported types."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in _LAYOUTS:
        raise UnsupportedModelError(
            f"model type '{model_type}' is not supported by koforge compress. Supported model types: "
            f"{', '.join(SUPPORTED_MODEL_TYPES)} (koforge's own LMs export as llama). Convert the model to one of "
            "these layouts or open an issue for its family.")
    cfg = model.config
    if getattr(cfg, "attention_bias", False) or getattr(cfg, "mlp_bias", False):
        raise UnsupportedModelError(f"{model_type} model with attention_bias/mlp_bias=True is not supported "
                                    "(the pruning code assumes bias-free projections).")
    return _LAYOUTS[model_type]


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The list of decoder blocks of a supported model."""
    return model.model.layers


def head_dim(config: Any) -> int:
    """The per-head width, explicit in the config or hidden_size // num_attention_heads."""
    explicit = getattr(config, "head_dim", None)
    return int(explicit) if explicit else config.hidden_size // config.num_attention_heads


def _quiet_transformers() -> None:
    if os.environ.get("KOFORGE_PROGRESS", "1") in ("0", "off", "false"):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def load_tokenizer(path: str | Path, *, trust_remote_code: bool = False) -> Any:
    """The tokenizer saved in a model folder (or hub name); `TokenizerError` when there is none."""
    from transformers import AutoTokenizer

    local = Path(path).expanduser()
    if local.exists() and not any((local / n).exists() for n in
                                  ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")):
        raise TokenizerError(
            f"no tokenizer in model folder '{local}' (expected tokenizer.json or tokenizer.model with "
            "tokenizer_config.json). Save it beside the weights: tokenizer.save_pretrained(folder).")
    try:
        return AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise TokenizerError(f"cannot load the tokenizer of '{path}': {load_failure(path, e)}. "
                             "Check that the folder holds a complete tokenizer.") from None


def load_model_config(path: str | Path, *, trust_remote_code: bool = False) -> Any:
    """The config of a supported causal LM (a folder or hub name), without its weights."""
    from transformers import AutoConfig

    local = Path(path).expanduser()
    if local.exists() or str(path).startswith(("/", ".", "~")):  # else a hub name such as org/model-1.2B
        require_path(local, "model folder")
        if not (local / "config.json").exists():
            raise ModelLoadError(f"'{local}' has no config.json: it is not a Hugging Face model folder.")
    else:  # a hub name: the cache, else one quick look at the hub (a mistyped path fails in a second)
        require_cached_or_on_hub(str(path), "model", ModelLoadError, trust_remote_code=trust_remote_code)
    try:
        config = AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as e:
        raise ModelLoadError(f"cannot read the config of '{path}': {load_failure(path, e)}.") from None
    if config.model_type not in _LAYOUTS:
        raise UnsupportedModelError(
            f"model type '{config.model_type}' of '{path}' is not supported by koforge compress. Supported model "
            f"types: {', '.join(SUPPORTED_MODEL_TYPES)} (koforge's own LMs export as llama).")
    return config


def load_model(path: str | Path, *, dtype: str = "auto", trust_remote_code: bool = False,
               apply_runtime: bool = True) -> tuple[nn.Module, Any]:
    """Load a supported causal LM and its tokenizer (eval mode, CPU or where it was put).

    When the folder was int8-quantized by koforge and `apply_runtime` is set, its
    linears are swapped for torch dynamic int8 ones (see `koforge.compress.quantize`).
    A checkpoint with missing or unreadable weights is refused in one message.
    """
    from transformers import AutoModelForCausalLM

    _quiet_transformers()
    load_model_config(path, trust_remote_code=trust_remote_code)
    tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
    from safetensors import SafetensorError
    try:
        with quiet_load_report():  # its report of missing weights: refused below in one message
            model, info = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, trust_remote_code=trust_remote_code,
                                                               output_loading_info=True)
    except SafetensorError as e:
        raise corrupted_weights(path, e) from None
    except (OSError, ValueError, RuntimeError) as e:
        raise ModelLoadError(f"cannot load the weights of '{path}': {load_failure(path, e)}.") from None
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        raise ModelLoadError(f"'{path}' lacks {len(missing)} weights of its architecture (e.g. {missing[0]}): the "
                             "checkpoint is incomplete. Re-download or re-save the model.")
    layout_of(model)
    model.eval()
    if apply_runtime and getattr(model.config, "koforge_quantization", None):
        from koforge.compress.quantize import apply_int8_runtime

        model = apply_int8_runtime(model)
    return model, tokenizer


def save_model(model: nn.Module, tokenizer: Any, folder: str | Path, provenance: dict | None = None) -> Path:
    """Save weights (one safetensors file), config and tokenizer into an existing folder."""
    folder = Path(folder)
    model.save_pretrained(str(folder), max_shard_size="100GB")
    save_tokenizer(tokenizer, folder)  # loads in transformers 4.x as well as 5.x (submissions often target 4.x)
    if provenance is not None:
        (folder / PROVENANCE_FILE).write_text(json.dumps(provenance, ensure_ascii=False, indent=2, default=str) + "\n",
                                              encoding="utf-8")
    return folder


def tokenizer_sha(tokenizer: Any) -> str:
    """A hash of the tokenizer's vocabulary (id <-> piece), what perplexities depend on."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    return hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


def model_fingerprint(model: nn.Module, tokenizer: Any) -> dict:
    """What identifies a model cheaply: type, shape config, tokenizer, and an embedding checksum."""
    cfg = model.config
    shape = {k: getattr(cfg, k, None) for k in ("model_type", "vocab_size", "hidden_size", "intermediate_size",
                                                "num_hidden_layers", "num_attention_heads", "num_key_value_heads")}
    emb = model.get_input_embeddings().weight.detach()
    checksum = float(emb.double().abs().sum()) if emb.dtype.is_floating_point else 0.0
    return {"model_type": cfg.model_type,
            "config_sha": hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16],
            "tokenizer_sha": tokenizer_sha(tokenizer),
            "embed_checksum": round(checksum, 3)}


def read_provenance(folder: str | Path) -> dict | None:
    """The `koforge_compression.json` of a compressed folder, or None."""
    path = Path(folder) / PROVENANCE_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


@torch.no_grad()
def copy_linear(weight: torch.Tensor, out_idx: torch.Tensor | None = None, in_idx: torch.Tensor | None = None) -> nn.Linear:
    """A bias-free nn.Linear holding `weight` restricted to the given output rows / input columns."""
    w = weight
    if out_idx is not None:
        w = w.index_select(0, out_idx.to(w.device))
    if in_idx is not None:
        w = w.index_select(1, in_idx.to(w.device))
    lin = nn.Linear(w.shape[1], w.shape[0], bias=False, device=w.device, dtype=w.dtype)
    lin.weight.copy_(w)
    return lin

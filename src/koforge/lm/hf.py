"""Export a dense KoLM to Hugging Face `LlamaForCausalLM` and import one back.

The parameter names match except KoLM's fused projections, which are split
into Llama's q/k/v_proj and gate/up_proj by row slices (and stacked back on
import), so export is: map the config, write the tensors into
`model.safetensors`, write `config.json` (+ tokenizer files when given, in
the form transformers 4.x and 5.x both load). MoE models have no Llama
layout and are refused; MTP heads are training-time extras and are dropped
(the next-token model is unchanged).
Static-NTK RoPE exports as plain RoPE with its adjusted theta. YaRN imports
with the paper's defaults only; other attention factors or betas are refused.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import load_file, save_file

from koforge._utils.errors import ConfigError, ModelLoadError
from koforge._utils.io import atomic_dir, check_output, read_json, require_path, write_json
from koforge._utils.logging import get_logger
from koforge.lm.config import LMConfig
from koforge.lm.model import KoLM, fuse_llama_tensors, split_fused_tensors
from koforge.lm.rope import effective_theta

log = get_logger(__name__)


def to_llama_config_dict(config: LMConfig, *, bos_id: int | None = None, eos_id: int | None = None,
                         pad_id: int | None = None) -> dict:
    """The `config.json` of the equivalent LlamaForCausalLM."""
    if not config.is_dense:
        raise ModelLoadError(f"a mixture-of-experts model (moe_experts={config.moe_experts}) has no LlamaForCausalLM "
                             "layout; export a dense model (moe_experts=0).")
    rope: dict = {"rope_type": "default", "rope_theta": effective_theta(config)}
    if config.rope_scaling == "linear":
        rope = {"rope_type": "linear", "rope_theta": config.rope_theta, "factor": config.rope_factor}
    elif config.rope_scaling == "yarn":
        rope = {"rope_type": "yarn", "rope_theta": config.rope_theta, "factor": config.rope_factor,
                "original_max_position_embeddings": config.rope_original_max_seq_len
                or int(config.max_seq_len / config.rope_factor)}
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": config.vocab_size,
        "hidden_size": config.d_model, "intermediate_size": config.d_ff, "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads, "num_key_value_heads": config.n_kv_heads, "head_dim": config.head_dim,
        "max_position_embeddings": config.max_seq_len, "rms_norm_eps": config.norm_eps, "hidden_act": "silu",
        "tie_word_embeddings": config.tie_embeddings, "rope_parameters": rope, "rope_theta": rope["rope_theta"],
        "attention_bias": False, "mlp_bias": False, "initializer_range": config.init_std, "torch_dtype": "float32",
        "bos_token_id": bos_id, "eos_token_id": eos_id, "pad_token_id": pad_id, "use_cache": True,
    }


def from_llama_config_dict(raw: dict) -> LMConfig:
    """An LMConfig from a Llama `config.json` dict."""
    if raw.get("model_type") != "llama":
        raise ModelLoadError(f"config.json has model_type={raw.get('model_type')!r}; only 'llama' imports into KoLM.")
    rope = raw.get("rope_parameters") or raw.get("rope_scaling") or {}
    kind = rope.get("rope_type") or rope.get("type") or "default"
    theta = float(rope.get("rope_theta", raw.get("rope_theta", 10000.0)))
    n_heads = raw["num_attention_heads"]
    if raw.get("head_dim") not in (None, raw["hidden_size"] // n_heads):
        raise ModelLoadError(f"head_dim={raw['head_dim']} != hidden_size / num_attention_heads; KoLM needs that layout.")
    if raw.get("hidden_act", "silu") != "silu":
        raise ModelLoadError(f"hidden_act={raw['hidden_act']!r} is not supported: KoLM's MLP is SwiGLU (silu), so this "
                             "model would give other logits than in transformers.")
    if raw.get("attention_bias") or raw.get("mlp_bias"):
        raise ModelLoadError("Llama models with attention/MLP biases are not supported by KoLM.")
    scaling = {"default": "none", "linear": "linear", "yarn": "yarn"}.get(kind)
    if scaling is None:
        raise ModelLoadError(f"RoPE type {kind!r} is not supported (default, linear, yarn).")
    if float(rope.get("partial_rotary_factor", raw.get("partial_rotary_factor", 1.0))) != 1.0:
        raise ModelLoadError("partial_rotary_factor != 1 (RoPE on part of each head) is not supported by KoLM.")
    if scaling == "yarn":
        _check_yarn_parameters(rope)
        # transformers' default when the key is absent (KoLM's own default, max_seq_len / factor, differs)
        rope = {"original_max_position_embeddings": raw.get("max_position_embeddings"), **rope}
    try:
        return LMConfig(vocab_size=raw["vocab_size"], d_model=raw["hidden_size"], n_layers=raw["num_hidden_layers"],
                        n_heads=n_heads, n_kv_heads=raw.get("num_key_value_heads") or n_heads,
                        d_ff=raw["intermediate_size"], max_seq_len=raw.get("max_position_embeddings", 2048),
                        rope_theta=theta, rope_scaling=scaling, rope_factor=float(rope.get("factor", 1.0)),
                        rope_original_max_seq_len=rope.get("original_max_position_embeddings"),
                        norm_eps=raw.get("rms_norm_eps", 1e-6), tie_embeddings=bool(raw.get("tie_word_embeddings", False)),
                        init_std=raw.get("initializer_range", 0.02))
    except KeyError as e:
        raise ModelLoadError(f"config.json lacks the Llama key {e}.") from None
    except ConfigError as e:
        raise ModelLoadError(f"config.json does not describe a valid KoLM: {e}") from None


def _check_yarn_parameters(rope: dict) -> None:
    """Refuse YaRN settings KoLM does not implement (it has the paper's defaults only), so an import never
    gives other logits than transformers. Values equal to the defaults are accepted."""
    factor = float(rope.get("factor") or 1.0)

    def mscale(scale: float, m: float = 1.0) -> float:  # the YaRN paper's attention scale, as transformers has it
        return 0.1 * m * math.log(scale) + 1.0 if scale > 1 else 1.0

    attention = rope.get("attention_factor")
    if attention is None:
        both = rope.get("mscale") and rope.get("mscale_all_dim")
        attention = mscale(factor, rope["mscale"]) / mscale(factor, rope["mscale_all_dim"]) if both else mscale(factor)
    bad = []
    if not math.isclose(float(attention), mscale(factor), rel_tol=1e-9):
        bad += [k for k in ("attention_factor", "mscale", "mscale_all_dim") if rope.get(k) is not None]
    bad += [k for k, default in (("beta_fast", 32), ("beta_slow", 1)) if (rope.get(k) or default) != default]
    bad += ["truncate"] if rope.get("truncate", True) is False else []
    if bad:
        shown = ", ".join(f"{k}={rope.get(k)!r}" for k in bad)
        raise ModelLoadError(f"YaRN RoPE with {shown} is not supported: KoLM implements YaRN with its defaults only "
                             f"(attention factor 0.1*ln(factor)+1 = {mscale(factor):.6g}, beta_fast=32, beta_slow=1, "
                             "truncate=true), so this model would give other logits than in transformers.")


def dense_state_dict(model: KoLM) -> dict[str, torch.Tensor]:
    """The Llama tensors of `model` (MTP heads dropped, tied lm_head written once)."""
    out = {}
    for name, t in split_fused_tensors(model.state_dict(), model.config).items():
        if name.startswith("mtp.") or (model.config.tie_embeddings and name == "lm_head.weight"):
            continue
        out[name] = t.detach().to("cpu").contiguous().clone()
    return out


def save_tokenizer_files(tokenizer: str | Path, output_dir: Path, eos_id: int | None) -> None:
    """Write a tokenizer (a folder with tokenizer.json, or the file) beside the exported model.

    The same pipeline, special tokens and chat template as the source, in the form transformers 4.x and 5.x both
    load (`koforge.tokenizers.io.save_tokenizer`); the model's EOS is named when the tokenizer names none.
    """
    src = require_path(tokenizer, "tokenizer")
    file = src / "tokenizer.json" if src.is_dir() else src
    if not file.exists():
        raise ModelLoadError(f"no tokenizer.json in '{src}'. Pass the folder written by `koforge tokenizer train`.")
    from koforge.tokenizers.io import load_tokenizer, save_tokenizer

    tok = load_tokenizer(src)  # a folder's tokenizer_config.json (or a bare file's siblings) names specials and template
    if eos_id is not None and tok.eos_token is None:
        tok.eos_token = tok.convert_ids_to_tokens(eos_id)
    save_tokenizer(tok, output_dir)


def export_model(model: KoLM, output_dir: str | Path, *, tokenizer: str | Path | None = None,
                 eos_id: int | None = None, overwrite: bool = False, inputs: Sequence[str | Path] = ()) -> Path:
    """Write `model` as a LlamaForCausalLM folder (never onto `inputs`, e.g. the run it comes from)."""
    config = to_llama_config_dict(model.config, eos_id=eos_id)
    if model.config.mtp_heads:
        log.warning("'%s' gets the next-token model only: LlamaForCausalLM has no place for the %d multi-token-"
                    "prediction head(s), so they are dropped (keep the koforge checkpoint for --speculative).",
                    output_dir, model.config.mtp_heads)
    if tokenizer is not None:  # a tokenizer of another model would give ids past the embedding table
        from koforge.tokenizers.io import load_tokenizer

        n_tokens = len(load_tokenizer(tokenizer))
        if n_tokens > model.config.vocab_size:
            raise ConfigError(f"tokenizer '{tokenizer}' has {n_tokens:,} tokens but the model only "
                              f"{model.config.vocab_size:,} embedding rows: it is not the tokenizer the model was trained "
                              "with. Pass that one (the one `koforge data pack` used), or leave --tokenizer out to ship "
                              "the one recorded in the run.")
    with atomic_dir(output_dir, overwrite=overwrite, inputs=[*inputs] + ([tokenizer] if tokenizer else [])) as tmp:
        save_file(dense_state_dict(model), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        write_json(tmp / "config.json", config)
        write_json(tmp / "generation_config.json", {"eos_token_id": eos_id, "do_sample": False})
        if tokenizer is not None:
            save_tokenizer_files(tokenizer, tmp, eos_id)
    return Path(output_dir)


def export_to_hf(checkpoint_dir: str | Path, output_dir: str | Path, *, tokenizer: str | Path | None = None,
                 overwrite: bool = False) -> Path:
    """Export a koforge checkpoint folder to a folder `AutoModelForCausalLM.from_pretrained` loads."""
    from koforge.lm.checkpoint import load_model

    check_output(output_dir, overwrite, [checkpoint_dir] + ([tokenizer] if tokenizer else []))  # before loading
    model, _, meta = load_model(checkpoint_dir)
    recorded = meta.get("tokenizer")
    if tokenizer is None and recorded:
        if Path(recorded).exists():
            tokenizer = recorded
        else:
            log.warning("the tokenizer recorded with '%s' ('%s') is not a local file or folder (moved, deleted, or a "
                        "hub name): '%s' gets the model without tokenizer files. Pass tokenizer=PATH (--tokenizer) "
                        "to ship one.", checkpoint_dir, recorded, output_dir)
    return export_model(model, output_dir, tokenizer=tokenizer, eos_id=meta.get("eos_id"), overwrite=overwrite,
                        inputs=[checkpoint_dir])


def import_from_hf(folder: str | Path) -> tuple[KoLM, LMConfig]:
    """Load a local LlamaForCausalLM folder (config.json + safetensors) as a KoLM."""
    folder = require_path(folder, "Hugging Face model folder")
    cfg_path = folder / "config.json"
    if not cfg_path.exists():
        raise ModelLoadError(f"'{folder}' has no config.json; pass a folder saved by save_pretrained / `koforge lm export`.")
    config = read_llama_config(folder)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ModelLoadError(f"'{folder}' has no *.safetensors weights (only safetensors are loaded, never pickles).")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            state.update(load_file(str(f)))
        except Exception as e:  # safetensors raises its own error type for a truncated or garbled header
            raise ModelLoadError(f"'{f}' is not a readable safetensors file ({e}): truncated or corrupted. "
                                 "Copy or export the model again.") from None
    model = KoLM(config)
    # Checked under the Llama names the user's files carry, before q/k/v and gate/up are stacked.
    expected = {k: v.shape for k, v in split_fused_tensors(model.state_dict(), config).items()}
    if config.tie_embeddings:
        expected.pop("lm_head.weight", None)
        state.pop("lm_head.weight", None)
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ModelLoadError(f"weights in '{folder}' do not match the Llama layout: missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]}.")
    wrong = [(k, list(v.shape), list(expected[k])) for k, v in state.items() if v.shape != expected[k]]
    if wrong:
        k, got, want = wrong[0]
        raise ModelLoadError(f"weights in '{folder}' do not fit its config.json: {k} is {got}, the config implies "
                             f"{want} ({len(wrong)} tensor(s) differ). Re-export the model, or fix config.json.")
    state = fuse_llama_tensors(state)
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    return model.eval(), config


def read_llama_config(folder: Path) -> LMConfig:
    """The KoLM config of a Hugging Face Llama folder's config.json, with one clear error for a broken file."""
    raw = read_json(folder / "config.json", "Hugging Face config")
    if not isinstance(raw, dict):
        raise ModelLoadError(f"'{folder / 'config.json'}' is not a JSON object. Re-export the model.")
    try:
        return from_llama_config_dict(raw)
    except (KeyError, TypeError, ValueError, ArithmeticError) as e:  # e.g. num_attention_heads: 0
        raise ModelLoadError(f"'{folder / 'config.json'}' lacks or garbles a Llama field ({type(e).__name__}: {e}). "
                             "Re-export the model, or fix config.json.") from None


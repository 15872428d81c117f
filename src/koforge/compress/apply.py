"""Apply a compression recipe to a model folder and save the result as a plain HF folder.

The steps of `CompressionConfig.methods` run in order on the loaded model.
Calibration text (for Block Influence, activation importance and healing) is
read from `calibration_texts`, or else from the held-out file *after* the
documents the perplexity uses, so that nothing is tuned on the evaluation
text. The output is written atomically, with `koforge_compression.json`
(base model, its fingerprint, the recipe, what each step did), and reloaded
before it is accepted: the reloaded model must give the in-memory model's
logits, which proves that config.json matches the weights.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Optional

import torch

from koforge._utils.errors import ConfigError, ModelLoadError
from koforge._utils.io import atomic_dir
from koforge.compress.analyze import analyze_model
from koforge.compress.calibration import load_texts, token_sequences
from koforge.compress.config import CompressionConfig, MeasureConfig
from koforge.compress.heads import check_keep_heads, prune_heads
from koforge.compress.heal import heal
from koforge.compress.layers import block_influence, drop_layers, layers_to_keep
from koforge.compress.layout import head_dim, load_model, model_fingerprint, save_model
from koforge.compress.quantize import convert_dtype, quantize_int8
from koforge.compress.width import reduce_width
from koforge.config import config_to_dict

def calibration_sequences(tokenizer: Any, config: CompressionConfig, measure: Optional[MeasureConfig],
                          max_sequences: Optional[int] = None) -> torch.Tensor:
    """(N, T) calibration blocks from `calibration_texts`, else from the held-out file past the eval documents."""
    if config.calibration_texts:
        texts = load_texts(config.calibration_texts, text_field=measure.text_field if measure else "text",
                           max_docs=config.calibration_docs, max_chars=10 ** 9)
    elif measure is not None and measure.texts:
        used = len(load_texts(measure.texts, text_field=measure.text_field, max_docs=measure.max_docs,
                              max_chars=measure.max_chars))
        if len(load_texts(measure.texts, text_field=measure.text_field, max_docs=used + 1, max_chars=10 ** 9)) <= used:
            raise ConfigError(f"the held-out file '{measure.texts}' has no documents past the {used} its perplexity reads, "
                              "and calibration must not read those: set compression.calibration_texts=FILE (other "
                              "text) or use a longer held-out file.")
        texts = load_texts(measure.texts, text_field=measure.text_field, max_docs=config.calibration_docs,
                           max_chars=10 ** 9, skip=used)
    else:
        users = _calibration_users(config)
        raise ConfigError(f"{' and '.join(users)} need{'s' if len(users) == 1 else ''} calibration text: give the held-out file "
                          "(--texts, measure.texts; calibration reads the documents after those the perplexity uses) "
                          "or compression.calibration_texts=FILE.")
    return token_sequences(tokenizer, texts, length=config.calibration_context, max_sequences=max_sequences)


def _calibration_users(config: CompressionConfig) -> list[str]:
    """The steps of the recipe that read calibration text, as the settings that make them do so."""
    m = config.methods
    users = [("drop_layers" in m and config.drop_strategy == "importance", "drop_layers (drop_strategy=importance)"),
             ("prune_heads" in m and config.head_importance == "activation", "prune_heads (head_importance=activation)"),
             ("reduce_width" in m and config.width_importance == "activation", "reduce_width (width_importance=activation)"),
             ("heal" in m, "heal")]
    return [name for used, name in users if used]


def _needs_calibration(config: CompressionConfig) -> bool:
    return bool(_calibration_users(config))


def _refused_by_transformers(model_config: Any, heads: int, hidden: int) -> Optional[str]:
    """Why transformers would refuse the config with `heads` query heads and `hidden` width, or None.

    transformers 5 validates a config when it is saved and loaded (Llama: hidden_size a multiple of
    num_attention_heads, even with an explicit head_dim), so a cut it refuses would otherwise fail only at
    save time, after every slow step."""
    if getattr(model_config, "validate", None) is None:  # transformers 4.x: no validation
        return None
    trial = copy.deepcopy(model_config)
    g = model_config.num_attention_heads // model_config.num_key_value_heads
    trial.head_dim = head_dim(model_config)
    trial.num_attention_heads, trial.num_key_value_heads, trial.hidden_size = heads, max(heads // g, 1), hidden
    try:
        trial.validate()
    except Exception as e:  # noqa: BLE001  huggingface_hub's StrictDataclassClassValidationError wraps a ValueError
        return str(e.__cause__ or e).strip().splitlines()[0].rstrip(".")
    return None


def _check_saveable(model_config: Any, config: CompressionConfig) -> None:
    n_heads, n_hidden = model_config.num_attention_heads, model_config.hidden_size
    heads = config.keep_heads if "prune_heads" in config.methods else n_heads
    hidden = config.hidden_size if "reduce_width" in config.methods and config.hidden_size else n_hidden
    if (heads, hidden) == (n_heads, n_hidden) or _refused_by_transformers(model_config, n_heads, n_hidden):
        return
    why = _refused_by_transformers(model_config, heads, hidden)
    if why is None:
        return
    if hidden != n_hidden:
        accepted = lambda h: not _refused_by_transformers(model_config, heads, h)  # noqa: E731
        near = [h for h in (next((h for h in range(hidden - 1, 0, -1) if accepted(h)), None),
                            next((h for h in range(hidden + 1, n_hidden + 1) if accepted(h)), None)) if h]
        what, fix = f"compression.hidden_size={hidden}", f"choose a hidden_size it accepts, e.g. {' or '.join(map(str, near))}"
    else:
        g = n_heads // model_config.num_key_value_heads
        ok = [str(k) for k in range(g, n_heads + 1, g) if not _refused_by_transformers(model_config, k, hidden)]
        what, fix = f"compression.keep_heads={heads}", f"choose keep_heads from: {', '.join(ok)}"
    raise ConfigError(f"{what} gives a {model_config.model_type} config that transformers refuses to save and load "
                      f"({why}); {fix}.")


def check_recipe(model_config: Any, config: CompressionConfig) -> None:
    """Refuse, before any slow step, a recipe that does not fit the model (layers, heads, widths)."""
    n_layers = model_config.num_hidden_layers
    if "drop_layers" in config.methods and config.drop_strategy != "importance":
        layers_to_keep(n_layers, strategy=config.drop_strategy, keep_layers=config.layers_kept(n_layers),
                       drop_indices=config.drop_indices)
    elif "drop_layers" in config.methods:
        layers_to_keep(n_layers, strategy="top", keep_layers=config.layers_kept(n_layers))
    if "prune_heads" in config.methods:
        check_keep_heads(model_config, config.keep_heads)
    for name in ("intermediate_size", "hidden_size"):
        value, have = getattr(config, name), getattr(model_config, name)
        if "reduce_width" in config.methods and value is not None and not 1 <= value <= have:
            raise ConfigError(f"compression.{name}={value} out of range: the model has {have}.")
    _check_saveable(model_config, config)


def compress_model(model: Any, tokenizer: Any, config: CompressionConfig, *,
                   measure: Optional[MeasureConfig] = None, teacher: Any = None) -> tuple[Any, list[dict]]:
    """Run the recipe's steps in place on a loaded model; returns (model, what each step did)."""
    check_recipe(model.config, config)
    if "heal" in config.methods and teacher is None:
        teacher = copy.deepcopy(model)
    sequences = calibration_sequences(tokenizer, config, measure) if _needs_calibration(config) else None
    steps = []
    for method in config.methods:
        if method == "drop_layers":
            influence = None
            if config.drop_strategy == "importance":
                influence = block_influence(model, sequences[: config.calibration_docs])
            n_layers = model.config.num_hidden_layers
            keep = layers_to_keep(n_layers, strategy=config.drop_strategy, keep_layers=config.layers_kept(n_layers),
                                  drop_indices=config.drop_indices, influence=influence)
            drop_layers(model, keep)
            steps.append({"method": method, "kept_layers": keep, "block_influence": influence})
        elif method == "prune_heads":
            prune_heads(model, config.keep_heads, importance=config.head_importance,
                        sequences=None if sequences is None else sequences[: config.calibration_docs])
            steps.append({"method": method, "keep_heads": config.keep_heads})
        elif method == "reduce_width":
            reduce_width(model, intermediate_size=config.intermediate_size, hidden_size=config.hidden_size,
                         importance=config.width_importance,
                         sequences=None if sequences is None else sequences[: config.calibration_docs])
            steps.append({"method": method, "intermediate_size": config.intermediate_size,
                          "hidden_size": config.hidden_size})
        elif method == "heal":
            curve = heal(model, teacher, sequences, steps=config.heal_steps, lr=config.heal_lr,
                         batch_size=config.heal_batch_size, temperature=config.heal_temperature, seed=config.seed)
            steps.append({"method": method, **{k: v for k, v in curve.items() if k != "losses"}})
        elif method == "convert_dtype":
            convert_dtype(model, config.dtype)
            steps.append({"method": method, "dtype": config.dtype})
        elif method == "quantize_int8":
            quantize_int8(model, skip_lm_head=config.int8_skip_lm_head)
            steps.append({"method": method, "skip_lm_head": config.int8_skip_lm_head})
    return model, steps


@torch.inference_mode()
def _check_reload(model: Any, folder: Path) -> float:
    reloaded, _ = load_model(folder, apply_runtime=False)
    ids = torch.arange(min(16, model.config.vocab_size), dtype=torch.long)[None]  # (1, T)
    a = model(input_ids=ids, use_cache=False).logits.float()
    b = reloaded(input_ids=ids, use_cache=False).logits.float()
    diff = float((a - b).abs().max())
    if a.shape != b.shape or diff > 1e-3 * max(1.0, float(a.abs().max())):
        raise ModelLoadError(f"the saved model does not reproduce the compressed one (max logit difference {diff:.3g}); "
                             "its config does not match its weights. Nothing was written. Please report this.")
    return diff


def apply_compression(model_path: str | Path, config: CompressionConfig, output: str | Path, *,
                      measure: Optional[MeasureConfig] = None, overwrite: bool = False,
                      trust_remote_code: bool = False) -> dict:
    """Load `model_path`, run the recipe, save a HF folder at `output`; returns a summary."""
    from koforge._utils.io import check_output

    out = check_output(output, overwrite)
    base = Path(model_path).expanduser()
    if base.exists() and out.exists() and out.resolve() == base.resolve():
        from koforge._utils.errors import ConfigError

        raise ConfigError(f"output '{out}' is the base model folder itself; --overwrite would replace the model being "
                          "compressed (and its baseline). Choose another output folder.")
    model, tokenizer = load_model(model_path, trust_remote_code=trust_remote_code, apply_runtime=False)
    before = analyze_model(model)
    if {"heal", "quantize_int8"} & set(config.methods) and model.dtype != torch.float32:
        model = model.float()  # healing trains, and the int8 grid is exact, in float32 (bf16 checkpoints upcast)
    base_fp = model_fingerprint(model, tokenizer)
    model, steps = compress_model(model, tokenizer, config, measure=measure)
    after = analyze_model(model)
    provenance = {"base_model": str(model_path), "base_fingerprint": base_fp, "config": config_to_dict(config),
                  "steps": steps, "before": before, "after": after}
    with atomic_dir(output, overwrite=overwrite) as tmp:
        save_model(model, tokenizer, tmp, provenance=provenance)
        reload_diff = _check_reload(model, tmp)
    return {"output": str(output), "steps": steps, "before": before, "after": after, "reload_max_diff": reload_diff}

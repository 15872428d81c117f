"""Open a model for inference from a koforge checkpoint/run folder or a Hugging Face Llama folder."""
from __future__ import annotations

from pathlib import Path

from koforge._utils.errors import ModelLoadError
from koforge._utils.io import read_json, require_path
from koforge.lm.checkpoint import list_checkpoints, load_model, verified_checkpoint
from koforge.lm.config import LMConfig
from koforge.lm.hf import import_from_hf, read_llama_config
from koforge.lm.model import KoLM


def _is_koforge(path: Path) -> bool:
    return (path / "meta.json").exists() or (path / "checkpoints").is_dir() or bool(list_checkpoints(path))


def _not_a_model(path: Path) -> ModelLoadError:
    if path.is_file():
        hint = f" (the folder it is in: '{path.parent}')" if path.suffix in (".safetensors", ".json", ".pt") else ""
        return ModelLoadError(f"'{path}' is a file; pass a koforge checkpoint/run folder or a Hugging Face Llama "
                              f"folder{hint}.")
    return ModelLoadError(f"'{path}' is neither a koforge checkpoint/run folder nor a Hugging Face Llama folder "
                          "(no meta.json, checkpoints/ or config.json).")


def open_model(path: str | Path) -> tuple[KoLM, LMConfig, dict]:
    """(model, config, info) where info may hold `eos_id` and `tokenizer` (an absolute path, or a hub name)."""
    path = require_path(path, "model")
    if _is_koforge(path):
        model, config, meta = load_model(path)
        return model, config, {"eos_id": meta.get("eos_id"), "tokenizer": meta.get("tokenizer")}
    if (path / "config.json").exists():
        model, config = import_from_hf(path)
        raw = read_json(path / "config.json", "Hugging Face config")
        eos = raw.get("eos_token_id")
        tok = str(path.resolve()) if (path / "tokenizer.json").exists() else None
        return model, config, {"eos_id": eos[0] if isinstance(eos, list) else eos, "tokenizer": tok}
    raise _not_a_model(path)


def read_model_config(path: str | Path) -> LMConfig:
    """The architecture of what `open_model` would open, without loading its weights."""
    path = require_path(path, "model")
    if _is_koforge(path):
        return LMConfig.from_dict(verified_checkpoint(path)[1]["model_config"])
    if (path / "config.json").exists():
        return read_llama_config(path)
    raise _not_a_model(path)

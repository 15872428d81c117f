"""Open a model for inference from a koforge checkpoint/run folder or a Hugging Face Llama folder."""
from __future__ import annotations

from pathlib import Path

from koforge._utils.errors import ModelLoadError
from koforge._utils.io import require_path
from koforge.lm.checkpoint import list_checkpoints, load_model
from koforge.lm.config import LMConfig
from koforge.lm.hf import import_from_hf
from koforge.lm.model import KoLM


def open_model(path: str | Path) -> tuple[KoLM, LMConfig, dict]:
    """(model, config, info) where info may hold `eos_id` and `tokenizer` (a path)."""
    path = require_path(path, "model")
    is_koforge = (path / "meta.json").exists() or (path / "checkpoints").is_dir() or bool(list_checkpoints(path))
    if is_koforge:
        model, config, meta = load_model(path)
        return model, config, {"eos_id": meta.get("eos_id"), "tokenizer": meta.get("tokenizer")}
    if (path / "config.json").exists():
        model, config = import_from_hf(path)
        import json

        raw = json.loads((path / "config.json").read_text(encoding="utf-8"))
        eos = raw.get("eos_token_id")
        tok = str(path) if (path / "tokenizer.json").exists() else None
        return model, config, {"eos_id": eos[0] if isinstance(eos, list) else eos, "tokenizer": tok}
    raise ModelLoadError(f"'{path}' is neither a koforge checkpoint/run folder nor a Hugging Face Llama folder "
                         "(no meta.json, checkpoints/ or config.json).")

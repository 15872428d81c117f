"""Stage settings checked against the model's structure before anything trains.

Scopes and objectives meet the model only when their stage starts: a `top_blocks` count beyond the
model's blocks, LoRA targets that name no module, a second `adapters` stage, or an `mlm` stage on a
tokenizer without a mask token would otherwise fail after the earlier stages had trained for their whole
budget. The structure comes from the model's config (a folder, a hub
sentence-transformers repo's snapshot, or a hub model's config.json, cached or downloaded alone), built on
the meta device (no weights read, no memory). A config that does not build, or one that cannot be had (hub
off and not cached), leaves the checks to load time.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from koforge._utils.errors import ConfigError
from koforge.embeddings.adapters import ADAPTER_CONFIG, find_blocks
from koforge.embeddings.ffn_adapters import ffn_layout
from koforge.embeddings.model import hub_sentence_transformer_folder
from koforge.embeddings.scopes import lora_targets, top_block_list


def _cached_config_folder(name: str) -> Path | None:
    """The snapshot holding hub model `name`'s config.json: from the cache, else (hub on) downloaded alone, a
    few kB the later load reuses. Called after `require_hub_model` found the name, so the hub answers; a
    failure leaves the checks to load time."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    from koforge._utils.hub import hub_offline

    try:
        cached = try_to_load_from_cache(name, "config.json")
        if not isinstance(cached, str) and not hub_offline():
            cached = hf_hub_download(name, "config.json")
    except Exception:  # not a valid repo name, no config.json, the hub gone since
        return None
    return Path(cached).parent if isinstance(cached, str) else None


def backbone_folder(model_path: str | os.PathLike) -> Path:
    """The folder of the Hugging Face weights: the Transformer module's of a sentence-transformers folder
    (for a hub name of a sentence-transformers repo, of its local snapshot)."""
    path = Path(model_path).expanduser()
    if not path.exists():
        path = hub_sentence_transformer_folder(str(model_path)) or _cached_config_folder(str(model_path)) or path
    modules = path / "modules.json"
    if modules.exists():
        try:
            entries = json.loads(modules.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return path
        for entry in entries:
            if "Transformer" in entry.get("type", ""):
                return path / entry.get("path", "")
    return path


def _meta_model(folder: Path, trust_remote_code: bool):
    """The backbone built from its config on the meta device, or None when there is no local config or it
    does not build."""
    import torch
    from transformers import AutoConfig, AutoModel

    try:
        if not (folder / "config.json").exists():  # a hub name neither cached nor a sentence-transformers repo
            return None
        config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
        with torch.device("meta"):
            return AutoModel.from_config(config, trust_remote_code=trust_remote_code)
    except Exception:  # any config the loader itself would reject: it reports that at load time
        return None


def _check_mask_token(stages: Sequence, folder: Path) -> None:
    """An `mlm` stage needs a tokenizer with a mask token (encoders); a tokenizer that does not load is left
    to load time."""
    from koforge.embeddings.data import group_by_objective

    mlm = [s.name for s in stages if "mlm" in group_by_objective(s.data, s.objective)]
    if not mlm or not folder.is_dir():  # a hub name neither cached nor downloaded: load time will say
        return
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder)
    except Exception:
        return
    if getattr(tokenizer, "mask_token_id", None) is None:
        raise ConfigError(f"stage '{mlm[0]}': objective 'mlm' needs a tokenizer with a mask token (an encoder such as "
                          f"BERT); the tokenizer of '{folder}' has none. Use simcse or distill for its unlabelled text.")


def check_stages_fit_model(stages: Sequence, model_path: str | os.PathLike, *, trust_remote_code: bool = False) -> None:
    """Raise ConfigError naming the stage whose scope settings cannot apply to the model at `model_path`."""
    folder = backbone_folder(model_path)
    _check_mask_token(stages, folder)
    adapters_from = "the model" if (folder / ADAPTER_CONFIG).exists() else None
    for stage in stages:
        if stage.scope == "adapters" and stage.adapter.kind != "ffn":  # ffn adapters merge: nothing to stack on
            if adapters_from:
                raise ConfigError(f"stage '{stage.name}': scope 'adapters' would stack a second set of adapters on those of "
                                  f"{adapters_from}. Use another scope after an adapters stage (top_blocks, lora).")
            adapters_from = f"stage '{stage.name}'"
    if not any(s.scope in ("top_blocks", "lora") or (s.scope == "adapters" and s.adapter.kind == "ffn") for s in stages):
        return
    model = _meta_model(folder, trust_remote_code)
    if model is None:
        return
    for stage in stages:
        try:
            if stage.scope == "top_blocks":
                top_block_list(model, stage.top_blocks)
            elif stage.scope == "lora":
                lora_targets(model, stage.lora)
            elif stage.scope == "adapters" and stage.adapter.kind == "ffn":
                ffn_layout(find_blocks(model))
        except ConfigError as e:
            raise ConfigError(f"stage '{stage.name}': {e}") from None

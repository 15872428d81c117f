"""The embedding model: any Hugging Face backbone + pooling + optional L2 normalisation.

Models are plain `sentence_transformers.SentenceTransformer` objects so that
every checkpoint koforge writes loads with `SentenceTransformer(path)` as it
is. A folder (or hub repository) that already has `modules.json` is loaded as it
stands; any other backbone (encoder or decoder) gets a `Transformer -> Pooling -> Normalize`
stack. Pooling is `mean`, `cls` or `lasttoken`; sentence-transformers'
last-token pooling finds the last real token from the attention mask, so it is
correct with left and right padding alike (tested). Decoders without a pad
token get their EOS as pad. A saved model's tokenizer_config.json is rewritten
into the form transformers 4.x and 5.x both load.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from koforge._utils.errors import ConfigError, ModelLoadError, corrupted_weights, file_not_folder, load_failure
from koforge._utils.io import read_json, write_json, write_text
from koforge.tokenizers.io import make_tokenizer_folder_portable

POOLINGS = ("mean", "cls", "lasttoken")
METADATA_FILE = "koforge_embedding.json"


@dataclass(kw_only=True)
class EmbeddingModelConfig:
    """How a backbone becomes a sentence encoder."""

    pooling: Optional[str] = None
    """Token pooling: mean, cls or lasttoken (decoder embedding models such as Qwen3-Embedding). None: a
    sentence-transformers model keeps its own, a bare backbone gets mean; a value replaces either."""
    normalize: Optional[bool] = None
    """L2-normalise sentence embeddings (cosine = dot product). None: a sentence-transformers model keeps
    its own choice, a bare backbone is normalised."""
    max_length: Optional[int] = None
    """Truncate inputs to this many tokens (None: keep the model's own limit)."""
    query_prompt: Optional[str] = None
    """Instruction/prefix stored as the model's `query` prompt (e.g. 'Instruct: ...\\nQuery: ')."""
    trust_remote_code: bool = False
    """Allow custom modelling code from the model folder/hub (only if you trust it)."""

    def __post_init__(self) -> None:
        if self.pooling is not None and self.pooling not in POOLINGS:
            raise ConfigError(f"model.pooling '{self.pooling}' is unknown; use one of {', '.join(POOLINGS)}.")
        if self.max_length is not None and self.max_length < 2:
            raise ConfigError(f"model.max_length must be >= 2 or null, got {self.max_length}.")


def is_sentence_transformer_folder(path: str | os.PathLike) -> bool:
    return (Path(path) / "modules.json").exists()


def hub_sentence_transformer_folder(name: str) -> Optional[Path]:
    """The local snapshot of hub repository `name` when it is a sentence-transformers model (it has
    modules.json), else None. Loading such a repo as a bare backbone would swap its own pooling,
    normalisation, prompts and koforge adapters for koforge's defaults."""
    from huggingface_hub import file_exists, snapshot_download, try_to_load_from_cache

    from koforge._utils.hub import hub_offline

    try:
        if not isinstance(try_to_load_from_cache(name, "modules.json"), str):  # not in the cache
            if hub_offline() or not file_exists(name, "modules.json"):
                return None
        return Path(snapshot_download(name))
    except Exception:  # not a repo name, unreachable, gated...: the backbone loader reports it
        return None


def require_hub_model(name: str, what: str) -> None:
    """Fail at once, naming `what`, when `name` is written like a local path that does not exist, or is a hub
    name neither in the Hugging Face cache nor on a reachable hub (the loaders would retry for ~40 s)."""
    from koforge._utils.errors import InputPathError
    from koforge._utils.hub import is_local, not_local, require_cached_or_on_hub

    if is_local(name):
        raise InputPathError(not_local(name, what))
    require_cached_or_on_hub(name, what, ModelLoadError)


TEXT_ONLY = {"text": {"method": "forward", "method_output_name": "last_hidden_state"}}

KOFORGE_MODULES = ("koforge.embeddings.adapters.AdaptedTransformer",)


def _needs_koforge_module(path: str) -> bool:
    """True when modules.json names koforge's own adapter module (its code ships in koforge, not in the folder)."""
    import json

    entries = json.loads((Path(path) / "modules.json").read_text(encoding="utf-8"))
    types = [e.get("type", "") for e in entries]
    foreign = [t for t in types if not t.startswith("sentence_transformers.") and t not in KOFORGE_MODULES]
    if foreign:
        return False  # left to the user's trust_remote_code
    has_auto_map = any("auto_map" in json.loads(p.read_text(encoding="utf-8"))
                       for p in Path(path).glob("config.json"))
    return any(t in KOFORGE_MODULES for t in types) and not has_auto_map


def build_embedding_model(base: str | os.PathLike, config: EmbeddingModelConfig | None = None,
                          device: str | torch.device = "cpu"):
    """Load `base` (ST folder, HF folder or hub name) as a SentenceTransformer on `device`."""
    from safetensors import SafetensorError
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    cfg = config or EmbeddingModelConfig()
    base = str(base)
    if file_not_folder(base):  # sentence-transformers would take it for a hub name and retry the hub first
        raise ModelLoadError(f"cannot load '{base}' as an embedding backbone: {file_not_folder(base)}.")
    local = Path(base).expanduser()
    if local.is_dir() and not ((local / "modules.json").exists() or (local / "config.json").exists()):
        # a tokenizer folder, say: transformers' own words ask for a model_type in a config.json that is not there
        raise ModelLoadError(f"cannot load '{base}' as an embedding backbone: it holds neither modules.json nor "
                             "config.json, so it is not a model folder (a tokenizer folder?). Pass a folder saved by "
                             "`koforge embed`, SentenceTransformer.save or save_pretrained, or a hub name.")
    if not local.exists():  # a hub name: a sentence-transformers repo keeps its own modules
        require_hub_model(base, "embedding model")
        base = str(hub_sentence_transformer_folder(base) or base)
    try:
        if is_sentence_transformer_folder(base):
            # koforge's adapter module is koforge's own code: loading it needs no trust in the folder.
            trust = cfg.trust_remote_code or _needs_koforge_module(base)
            model = SentenceTransformer(base, device=str(device), trust_remote_code=trust)
        else:
            kwargs = {"trust_remote_code": cfg.trust_remote_code}
            # Plain text in, token states out: sentence-transformers >= 6 would otherwise render every text
            # through a decoder's chat template, so an embedding would pool template tokens too.
            word = Transformer(base, model_kwargs=kwargs, config_kwargs=kwargs, processor_kwargs=kwargs,
                               max_seq_length=cfg.max_length, modality_config=TEXT_ONLY, module_output_name="token_embeddings")
            modules = [word, Pooling(word.get_embedding_dimension(), pooling_mode=cfg.pooling or "mean")]
            if cfg.normalize is not False:
                modules.append(Normalize())
            model = SentenceTransformer(modules=modules, device=str(device))
    except SafetensorError as e:
        raise corrupted_weights(base, e) from None
    except (OSError, ValueError) as e:
        why = load_failure(base, e)
        if "--trust-remote-code" in why:
            raise ModelLoadError(f"cannot load '{base}' as an embedding backbone: {why}.") from None
        raise ModelLoadError(f"cannot load '{base}' as an embedding backbone ({why}). "
                             "Pass a local model folder or a hub name reachable from here.") from None
    _apply_head_settings(model, cfg)
    tok = model.tokenizer
    if tok is not None and getattr(tok, "pad_token", None) is None and getattr(tok, "eos_token", None) is not None:
        tok.pad_token = tok.eos_token
    if cfg.max_length is not None:
        model.max_seq_length = cfg.max_length
    if cfg.query_prompt:
        model.prompts = {**(model.prompts or {}), "query": cfg.query_prompt}
    return model


def _apply_head_settings(model, cfg: EmbeddingModelConfig) -> None:
    """Pooling and normalisation given in `cfg` replace a loaded sentence-transformers model's own (they used to
    be ignored for such a folder without a word)."""
    from sentence_transformers.base.modules import Normalize
    from sentence_transformers.sentence_transformer.modules import Pooling

    modules = model._modules  # SentenceTransformer is an nn.Sequential: "0", "1", ... in order
    if cfg.pooling is not None:
        for key, module in modules.items():
            if isinstance(module, Pooling) and module.pooling_mode != cfg.pooling:
                modules[key] = Pooling(module.embedding_dimension, pooling_mode=cfg.pooling,
                                       include_prompt=module.include_prompt)
    if cfg.normalize is not None:
        normalized = [key for key, module in modules.items() if isinstance(module, Normalize)]
        if cfg.normalize and not normalized:
            model.append(Normalize())
        elif not cfg.normalize:
            for key in reversed(normalized):  # Sequential renumbers the modules after each deletion
                del model[int(key)]


def transformer_module(model):
    """The first module (the HF backbone wrapper) of a SentenceTransformer."""
    return model[0]


def backbone(model) -> torch.nn.Module:
    """The Hugging Face `PreTrainedModel` inside a SentenceTransformer."""
    return transformer_module(model).auto_model


def save_embedding_model(model, path: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Save in the sentence-transformers layout plus koforge's metadata JSON.

    The tokenizer sentence-transformers saved is rewritten into the form transformers 4.x and 5.x both load.
    """
    path = Path(path)
    model.save(str(path))
    for module in read_json(path / "modules.json", "sentence-transformers modules.json"):
        folder = path / module.get("path", "")
        if (folder / "tokenizer_config.json").exists():
            make_tokenizer_folder_portable(folder)
    if _needs_koforge_module(str(path)):
        _card_loads_with_trust(path / "README.md")
    if metadata is not None:
        write_json(path / METADATA_FILE, metadata)
    return path


def _card_loads_with_trust(card: Path) -> None:
    """The model card's usage lines as they must run for koforge's adapter module (sentence-transformers
    >= 6 imports a module class from outside its package only with trust_remote_code=True)."""
    if not card.exists():
        return
    text = card.read_text(encoding="utf-8")
    fixed = re.sub(r'SentenceTransformer\("([^"]*)"\)', r'SentenceTransformer("\1", trust_remote_code=True)', text)
    if fixed != text:
        note = ("\n> This model carries koforge's EEVE-style adapters (module `koforge.embeddings.adapters."
                "AdaptedTransformer`): `pip install koforge` and load it with `trust_remote_code=True`, which "
                "sentence-transformers >= 6 requires for a module class outside its own package.\n")
        fixed = re.sub(r"(### Direct Usage[^\n]*\n)", lambda m: m.group(1) + note, fixed, count=1)
        write_text(card, fixed)


def load_embedder(path: str | os.PathLike, device: str = "cpu", batch_size: int = 64):
    """koforge's encoder for inference: the saved model in eval mode under `inference_mode`.

    Returns a `FastEncoder` whose `.encode` mirrors SentenceTransformer's, but
    runs without autograd bookkeeping and sorts by length so each batch pads to
    its own longest text.
    """
    from koforge.embeddings.encode import FastEncoder

    return FastEncoder(build_embedding_model(path, device=device), batch_size=batch_size)

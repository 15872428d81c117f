"""Loading the model an evaluation runs on, each way it can fail ending in one message.

`load_embedding_model` gives a SentenceTransformer, `load_causal_lm` a causal
LM and its tokenizer, from a local folder or a hub name. A name that is no
existing path is looked up in the Hugging Face cache, then with one quick
request to the hub (`koforge._utils.hub.require_cached_or_on_hub`): a mistyped local
path fails in a second instead of after transformers' retries.

Causal LMs are checked before their weights are trusted, because a wrong model
does not fail, it scores: transformers builds `BertLMHeadModel` from a BERT
encoder with a random head and reports it only in a log line. So an encoder
config is refused, a checkpoint missing weights of its architecture is
refused, and so is a perplexity window longer than the position table.

A koforge LM checkpoint (or a `koforge lm train` run folder: its best, else
latest, checkpoint) is exported to Hugging Face form in a temporary folder.
Its tokenizer is `tokenizer` when given, else the one the run recorded.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Optional

from koforge._utils.errors import ConfigError, ModelLoadError, corrupted_weights, load_failure
from koforge._utils.hub import is_local, require_cached_or_on_hub
from koforge._utils.io import require_path
from koforge._utils.logging import quiet_load_report
from koforge.eval._optional import import_optional

CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
_LOAD_ERRORS = (OSError, ValueError, KeyError, RuntimeError)  # what from_pretrained raises on a bad folder


def load_embedding_model(name: str, *, device: str = "auto", trust_remote_code: bool = False) -> Any:
    """A SentenceTransformer for a folder (sentence-transformers or plain HF layout) or a hub name."""
    if is_local(name):
        folder = require_path(name, "model folder")
        if not ((folder / "modules.json").exists() or (folder / "config.json").exists()):
            raise ModelLoadError(f"'{folder}' holds neither modules.json nor config.json: not a model folder. "
                                 "Pass a folder saved by `koforge embed` / SentenceTransformer.save or save_pretrained.")
        if not (folder / "modules.json").exists():
            refuse_plain_causal_lm(folder)
    else:
        require_cached_or_on_hub(name, "model", ModelLoadError, trust_remote_code=trust_remote_code)
    from safetensors import SafetensorError
    from sentence_transformers import SentenceTransformer  # 10-30 s to import: only once the name is known good

    from koforge._utils.device import resolve_device

    try:
        return SentenceTransformer(str(name), device=str(resolve_device(device)), trust_remote_code=trust_remote_code)
    except SafetensorError as e:
        raise corrupted_weights(name, e) from None
    except _LOAD_ERRORS as e:
        raise ModelLoadError(f"cannot load '{name}' as a sentence-embedding model: {str(e).splitlines()[0]}") from None


def refuse_plain_causal_lm(folder: Path) -> None:
    """A causal LM saved without a sentence-transformers layout is refused: SentenceTransformer would mean-pool
    its hidden states without a word, and the scores (KorSTS 0.11 for a koforge LM) read as a poor encoder."""
    import json

    try:
        archs = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, ValueError, AttributeError):
        return  # SentenceTransformer reports an unreadable config itself
    causal = [a for a in archs if isinstance(a, str) and a.endswith(CAUSAL_SUFFIXES)]
    if causal:
        raise ModelLoadError(
            f"'{folder}' is a causal LM ({causal[0]}), not a sentence-embedding model: mean-pooling its hidden states "
            "gives no meaningful sentence vectors. Evaluate it with the perplexity, speed, needle or harness task, or "
            "train an embedding model first (`koforge embed train`). A causal-LM embedder (e.g. last-token pooling) "
            "needs its sentence-transformers files (modules.json) in the folder.")


def non_causal_architecture(config: Any) -> Optional[str]:
    """'an encoder (BertModel)' and the like when `config` describes no causal LM; None when it does."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

    archs = list(getattr(config, "architectures", None) or [])
    model_type = getattr(config, "model_type", None)
    arch = archs[0] if archs else f"model type '{model_type}'"
    if any(a.endswith(CAUSAL_SUFFIXES) for a in archs) or getattr(config, "auto_map", None):
        return None  # remote-code models: their own Auto mapping decides
    if getattr(config, "is_encoder_decoder", False):
        return f"an encoder-decoder ({arch})"
    # bert, roberta ... are in the causal mapping too (BertLMHeadModel), which only a decoder config means
    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not getattr(config, "is_decoder", False):
        return f"an encoder ({arch})"
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return f"not a causal LM ({arch})"
    return None


def _read_causal_config(name: str, *, trust_remote_code: bool, task: str, context: Optional[int]) -> Any:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as e:
        raise ModelLoadError(f"cannot read the config of '{name}': {load_failure(name, e)}.") from None
    kind = non_causal_architecture(config)
    if kind is not None:
        raise ModelLoadError(f"'{name}' is {kind}; {task} needs a causal LM (a ...ForCausalLM checkpoint, e.g. a "
                             "`koforge lm export` folder). Evaluate encoders with korsts, retrieval, separation or bitext.")
    n_positions = getattr(config, "max_position_embeddings", None)
    if context is not None and isinstance(n_positions, int) and context > n_positions:
        raise ConfigError(f"--context {context} is longer than '{name}' can attend to (max_position_embeddings="
                          f"{n_positions}). Pass --context {n_positions} or less, with --stride at most that.")
    return config


def _load_causal_weights(name: str, *, dtype: str, trust_remote_code: bool) -> Any:
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    from koforge._utils.device import resolve_dtype

    try:
        with quiet_load_report():
            model, info = AutoModelForCausalLM.from_pretrained(name, dtype=resolve_dtype(dtype), output_loading_info=True,
                                                               trust_remote_code=trust_remote_code)
    except SafetensorError as e:
        raise corrupted_weights(name, e) from None
    except _LOAD_ERRORS as e:
        raise ModelLoadError(f"cannot load the weights of '{name}' as a causal LM: {load_failure(name, e)}.") from None
    missing = sorted(info.get("missing_keys") or [])
    if missing:  # transformers fills them with random values and only logs it
        raise ModelLoadError(f"'{name}' lacks {len(missing)} weights of {type(model).__name__} (e.g. {missing[0]}): "
                             "it is not a causal LM checkpoint, or it is incomplete. Pass a complete causal LM "
                             "folder (re-download or re-save it).")
    return model


def _load_tokenizer(source: str, *, trust_remote_code: bool) -> Any:
    io = import_optional("koforge.tokenizers.io", "loading a tokenizer (koforge.tokenizers)")
    return io.load_tokenizer(source, trust_remote_code=trust_remote_code)


def _model_tokenizer(name: str, *, trust_remote_code: bool) -> Any:
    """The tokenizer saved with an HF model folder or hub name."""
    from transformers import AutoTokenizer

    local = Path(name).expanduser()
    if local.is_dir() and not any((local / f).exists() for f in TOKENIZER_FILES):
        raise ModelLoadError(f"model folder '{local}' holds no tokenizer ({' / '.join(TOKENIZER_FILES[:2])}). Pass the "
                             "tokenizer it was trained with: --tokenizer PATH (tokenizer=... in EvalConfig).")
    try:
        return AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
    except _LOAD_ERRORS as e:
        raise ModelLoadError(f"cannot load the tokenizer of '{name}': {load_failure(name, e)}. "
                             "Pass another with --tokenizer PATH.") from None


def _checkpoint_tokenizer(ckpt: Path, tokenizer: Optional[str]) -> str:
    """The tokenizer to use with koforge checkpoint `ckpt`: `tokenizer`, else the one its run recorded."""
    from koforge._utils.io import read_json

    if tokenizer is not None:
        return tokenizer
    recorded = read_json(ckpt / "meta.json", "checkpoint meta").get("tokenizer") if (ckpt / "meta.json").exists() else None
    fix = (f"pass --tokenizer PATH (the tokenizer it was trained with), or export it with one "
           f"(`koforge lm export {ckpt} OUT --tokenizer PATH`) and evaluate OUT.")
    if not recorded:
        raise ModelLoadError(f"koforge checkpoint '{ckpt}' records no tokenizer: {fix}")
    if Path(recorded).is_absolute() and not Path(recorded).exists():
        raise ModelLoadError(f"the tokenizer recorded with koforge checkpoint '{ckpt}' ('{recorded}') no longer "
                             f"exists: {fix}")
    return recorded


def _load_koforge_checkpoint(folder: Path, *, tokenizer: Optional[str], device: str, dtype: str,
                             task: str, context: Optional[int]) -> tuple[Any, Any]:
    checkpoint = import_optional("koforge.lm.checkpoint", "the koforge LM (koforge.lm)")
    hf = import_optional("koforge.lm.hf", "the koforge LM (koforge.lm)")
    ckpt = checkpoint.resolve_checkpoint(folder)  # a run folder: its best, else latest, checkpoint
    tok = _load_tokenizer(_checkpoint_tokenizer(ckpt, tokenizer), trust_remote_code=False)
    with tempfile.TemporaryDirectory(prefix="koforge-eval-") as tmp:
        exported = str(hf.export_to_hf(ckpt, Path(tmp) / "hf", tokenizer=None))
        _read_causal_config(exported, trust_remote_code=False, task=task, context=context)
        model = _load_causal_weights(exported, dtype=dtype, trust_remote_code=False)
    return _placed(model, device), tok


def _placed(model: Any, device: str) -> Any:
    from koforge._utils.device import resolve_device

    return model.to(resolve_device(device)).eval()


def load_causal_lm(name: str, *, device: str = "auto", dtype: str = "float32", trust_remote_code: bool = False,
                   tokenizer: Optional[str] = None, context: Optional[int] = None,
                   task: str = "this evaluation") -> tuple[Any, Any]:
    """(model in eval mode, tokenizer) for an HF causal LM folder / hub name or a koforge checkpoint / run folder.

    `tokenizer` (a folder, tokenizer.json or hub name) replaces the model's own; `context` (perplexity's
    window) is refused when longer than the model's position table; `task` names the task in messages.
    """
    if is_local(name):
        folder = require_path(name, "model folder")
        # a koforge checkpoint has no config.json; a `lm train` run folder has koforge's own, beside checkpoints/
        if folder.is_dir() and (not (folder / "config.json").exists() or (folder / "checkpoints").is_dir()):
            return _load_koforge_checkpoint(folder, tokenizer=tokenizer, device=device, dtype=dtype, task=task,
                                            context=context)
    else:
        require_cached_or_on_hub(name, "model", ModelLoadError, trust_remote_code=trust_remote_code)
    _read_causal_config(str(name), trust_remote_code=trust_remote_code, task=task, context=context)
    if tokenizer is not None:
        tok = _load_tokenizer(tokenizer, trust_remote_code=trust_remote_code)
    else:
        tok = _model_tokenizer(str(name), trust_remote_code=trust_remote_code)
    model = _load_causal_weights(str(name), dtype=dtype, trust_remote_code=trust_remote_code)
    return _placed(model, device), tok

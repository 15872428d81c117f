"""Load the base model and the base/donor tokenizers, with errors that name them.

Tokenizers go through `koforge.tokenizers.io.load_tokenizer` (folders, a
`tokenizer.json`, folders holding only a `tokenizer.json`, hub names); this
module only prefixes its errors with the role (base or donor tokenizer).
Models load as the architecture their config names (so a masked-LM or
causal-LM head is kept and resized with the embeddings), else with
`AutoModelForCausalLM` / `AutoModel`, keeping the checkpoint's dtype; a
checkpoint that lacks weights of that architecture is refused, never
completed with random ones.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

from koforge._utils.errors import ModelLoadError, TokenizerError, corrupted_weights, load_failure
from koforge._utils.logging import get_logger, quiet_load_report

log = get_logger(__name__)


def load_tokenizer(name_or_path: str | Path, *, trust_remote_code: bool = False, what: str = "tokenizer") -> Any:
    """A `PreTrainedTokenizerFast` from a folder, a tokenizer.json or a hub name; errors say which one (`what`)."""
    from koforge.tokenizers.io import load_tokenizer as _load

    try:
        return _load(name_or_path, trust_remote_code=trust_remote_code)
    except TokenizerError as e:
        raise TokenizerError(f"{what} '{name_or_path}' cannot be loaded: {e}") from None
    except Exception as e:  # noqa: BLE001 - a third-party loader can raise anything
        raise TokenizerError(f"{what} '{name_or_path}' cannot be loaded ({type(e).__name__}: {e}). "
                             "Expected a tokenizer folder, a tokenizer.json or a hub name.") from None


# Parsing a 151K-token tokenizer.json costs seconds: keep the last few, keyed by the backend object
# (held in the cache, so its id cannot be reused). Callers must not mutate a returned spec.
_SPEC_CACHE: "OrderedDict[int, tuple[Any, dict, int]]" = OrderedDict()


def tokenizer_spec(tokenizer: Any) -> dict:
    """The parsed `tokenizer.json` of a fast tokenizer (cached; treat as read-only)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise TokenizerError(f"tokenizer of type {type(tokenizer).__name__} has no fast backend; expansion needs a "
                             "`tokenizers`-based tokenizer (a tokenizer.json).")
    key = id(backend)
    hit = _SPEC_CACHE.get(key)
    if hit is not None and hit[0] is backend and hit[2] == backend.get_vocab_size(with_added_tokens=True):
        return hit[1]
    spec = json.loads(backend.to_str())
    _SPEC_CACHE[key] = (backend, spec, backend.get_vocab_size(with_added_tokens=True))
    while len(_SPEC_CACHE) > 4:
        _SPEC_CACHE.popitem(last=False)
    return spec


def id_space(tokenizer: Any) -> int:
    """One more than the largest id of a fast tokenizer (vocabulary and added tokens): the embedding rows its ids need.

    Usually `len(tokenizer)`; larger when the ids have holes (GPT-4o's o200k: 200,000 tokens, ids up to 200,018),
    and then new tokens get ids after the largest one, not from `len(tokenizer)`.
    """
    return max(tokenizer.backend_tokenizer.get_vocab(with_added_tokens=True).values(), default=-1) + 1


def clone_tokenizer(tokenizer: Any, backend: Any = None) -> Any:
    """A copy of a fast tokenizer with its own backend (`backend`, or a copy of the original's).

    Large read-only Python tables some classes keep from their construction (Qwen2Tokenizer's `_vocab`,
    `_merges`) are shared instead of deep-copied: copying them costs seconds and nothing reads them later.
    """
    import copy

    from tokenizers import Tokenizer

    state = tokenizer.__dict__
    big = {k: v for k, v in state.items() if k == "_tokenizer" or (isinstance(v, (dict, list)) and len(v) > 10000)}
    for k in big:
        del state[k]
    try:
        clone = copy.deepcopy(tokenizer)
    finally:
        state.update(big)
    clone.__dict__.update({k: v for k, v in big.items() if k != "_tokenizer"})
    clone._tokenizer = backend if backend is not None else Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    return clone


def is_causal_lm(config: Any) -> bool:
    """Whether a model config names a causal-LM architecture."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    archs = getattr(config, "architectures", None) or []
    if archs:
        return any(a.endswith("ForCausalLM") or a.endswith("LMHeadModel") for a in archs)
    return getattr(config, "model_type", None) in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and not getattr(config, "is_encoder_decoder", False) \
        and getattr(config, "model_type", None) not in ("bert", "roberta", "xlm-roberta", "electra", "deberta-v2")


def model_class(config: Any) -> Any:
    """The transformers class of the architecture `config` names, else AutoModelForCausalLM or AutoModel
    (always for remote-code models: their classes are not attributes of `transformers`)."""
    import transformers
    from transformers import AutoModel, AutoModelForCausalLM

    for arch in [] if getattr(config, "auto_map", None) else getattr(config, "architectures", None) or []:
        cls = getattr(transformers, arch, None)
        if isinstance(cls, type) and hasattr(cls, "from_pretrained"):
            return cls
    return AutoModelForCausalLM if is_causal_lm(config) else AutoModel


def load_model(name_or_path: str | Path, *, trust_remote_code: bool = False) -> Any:
    """The base model in its checkpoint dtype and architecture (heads included); refuses missing weights."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(name_or_path), trust_remote_code=trust_remote_code)
    except Exception as e:  # noqa: BLE001
        why = load_failure(name_or_path, e)
        if "--trust-remote-code" in why:
            raise ModelLoadError(f"base model '{name_or_path}' cannot be loaded: {why}.") from None
        raise ModelLoadError(f"base model '{name_or_path}' cannot be loaded: no readable config.json "
                             f"({type(e).__name__}: {why}). "
                             "Pass a Hugging Face model folder or hub name (analyze/diff also accept a bare tokenizer).") from None
    cls = model_class(config)
    from safetensors import SafetensorError
    try:
        with quiet_load_report():  # its report of missing keys: refused below in one message instead
            model, info = cls.from_pretrained(str(name_or_path), dtype="auto", trust_remote_code=trust_remote_code,
                                              output_loading_info=True)
    except SafetensorError as e:  # the folder holds its files; one of them is damaged
        raise corrupted_weights(name_or_path, e) from None
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(f"base model '{name_or_path}' cannot be loaded with {cls.__name__} "
                             f"({type(e).__name__}: {load_failure(name_or_path, e)}). "
                             "Check that the folder holds config.json and model.safetensors.") from None
    if info.get("unexpected_keys"):
        log.warning("base model '%s': %d checkpoint weights unused by %s (e.g. %s)", name_or_path,
                    len(info["unexpected_keys"]), cls.__name__, sorted(info["unexpected_keys"])[0])
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ModelLoadError(f"base model '{name_or_path}' lacks {len(missing)} weights of {cls.__name__} ({shown}); "
                             "the checkpoint is incomplete or of another architecture. Re-download or re-save it; "
                             "nothing was written.")
    model.eval()
    return model

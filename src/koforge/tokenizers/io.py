"""Load any tokenizer koforge works with, and fingerprint it.

`load_tokenizer` accepts a koforge tokenizer folder, any Hugging Face folder
holding `tokenizer.json` (with or without `tokenizer_config.json`), a bare
`tokenizer.json` file (its special tokens named by a sibling
`tokenizer_config.json` / `special_tokens_map.json` when there is one), or a
hub name (`org/name`, loaded with `AutoTokenizer.from_pretrained`). It always
returns a fast tokenizer (`transformers.PreTrainedTokenizerFast`,
`TokenizersBackend` in transformers 5), because everything downstream relies
on the Rust `tokenizers` pipeline. Remote code runs only when the caller
passes `trust_remote_code=True`.

A name that is not a local path is looked up in the Hugging Face cache first,
then, unless `HF_HUB_OFFLINE` is set, with one quick request to the hub: a
mistyped local path fails in about a second with one message, instead of
huggingface_hub's five retries per file (about 50 s of warnings).

`save_tokenizer` is how koforge writes a tokenizer folder (trained tokenizers,
exported LMs, expanded and compressed models; embedding models go through
`make_tokenizer_folder_portable` after sentence-transformers' own save):
`save_pretrained`, then `tokenizer_config.json` rewritten into the form that
transformers 4.x and 5.x both load with the same ids (see
`portable_tokenizer_config`), and a `special_tokens_map.json` beside it. A
folder without tokenizer.json (slow tokenizer) or with custom code
(`auto_map`) keeps its class.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from koforge._utils.errors import TokenizerError
from koforge._utils.hub import look_up_on_hub
from koforge._utils.io import write_json
from koforge._utils.logging import get_logger

log = get_logger(__name__)

_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _fast_class():
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast


_NAMED_SPECIALS = ("bos_token", "eos_token", "unk_token", "pad_token")


def _sibling_special_tokens(path: Path, vocab: dict[str, int]) -> dict[str, str]:
    """bos/eos/unk/pad named by tokenizer_config.json or special_tokens_map.json beside a bare tokenizer.json.

    Only tokens already in the vocabulary are kept: transformers would add a missing one, changing the pipeline.
    """
    named: dict[str, str] = {}
    for sibling in ("special_tokens_map.json", "tokenizer_config.json"):  # the config wins, as in transformers
        try:
            data = json.loads((path.parent / sibling).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for key in _NAMED_SPECIALS:
            value = data.get(key) if isinstance(data, dict) else None
            value = value.get("content") if isinstance(value, dict) else value  # serialised AddedToken
            if isinstance(value, str) and value in vocab:
                named[key] = value
    return named


def _from_file(path: Path) -> Any:
    from tokenizers import Tokenizer

    try:
        backend = Tokenizer.from_file(str(path))
    except Exception as e:  # the Rust side raises plain Exceptions with a parse message
        raise TokenizerError(f"'{path}' is not a Hugging Face tokenizer.json ({str(e).splitlines()[0][:200]}). "
                             "Pass a tokenizer folder, a tokenizer.json file or a hub name.") from None
    specials = _sibling_special_tokens(path, backend.get_vocab(with_added_tokens=True))
    tok = _fast_class()(tokenizer_file=str(path), **specials)
    # set afterwards: as a constructor argument, transformers 5 would look the path up on the hub as a repo id
    tok.name_or_path = str(path)
    return tok


_GENERIC_CLASSES = (None, "PreTrainedTokenizerFast", "TokenizersBackend")


def _declared_class(path: Path) -> str | None:
    try:
        return json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8")).get("tokenizer_class")
    except (OSError, ValueError, AttributeError):
        return "unknown"


def _from_folder(path: Path, trust_remote_code: bool) -> Any:
    has_json = (path / "tokenizer.json").exists()
    has_config = (path / "tokenizer_config.json").exists()
    if not has_json and not has_config and not any(path.glob("*.model")):
        raise TokenizerError(f"folder '{path}' holds no tokenizer (no tokenizer.json, tokenizer_config.json or *.model). "
                             "Pass a folder written by `koforge tokenizer train` or `save_pretrained`.")
    if has_json and not has_config:
        return _from_file(path / "tokenizer.json")
    models = sorted(p.name for p in path.glob("*.model"))
    if not has_json and not has_config and "tokenizer.model" not in models:
        raise TokenizerError(f"folder '{path}' holds only {', '.join(models)}: a bare SentencePiece model loads when it "
                             "is named tokenizer.model (transformers looks for that name), or pass a folder with "
                             "tokenizer.json.")
    declared = _declared_class(path) if has_config else None
    try:
        if has_json and declared in _GENERIC_CLASSES:
            # the generic class loads tokenizer.json as is, without importing torch through AutoTokenizer
            return _fast_class().from_pretrained(str(path))
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except Exception as e:
        if has_json:
            log.warning("AutoTokenizer could not load '%s' (%s); loading its tokenizer.json directly", path, e)
            return _from_file(path / "tokenizer.json")
        raise TokenizerError(f"cannot load the tokenizer in '{path}': {str(e).splitlines()[0][:300]}") from None
    return tok


def _from_hub(name: str, trust_remote_code: bool) -> Any:
    """A tokenizer by hub name: from the cache, else one quick hub check and then a download."""
    if not _HUB_NAME.match(name) or name.startswith((".", "/", "~")) or name.endswith(".json"):
        raise TokenizerError(f"tokenizer not found: '{Path(name).expanduser()}' does not exist and is not a hub name. "
                             "Pass a tokenizer folder, a tokenizer.json file or a hub name like Qwen/Qwen3-0.6B.")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code, local_files_only=True)
    except Exception:
        pass  # not in the cache: ask the hub below
    look_up_on_hub(name, "tokenizer", "tokenizer_config.json", TokenizerError)
    try:
        return AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
    except Exception as e:
        raise TokenizerError(f"tokenizer '{name}' is neither a local path nor loadable from the hub "
                             f"({str(e).splitlines()[0][:200]}). Check the name, your network, or pass a local folder.") from None


def load_tokenizer(name_or_path: str | os.PathLike | Any, *, trust_remote_code: bool = False) -> Any:
    """Load a fast Hugging Face tokenizer from a folder, a tokenizer.json file or a hub name.

    An already loaded fast tokenizer is returned unchanged.
    """
    fast = _fast_class()
    if isinstance(name_or_path, fast):
        return name_or_path
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TokenizerError(f"cannot use a {type(name_or_path).__name__} as a tokenizer; pass a path, a hub name or a fast tokenizer.")
    path = Path(name_or_path).expanduser()
    if path.is_file():
        if path.suffix != ".json":
            raise TokenizerError(f"'{path}' is not a tokenizer.json file (unsupported format '{path.suffix}'). "
                                 "Pass a tokenizer folder, a tokenizer.json file or a hub name.")
        tok = _from_file(path)
    elif path.is_dir():
        tok = _from_folder(path, trust_remote_code)
    else:
        tok = _from_hub(str(name_or_path), trust_remote_code)
    if not isinstance(tok, fast):
        raise TokenizerError(f"'{name_or_path}' loaded as a slow {type(tok).__name__}; koforge needs a fast tokenizer "
                             "(a folder with tokenizer.json). Convert it with `AutoTokenizer.from_pretrained(..., use_fast=True).save_pretrained(...)`.")
    return tok


def tokenizer_fingerprint(tokenizer: str | os.PathLike | Any) -> str:
    """`sha256:<hex>` of the tokenizer's canonical tokenizer.json serialisation.

    Hashing the canonical form (not the file's bytes) gives the same
    fingerprint for the same pipeline however it was loaded or indented.
    """
    tok = load_tokenizer(tokenizer)
    return "sha256:" + hashlib.sha256(tok.backend_tokenizer.to_str().encode("utf-8")).hexdigest()


def tokenizer_name(tokenizer: str | os.PathLike | Any) -> str:
    """A short display name: the folder or hub name, or the tokenizer's `name_or_path`."""
    if isinstance(tokenizer, (str, os.PathLike)):
        path = Path(tokenizer)
        return path.parent.name if path.name == "tokenizer.json" else path.name or str(tokenizer)
    return Path(str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)).name


_MAP_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def portable_tokenizer_config(saved: dict[str, Any], *, chat_template: str | None = None,
                              has_tokenizer_json: bool = True) -> dict[str, Any]:
    """`saved` (a tokenizer_config.json as transformers wrote it) in the form transformers 4.x and 5.x both load.

    - class `PreTrainedTokenizerFast`, which takes tokenizer.json as it is in both versions. 5.x writes
      `TokenizersBackend`, which 4.x lacks; and the model-specific 4.x fast classes rebuild parts of the
      pipeline from config flags (LlamaTokenizerFast adds a BOS unless `add_bos_token`, which 5.x no longer
      writes, says otherwise; BertTokenizerFast resets its normalizer when `do_lower_case` / `strip_accents`
      disagree with it), so keeping them could change the ids. The class is kept without a tokenizer.json,
      with `auto_map` (custom code) or with a 5.x backend other than `tokenizers` (sentencepiece);
    - 5.x's list-valued `extra_special_tokens` (4.x wants a dict there) as `additional_special_tokens`, its
      `model_specific_special_tokens` (named extras such as Gemma 3's `image_token`) as the dict 4.x reads;
    - `clean_up_tokenization_spaces` written out as False when absent, 5.x's default (older 4.x releases
      defaulted to True, which changes decoded text);
    - `chat_template` (the saved chat_template.jinja) also inline: 4.x before chat_template.jinja
      support reads only this key, later versions prefer the file, which holds the same text.
    """
    portable = dict(saved)
    if has_tokenizer_json and "auto_map" not in portable and portable.get("backend", "tokenizers") == "tokenizers":
        portable["tokenizer_class"] = "PreTrainedTokenizerFast"
    extra = portable.pop("extra_special_tokens", None)
    named = portable.pop("model_specific_special_tokens", None) or {}
    if isinstance(extra, dict):  # already the 4.x form
        named = {**extra, **named}
    elif extra:
        additional = list(portable.get("additional_special_tokens") or [])
        portable["additional_special_tokens"] = additional + [t for t in extra if t not in additional]
    if named:
        portable["extra_special_tokens"] = named
    portable.setdefault("clean_up_tokenization_spaces", False)
    if chat_template is not None and "chat_template" not in portable:
        portable["chat_template"] = chat_template
    return portable


def _content(token: Any) -> Any:
    return token.get("content") if isinstance(token, dict) else token  # a serialised AddedToken


def _special_tokens_map(config: dict[str, Any]) -> dict[str, Any]:
    """The special_tokens_map.json of a portable tokenizer_config.json: its named and additional special tokens.

    Plain strings, which every version reads; each token's flags (lstrip, normalized...) stay in tokenizer.json.
    """
    named = {k: config[k] for k in _MAP_NAMES if config.get(k) is not None}
    named.update(config.get("extra_special_tokens") or {})
    out = {k: _content(v) for k, v in named.items()}
    if config.get("additional_special_tokens"):
        out["additional_special_tokens"] = [_content(t) for t in config["additional_special_tokens"]]
    return out


def make_tokenizer_folder_portable(folder: str | os.PathLike) -> Path:
    """Rewrite the tokenizer_config.json (and special_tokens_map.json) that `save_pretrained` left in `folder`."""
    folder = Path(folder)
    config_file = folder / "tokenizer_config.json"
    try:
        saved = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise TokenizerError(f"cannot read '{config_file}' ({e}); save the tokenizer there first "
                             "(tokenizer.save_pretrained(folder)).") from None
    jinja = folder / "chat_template.jinja"
    template = jinja.read_text(encoding="utf-8") if jinja.exists() else None
    portable = portable_tokenizer_config(saved, chat_template=template, has_tokenizer_json=(folder / "tokenizer.json").exists())
    write_json(config_file, portable)
    write_json(folder / "special_tokens_map.json", _special_tokens_map(portable))
    return folder


def save_tokenizer(tokenizer: Any, folder: str | os.PathLike) -> Path:
    """`tokenizer.save_pretrained(folder)`, written in the form transformers 4.x and 5.x both load with the same ids."""
    tokenizer.save_pretrained(str(folder))
    return make_tokenizer_folder_portable(folder)

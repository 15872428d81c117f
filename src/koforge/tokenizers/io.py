"""Load any tokenizer koforge works with, and fingerprint it.

`load_tokenizer` accepts a koforge tokenizer folder, any Hugging Face folder
holding `tokenizer.json` (with or without `tokenizer_config.json`), a bare
`tokenizer.json` file, or a hub name (`org/name`, loaded with
`AutoTokenizer.from_pretrained`). It always returns a fast tokenizer
(`transformers.PreTrainedTokenizerFast`, `TokenizersBackend` in transformers
5), because everything downstream relies on the Rust `tokenizers` pipeline.
Remote code runs only when the caller passes `trust_remote_code=True`.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from koforge._utils.errors import TokenizerError
from koforge._utils.logging import get_logger

log = get_logger(__name__)

_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _fast_class():
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast


def _from_file(path: Path) -> Any:
    from tokenizers import Tokenizer

    try:
        Tokenizer.from_file(str(path))
    except Exception as e:  # the Rust side raises plain Exceptions with a parse message
        raise TokenizerError(f"'{path}' is not a Hugging Face tokenizer.json ({str(e).splitlines()[0][:200]}). "
                             "Pass a tokenizer folder, a tokenizer.json file or a hub name.") from None
    return _fast_class()(tokenizer_file=str(path))


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
        name = str(name_or_path)
        if not _HUB_NAME.match(name) or name.startswith((".", "/", "~")) or name.endswith(".json"):
            raise TokenizerError(f"tokenizer not found: '{path}' does not exist and is not a hub name. "
                                 "Pass a tokenizer folder, a tokenizer.json file or a hub name like Qwen/Qwen3-0.6B.")
        try:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
        except Exception as e:
            raise TokenizerError(f"tokenizer '{name}' is neither a local path nor loadable from the hub "
                                 f"({str(e).splitlines()[0][:200]}). Check the name, your network, or pass a local folder.") from None
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

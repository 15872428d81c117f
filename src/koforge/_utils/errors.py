"""The exceptions koforge raises at its boundaries.

Every user-facing failure is a `KoforgeError` whose message says what was
wrong, the offending value, what was expected and how to fix it. The CLI turns
these into one red line and a non-zero exit; the library never prints.
"""
from __future__ import annotations

import os
from pathlib import Path


class KoforgeError(Exception):
    """Base class of every error koforge reports to a user."""


class ConfigError(KoforgeError):
    """A configuration value, key or file is invalid."""


class InputPathError(KoforgeError):
    """A path given by the user does not exist or cannot be read."""


class DataError(KoforgeError):
    """Input data is empty, malformed, not UTF-8 or missing a field/column."""


class OutputExistsError(KoforgeError):
    """The output location exists and `overwrite` was not requested."""


class OutputPathError(KoforgeError):
    """The output location cannot be created or written (a parent is a file, no permission, disk full)."""


class TokenizerError(KoforgeError):
    """A tokenizer cannot be loaded, trained, or is of an unsupported type."""


class ModelLoadError(KoforgeError):
    """A model cannot be loaded or is of an unsupported layout."""


def corrupted_weights(name: object, error: Exception) -> ModelLoadError:
    """The error for a safetensors file that cannot be parsed (truncated download, disk error)."""
    return ModelLoadError(f"the weights of '{name}' cannot be read ({str(error).splitlines()[0]}): the safetensors "
                          "file is corrupted or truncated. Re-download or re-save the model.")


def file_not_folder(name: object) -> str | None:
    """Why a model cannot be loaded from `name` when it is a file (a text file, a model.safetensors) rather than a
    model folder; None otherwise. transformers reads such a path as a config.json and says it "is not a valid JSON
    file", which points at a config the user never gave."""
    if not isinstance(name, (str, os.PathLike)) or not Path(name).expanduser().is_file():
        return None
    path = Path(name).expanduser()
    hint = f" (the folder it is in: '{path.parent}')" if path.suffix in (".safetensors", ".json", ".bin") else ""
    return f"'{name}' is a file, not a model folder. Pass the folder that holds config.json and the weights{hint}, or a hub name"


def load_failure(name: object, error: Exception) -> str:
    """Why transformers could not load `name` (config, tokenizer or weights), in words: its size-mismatch error only points
    to a load report that koforge keeps quiet ("For details look at the above report"), and its custom-code
    refusal does not name koforge's flag."""
    not_a_folder = file_not_folder(name)
    if not_a_folder:
        return not_a_folder
    text = str(error)
    if "trust_remote_code" in text or "contains custom code" in text:
        return ("it ships its own modelling code (auto_map in its config), which koforge runs only when asked. If you "
                "trust that code, pass --trust-remote-code (trust_remote_code=true in a config, "
                "model.trust_remote_code=true in an embedding recipe)")
    if "no file named" in text and ("safetensors" in text or ".bin" in text):
        return ("the folder holds no weights (no model.safetensors or pytorch_model.bin beside config.json). Copy or "
                "re-download them, or re-save the model with save_pretrained")
    if "not a valid JSON file" in text:
        return ("its config.json is not valid JSON (truncated or edited by hand). Restore it from the original model "
                "or re-save the model")
    if "ignore_mismatched_sizes" in text:
        return ("they do not fit its config.json (tensor shapes differ from what the config implies: an edited "
                "config, or one from another model). Restore the model's own config.json or re-save the model")
    return text.splitlines()[0].rstrip(". ") if text else type(error).__name__  # callers end the sentence


class CheckpointError(KoforgeError):
    """A checkpoint is corrupted, truncated or belongs to another config."""


class TrainingError(KoforgeError):
    """Training diverged (NaN/inf loss) or cannot proceed."""


class NothingToDoError(KoforgeError):
    """The request is valid but there is nothing to do (e.g. no new tokens)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C after part of the work was kept on disk: the message says what is kept and how to go on."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

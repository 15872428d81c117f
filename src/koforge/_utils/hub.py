"""A name that is not a local path: one quick look at the Hugging Face hub before the slow loaders.

transformers' loaders retry a missing or unreachable hub repository five
times with backoff (30-50 s of warnings) before they fail; a mistyped local
path looks the same to them. `look_up_on_hub` answers in one request, or at
once when the hub is off (HF_HUB_OFFLINE), with a message that names the
local path that does not exist.
"""
from __future__ import annotations

import os
from pathlib import Path

from koforge._utils.errors import KoforgeError


def hub_offline() -> bool:
    """Whether HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE switch the hub off."""
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return bool(constants.HF_HUB_OFFLINE) or any(f.upper() in ("1", "ON", "YES", "TRUE") for f in flags)


def is_local(name: str) -> bool:
    """Whether `name` means a local path (it exists or is written like one) rather than a hub name."""
    p = Path(name).expanduser()
    return p.exists() or name.startswith((".", "/", "~")) or p.suffix in (".json", ".safetensors")


def not_local(name: str, what: str) -> str:
    """'<what> NAME not found: there is no file or folder ...' (with the hub-name form when NAME has no org)."""
    hint = "" if "/" in name else " Hub names look like 'org/name' (a few, like 'gpt2', have no org)."
    return f"{what} '{name}' not found: there is no file or folder '{Path(name).expanduser().absolute()}'.{hint}"


def _ask_hub(path: str) -> str:
    """One HEAD request for `{ENDPOINT}/{path}`, no retries: "ok" (or the hub answered otherwise, e.g. 5xx: the
    loader will say), "missing", "no-file" (the repository exists without that file), "gated", or
    "unreachable:<error type>"."""
    from huggingface_hub import constants
    from huggingface_hub.errors import EntryNotFoundError, GatedRepoError, HfHubHTTPError, RepositoryNotFoundError
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    try:
        # the session alone: get_hf_file_metadata retries 5 times with backoff in huggingface_hub 0.x
        hf_raise_for_status(get_session().head(f"{constants.ENDPOINT}/{path}", headers=build_hf_headers(), timeout=10))
    except GatedRepoError:
        return "gated"
    except RepositoryNotFoundError:
        return "missing"
    except EntryNotFoundError:
        return "no-file"
    except HfHubHTTPError as e:
        return "missing" if getattr(e.response, "status_code", None) in (401, 404) else "ok"
    except Exception as e:  # network errors differ by hub version (requests, httpx); all mean "unreachable"
        return f"unreachable:{type(e).__name__}"
    return "ok"


def look_up_on_hub(name: str, what: str, filename: str, error: type[KoforgeError]) -> None:
    """Raise `error` at once when `name` (not in the local cache) is not on the hub or the hub is off or
    unreachable; return when the repository exists (or the hub answers otherwise: the loader will say)."""
    if hub_offline():
        raise error(not_local(name, what) + " It is not in the Hugging Face cache either, and the hub is off "
                    "(HF_HUB_OFFLINE is set). Check the path, or unset HF_HUB_OFFLINE to download a hub name.")
    answer = _ask_hub(f"{name}/resolve/main/{filename}")  # HF_ENDPOINT honoured via constants
    if answer == "gated":
        raise error(f"hub repository '{name}' is gated: accept its terms on the hub and log in "
                    "(`hf auth login`), or pass a local folder.")
    if answer == "missing":
        raise error(not_local(name, what) + " Nor is it a hub repository (or it is private: log in with `hf auth login`).")
    if answer.startswith("unreachable:"):
        raise error(not_local(name, what) + f" The hub could not be reached to look it up ({answer.split(':')[1]}). "
                    "Check the path, or your network for a hub name.")


def look_up_dataset_on_hub(name: str, error: type[KoforgeError]) -> None:
    """Raise `error` at once when hub dataset `name` is not on the hub or the hub cannot be reached
    (`datasets` retries an unreachable hub for ~25 s first); return otherwise, and when the hub is off
    (HF_HUB_OFFLINE: `datasets` then answers at once itself)."""
    if hub_offline():
        return
    answer = _ask_hub(f"datasets/{name}/resolve/main/README.md")
    if answer == "gated":
        raise error(f"hub dataset '{name}' is gated: accept its terms on the hub and log in (`hf auth login`).")
    if answer == "missing":
        raise error(f"hub dataset '{name}' not found (or it is private: log in with `hf auth login`). "
                    "Check the name (org/name), or read local files instead.")
    if answer.startswith("unreachable:"):
        raise error(f"hub dataset '{name}': the Hugging Face hub could not be reached ({answer.split(':')[1]}). "
                    "Check your network, or read local files (a path, folder or .jsonl/.txt) instead.")


def require_cached_or_on_hub(name: str, what: str, error: type[KoforgeError], *, trust_remote_code: bool = False) -> None:
    """Return when hub model `name` is in the Hugging Face cache or on the hub; raise `error` at once otherwise."""
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code, local_files_only=True)
    except (OSError, ValueError, KeyError):
        look_up_on_hub(name, what, "config.json", error)

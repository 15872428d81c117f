"""Training checkpoints: complete, atomic, verified.

A checkpoint is a folder `checkpoints/step_NNNNNNN/` holding
`model.safetensors` (weights), `state.pt` (optimiser, scheduler, RNG and data
position; plain tensors and containers, read with `torch.load(weights_only=True)`)
and `meta.json` (step, configs, metrics, history and the sha256 and size of
every file). It is written into a temporary folder and renamed, and `meta.json`
is its seal: a folder whose files do not match their recorded hashes is
corrupted or truncated and is refused, never loaded and never deleted by the
pruning (only complete checkpoints count towards "keep the last K and the best";
the pruning also clears the temporary folders of writes a killed run left).
"""
from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from koforge._utils.errors import CheckpointError
from koforge._utils.io import atomic_dir, read_json, require_path, write_json
from koforge._utils.logging import get_logger
from koforge.lm.config import LMConfig
from koforge.lm.model import KoLM

log = get_logger(__name__)

CKPT_RE = re.compile(r"^step_(\d{7})$")
FILES = ("model.safetensors", "state.pt")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def model_tensors(model: KoLM) -> dict[str, torch.Tensor]:
    """Every persistent tensor of the model (tied lm_head stored once)."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()
            if not (model.config.tie_embeddings and k == "lm_head.weight")}


def save_checkpoint(root: str | Path, step: int, model: KoLM, state: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Write `root/step_{step}` atomically; returns its path."""
    final = Path(root) / f"step_{step:07d}"
    with atomic_dir(final, overwrite=True) as tmp:
        save_file(model_tensors(model), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        torch.save(state, tmp / "state.pt")
        files = {name: {"sha256": _sha256(tmp / name), "bytes": (tmp / name).stat().st_size} for name in FILES}
        write_json(tmp / "meta.json", {**meta, "step": step, "files": files})
    return final


def tokenizer_reference(tokenizer: str | Path | None) -> str | None:
    """How a checkpoint records its tokenizer: a local file or folder as an absolute path (the run is then
    usable from any working directory), anything else (a hub name) as given."""
    if tokenizer is None or str(tokenizer) == "":
        return None
    path = Path(tokenizer).expanduser()
    return str(path.resolve()) if path.exists() else str(tokenizer)


def verify_checkpoint(path: str | Path) -> dict:
    """Return the meta of a complete checkpoint, or raise CheckpointError saying what is wrong."""
    path = require_path(path, "checkpoint")
    meta_path = path / "meta.json"
    if not meta_path.exists():
        raise CheckpointError(f"checkpoint '{path}' has no meta.json: it is incomplete (interrupted write?). "
                              "Delete it and resume from an earlier checkpoint.")
    try:
        meta = read_json(meta_path, "checkpoint meta")
        files = meta["files"]
    except Exception as e:
        raise CheckpointError(f"checkpoint '{path}' has an unreadable meta.json ({e}). Delete it and resume from an earlier one.") from None
    for name, rec in files.items():
        f = path / name
        if not f.exists():
            raise CheckpointError(f"checkpoint '{path}' is missing {name}. Delete it and resume from an earlier one.")
        size = f.stat().st_size
        if size != rec["bytes"]:
            raise CheckpointError(f"checkpoint '{path}': {name} is truncated ({size} bytes, expected {rec['bytes']}). "
                                  "Delete it and resume from an earlier one.")
        if _sha256(f) != rec["sha256"]:
            raise CheckpointError(f"checkpoint '{path}': {name} is corrupted (sha256 mismatch). "
                                  "Delete it and resume from an earlier one.")
    return meta


def list_checkpoints(root: str | Path) -> list[Path]:
    """Checkpoint folders under `root`, oldest first (complete or not)."""
    root = Path(root)
    if not root.is_dir():  # missing, or a file passed where a run folder goes
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and CKPT_RE.match(p.name)), key=lambda p: p.name)


def _meta_quiet(path: Path) -> dict | None:
    try:
        return read_json(path / "meta.json", "checkpoint meta")
    except Exception:
        return None


def best_checkpoint(root: str | Path) -> Path | None:
    """The complete-looking checkpoint with the lowest validation loss (None when none has one)."""
    scored = [(m["val_loss"], p) for p in list_checkpoints(root)
              if (m := _meta_quiet(p)) and m.get("val_loss") is not None]
    return min(scored, key=lambda s: (s[0], s[1].name))[1] if scored else None


def prune_checkpoints(root: str | Path, keep_last: int) -> list[Path]:
    """Delete complete checkpoints beyond the last `keep_last` and the best, and the temporary folders of
    writes a killed process left behind (`atomic_dir`'s `.step_*.tmp-*` / `.old-*`); returns those deleted."""
    leftovers = list(Path(root).glob(".step_*.tmp-*")) + list(Path(root).glob(".step_*.old-*"))
    for p in leftovers:
        shutil.rmtree(p, ignore_errors=True)
    complete = [p for p in list_checkpoints(root) if _meta_quiet(p) is not None]
    keep = set(complete[-keep_last:]) if keep_last > 0 else set()
    best = best_checkpoint(root)
    if best is not None:
        keep.add(best)
    removed = [p for p in complete if p not in keep]
    for p in removed:
        shutil.rmtree(p, ignore_errors=True)
    return leftovers + removed


def read_state(path: str | Path) -> dict:
    """The optimiser/scheduler/RNG/data state of a verified checkpoint."""
    try:
        return torch.load(Path(path) / "state.pt", map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  its checksum matched: written so, or by a torch that reads otherwise
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"checkpoint '{path}': state.pt cannot be read ({type(e).__name__}: {why}). Resume from "
                              "an earlier checkpoint (train.resume_from=<its step_ folder>), or start a new run from "
                              "this one's weights (--init-from).") from None


def resolve_checkpoint(path: str | Path, *, latest: bool = False) -> Path:
    """A checkpoint folder from itself, a run folder or its `checkpoints/` folder: there the best (else the
    latest) one, or with `latest` (what a resume continues) the latest."""
    path = require_path(path, "checkpoint or run folder")
    if (path / "meta.json").exists() or CKPT_RE.match(path.name):
        return path
    root = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    found = list_checkpoints(root)
    if not found:
        where = f"'{path}' is a file, not a folder" if path.is_file() else f"no checkpoint under '{path}'"
        raise CheckpointError(f"{where}. Pass a step_NNNNNNN folder or a `koforge lm train` output folder.")
    if not latest:
        unreadable = [p.name for p in found if _meta_quiet(p) is None]
        if unreadable:  # it may have been the best: say so rather than pick another in silence
            log.warning("checkpoint(s) %s under '%s' have no readable meta.json and were not considered; the choice is "
                        "among the others.", ", ".join(unreadable), root)
    return found[-1] if latest else best_checkpoint(root) or found[-1]


def verified_checkpoint(path: str | Path) -> tuple[Path, dict]:
    """(checkpoint, meta) of what `resolve_checkpoint` picks, verified. When it was picked from a run folder and
    is damaged, the error names the complete checkpoints beside it (none is used in its place unasked)."""
    ckpt = resolve_checkpoint(path)
    try:
        return ckpt, verify_checkpoint(ckpt)
    except CheckpointError as e:
        if ckpt.resolve() == Path(path).expanduser().resolve():  # named by the user: the plain message
            raise
        good = []
        for other in reversed(list_checkpoints(ckpt.parent)):
            try:
                verify_checkpoint(other)
                good.append(other)
            except CheckpointError:
                continue
        if not good:
            raise CheckpointError(f"{e} No other complete checkpoint is under '{ckpt.parent}'.") from None
        raise CheckpointError(f"{e} Complete checkpoints beside it: {', '.join(p.name for p in good)}; pass one "
                              f"(e.g. '{good[0]}') to use it.") from None


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[KoLM, LMConfig, dict]:
    """Load the weights of a verified checkpoint: (model in eval mode, its config, its meta)."""
    ckpt, meta = verified_checkpoint(path)
    config = LMConfig.from_dict(meta["model_config"])
    model = KoLM(config)
    load_weights(model, ckpt)
    return model.to(device).eval(), config, meta


def load_weights(model: KoLM, ckpt: Path) -> None:
    state = load_file(str(ckpt / "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (model.config.tie_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise CheckpointError(f"checkpoint '{ckpt}' does not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}.")

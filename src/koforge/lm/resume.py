"""Where a training run starts: its output folder, the checkpoint it resumes (checked against the config), the
weights it starts from (`init_from`), the tokenizer it keeps, and the optimiser settings and RNG state it
restores, so that `resume=True` continues exactly."""
from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from koforge._utils.errors import CheckpointError, ConfigError, KoforgeError, OutputExistsError
from koforge._utils.io import check_folder_output, read_json
from koforge._utils.logging import get_logger
from koforge.lm.checkpoint import list_checkpoints, resolve_checkpoint
from koforge.lm.config import LMConfig
from koforge.lm.model import KoLM

if TYPE_CHECKING:
    from koforge.lm.train import TrainConfig

log = get_logger(__name__)

# Train-config fields a resumed run must share with the checkpoint (others, e.g. steps or eval_every, may change).
RESUME_FIELDS = ("batch", "seq_len", "grad_accum", "seed")
# Train-config fields a resume takes from the checkpoint unless given again (paths, the device and the
# run's own flags are the new command's).
RESUMED_TRAIN_FIELDS = ("steps", "batch", "seq_len", "lr", "min_lr_ratio", "warmup", "weight_decay", "grad_accum",
                        "clip", "eval_every", "eval_batches", "ckpt_every", "keep_last", "early_stop_patience",
                        "precision", "compile", "gradient_checkpointing", "seed", "nan_policy", "max_skips",
                        "spike_factor", "sample_tokens", "max_minutes", "eval_every_minutes", "log_every", "experiment",
                        "beta1", "beta2")
# Model-config fields that only shape training, so init_from weights may meet other values (extra MTP heads start fresh).
INIT_FREE_FIELDS = ("init_std", "moe_aux_weight", "moe_bias_rate", "mtp_heads", "mtp_weight")


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]), "python_pos": random.getstate()[2]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), state["python_pos"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def check_resume(meta: dict, model_config: LMConfig, cfg: TrainConfig, ckpt: Path) -> None:
    if "train_config" not in meta:
        raise CheckpointError(f"cannot resume from '{ckpt}': it holds weights only (`koforge lm import` output), no "
                              f"optimiser, schedule or data position. Start a new run from its weights: --init-from {ckpt} "
                              "(train.init_from=...).")
    saved = meta.get("model_config", {})
    diff = {k: (saved.get(k), v) for k, v in model_config.to_dict().items() if saved.get(k) != v}
    if diff:
        shown = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in list(diff.items())[:4])
        raise CheckpointError(f"cannot resume from '{ckpt}': it was trained with another model config ({shown}). "
                              "Use the same model config, or a new out_dir to start afresh.")
    saved_train = meta.get("train_config", {})
    tdiff = [k for k in RESUME_FIELDS if saved_train.get(k) != getattr(cfg, k)]
    if tdiff:
        shown = ", ".join(f"{k}: checkpoint {saved_train.get(k)!r} vs now {getattr(cfg, k)!r}" for k in tdiff)
        raise CheckpointError(f"cannot resume from '{ckpt}': the data stream differs ({shown}). Use the same values.")


def prepare_out_dir(cfg: TrainConfig, resume: bool) -> tuple[Path, Path | None, list[Path]]:
    """(out_dir, checkpoint to resume from, old checkpoints that overwrite deletes once the inputs are checked)."""
    out = check_folder_output(cfg.out_dir)
    root = out / "checkpoints"
    existing = list_checkpoints(root)
    if resume:
        ckpt = resolve_checkpoint(cfg.resume_from, latest=True) if cfg.resume_from else (existing[-1] if existing else None)
        if ckpt is None:
            raise CheckpointError(f"nothing to resume: '{root}' holds no checkpoint. Run without --resume to start.")
        return out, ckpt, []
    if existing and not cfg.overwrite:
        raise OutputExistsError(f"'{out}' already holds {len(existing)} checkpoint(s). Pass --resume to continue, "
                                "--overwrite to start afresh (deletes them), or another out_dir.")
    return out, None, existing


def init_weights_from(model: KoLM, source: str) -> str | None:
    """Load the weights of `source` (koforge checkpoint/run or Hugging Face Llama folder) into `model`;
    returns the tokenizer recorded with it (None when it records none)."""
    from koforge.lm.load import open_model

    loaded, config, info = open_model(source)
    ours, theirs = model.config.to_dict(), config.to_dict()
    diff = [k for k in ours if k not in INIT_FREE_FIELDS and ours[k] != theirs[k]]
    if diff:
        shown = ", ".join(f"{k}: {theirs[k]!r} there vs {ours[k]!r} here" for k in diff[:4])
        fix = " ".join(f"model.{k}={'null' if theirs[k] is None else theirs[k]}" for k in diff)
        raise ConfigError(f"init_from='{source}' holds a model of another architecture ({shown}). Train it with its "
                          f"own config: {fix} (`koforge lm train --init-from` without --model takes it from there).")
    wanted = model.state_dict()
    state = {k: v for k, v in loaded.state_dict().items() if k in wanted}  # MTP heads beyond ours are dropped
    missing, _ = model.load_state_dict(state, strict=False)
    assert all(k.startswith("mtp.") for k in missing), missing  # only MTP heads the source lacks start fresh
    return info.get("tokenizer")


def inherited_tokenizer(reference: str, source: str, manifest, data_dir: str):
    """The tokenizer recorded with the checkpoint a run resumes or starts from, when no --tokenizer is given:
    kept (for sample generations and the new checkpoints) if it still loads and packed these shards, else
    dropped with a warning rather than failing a run that needs no tokenizer to train."""
    try:
        return shards_tokenizer(reference, manifest, data_dir)
    except KoforgeError as e:
        log.warning("the tokenizer recorded with '%s' is not used (%s); the new checkpoints record none and no "
                    "samples are generated. Pass --tokenizer (train.tokenizer=...) to keep one.", source, e)
        return None


def apply_optimizer_settings(optimizer: torch.optim.Optimizer, scheduler, cfg: TrainConfig, saved: dict) -> None:
    """After a resume the optimiser state would bring back the old lr, weight decay and betas: the run's
    config wins (the schedule keeps its position), and a change is said."""
    changed = [f"{k}={getattr(cfg, k)} (checkpoint {saved[k]})" for k in ("lr", "weight_decay", "beta1", "beta2")
               if k in saved and saved[k] != getattr(cfg, k)]
    for group, decay in zip(optimizer.param_groups, (cfg.weight_decay, 0.0)):
        group.update(weight_decay=decay, betas=(cfg.beta1, cfg.beta2), initial_lr=cfg.lr)
    scheduler.base_lrs = [cfg.lr] * len(optimizer.param_groups)
    lrs = [base * fn(scheduler.last_epoch) for base, fn in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
    for group, lr in zip(optimizer.param_groups, lrs):
        group["lr"] = lr
    scheduler._last_lr = lrs  # what get_last_lr() reports until the next scheduler step
    if changed:
        log.warning("resuming with %s: the new values apply from the next step.", ", ".join(changed))


def shards_tokenizer(path: str, manifest, data_dir: str):
    """The tokenizer for sample generations, refused unless it is the one the shards were packed with (another
    one would decode the model's ids into other text, and be recorded with the checkpoints for export)."""
    from koforge.tokenizers.io import load_tokenizer, tokenizer_fingerprint

    tok = load_tokenizer(path)
    if tokenizer_fingerprint(tok) != manifest.tokenizer_fingerprint:
        raise ConfigError(f"tokenizer '{path}' is not the one the shards in '{data_dir}' were packed with (fingerprints "
                          f"{tokenizer_fingerprint(tok)[:19]}... vs {manifest.tokenizer_fingerprint[:19]}...). Pass the "
                          "tokenizer given to `koforge data pack` (--tokenizer / train.tokenizer), or re-pack the shards.")
    return tok


def recorded_settings(run: str | Path) -> tuple[dict, dict]:
    """(model config, train config) recorded with the checkpoint a resume of `run` continues from ({} for what
    it does not record, or when there is no checkpoint: the resume itself then says so)."""
    try:
        ckpt = resolve_checkpoint(run, latest=True)
        meta = read_json(ckpt / "meta.json", "checkpoint meta.json")
    except KoforgeError:
        return {}, {}
    return dict(meta.get("model_config") or {}), dict(meta.get("train_config") or {})

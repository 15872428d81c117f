"""Pretraining a KoLM on token shards: `train_lm(model_config, train_config)`.

One loop for 1 process or DDP (`torchrun`, detected from WORLD_SIZE): every
rank draws the same global batch of random windows and keeps its slice, so 2
processes compute the same loss as 1 on the same global batch, validation
included (MoE models: DDP looks for experts unused on a rank, and router biases
move by the expert load summed over ranks; the `aux_loss` balancing loss,
though, is each rank's own, as in Switch/GShard, so those runs differ slightly
from 1 process, as they do with gradient accumulation). AdamW (fused where
available) with warmup + cosine decay, gradient clipping and accumulation,
autocast on cuda/mps (and bf16 on a CPU when asked), optional gradient checkpointing and `torch.compile`. Every `eval_every` steps: validation loss,
perplexity and bits per byte, sample generations (when a tokenizer is given),
early stopping; every `ckpt_every` steps an atomic checkpoint holding
everything needed to continue exactly (`resume=True` ends with the same
weights as an uninterrupted run, loss-spike skipping included). `init_from`
starts a fresh run from the weights of a checkpoint or an imported/exported
model. A non-finite loss or gradient is skipped or stops the run by policy; a
checkpoint is never written from non-finite weights.
Parallelism and compilation are applied here, never inside the model. Where a run starts (its folder,
resume checks, init_from, RNG state) lives in `lm.resume`; what it measures, in `lm.validation`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.distributed as dist

from koforge._utils.device import autocast_dtype, resolve_device, warn_if_bf16_is_emulated
from koforge._utils.distributed import rank0_minutes
from koforge._utils.errors import CheckpointError, ConfigError, TrainingError
from koforge._utils.io import write_json, write_text
from koforge._utils.logging import get_logger
from koforge._utils.progress import progress
from koforge._utils.seed import seed_everything
from koforge.config import config_to_dict
from koforge.lm.checkpoint import (best_checkpoint, list_checkpoints, load_weights, prune_checkpoints, read_state,
                                   save_checkpoint, tokenizer_reference, verify_checkpoint)
from koforge.lm.config import LMConfig
from koforge.lm.curve import CURVE_FILE, plot_training_curve
from koforge.lm.data import TokenWindows, tokens_per_byte, validation_split
from koforge.lm.model import KoLM
from koforge.lm.moe import MoE
from koforge.lm.resume import (apply_optimizer_settings, check_resume, inherited_tokenizer, init_weights_from,
                               prepare_out_dir, rng_state, set_rng_state, shards_tokenizer)
from koforge.lm.validation import evaluate, sample_generations
from koforge.tracking.mlflow_run import tracked_run

log = get_logger(__name__)

NAN_POLICIES = ("skip", "stop")
DEFAULT_PROMPTS = ["오늘 영화", "이 영화는 정말", "청와대 국민청원", "저는", "대한민국의 미래는"]


@dataclasses.dataclass(kw_only=True)
class TrainConfig:
    """How to pretrain: data, schedule, checkpoints, precision, device."""

    data_dir: str = ""
    """Shard folder written by `koforge data pack` (splits train and val)."""
    out_dir: str = "runs/lm"
    """Run folder: checkpoints/, history.json, training_curve.png, samples.jsonl (when a tokenizer is known), config.json."""
    steps: int = 1000
    """Optimiser steps."""
    batch: int = 16
    """Sequences per micro-batch, summed over DDP ranks (each rank gets batch / world_size)."""
    seq_len: int = 256
    """Tokens per training window."""
    lr: float = 3e-4
    """Peak learning rate."""
    min_lr_ratio: float = 0.1
    """Cosine decay floor, as a fraction of lr."""
    warmup: int = 100
    """Linear warmup steps."""
    weight_decay: float = 0.1
    """AdamW decoupled weight decay (matrices only, not norms)."""
    beta1: float = 0.9
    beta2: float = 0.95
    grad_accum: int = 1
    """Micro-batches per optimiser step."""
    clip: float = 1.0
    """Gradient-norm clip (0 = off)."""
    eval_every: int = 100
    """Steps between validations (0 = only at the end)."""
    eval_batches: int = 10
    """Validation batches (fixed windows of the val split)."""
    ckpt_every: int = 200
    """Steps between checkpoints (the last step is always saved)."""
    keep_last: int = 3
    """Complete checkpoints kept besides the best."""
    early_stop_patience: int = 0
    """Stop after this many validations without improvement (0 = off)."""
    precision: str = "auto"
    """auto (bf16/fp16 autocast on cuda/mps, fp32 on cpu), fp32, bf16 or fp16."""
    compile: bool = False
    """torch.compile the model."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward to save memory."""
    seed: int = 0
    """Seeds the weights, the data windows and every RNG."""
    device: str = "auto"
    """auto, cpu, cuda, cuda:N or mps."""
    nan_policy: str = "skip"
    """On a non-finite loss or gradient: skip the step, or stop the run."""
    max_skips: int = 20
    """Stop after this many consecutive skipped steps."""
    spike_factor: float = 0.0
    """Skip a step whose loss exceeds spike_factor x the running mean (0 = off)."""
    tokenizer: Optional[str] = None
    """Tokenizer (folder or tokenizer.json) for sample generations at each validation."""
    sample_tokens: int = 32
    """Tokens generated per sample prompt."""
    max_minutes: Optional[float] = None
    """Wall-clock budget: stop (and checkpoint) after this many minutes; the cosine decay then follows
    whichever of steps and time runs out first, so a time-boxed run still ends at the low learning rate."""
    eval_every_minutes: Optional[float] = None
    """Also validate when this many minutes have passed since the last validation."""
    log_every: int = 10
    """Steps between train-loss records in the history and MLflow."""
    overwrite: bool = False
    """Start afresh in an out_dir that already has checkpoints (deleted once data and configs are checked)."""
    resume_from: Optional[str] = None
    """A specific checkpoint folder to resume from (default: the latest in out_dir); setting it implies resume."""
    init_from: Optional[str] = None
    """Start from the weights of a koforge checkpoint/run folder or a Hugging Face Llama folder (`koforge lm
    export` / `import` output) with a fresh optimiser, schedule and data position; its architecture must
    equal the model config's. Ignored when resuming (the checkpoint holds the weights)."""
    experiment: str = "koforge-lm"
    """MLflow experiment name."""

    def __post_init__(self) -> None:
        for name in ("steps", "batch", "seq_len", "grad_accum"):
            if getattr(self, name) < 1:
                raise ConfigError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}.")
        for name in ("warmup", "eval_every", "ckpt_every", "keep_last", "early_stop_patience", "max_skips", "sample_tokens"):
            if getattr(self, name) < 0:
                raise ConfigError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)}.")
        if self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"TrainConfig.lr must be > 0 and min_lr_ratio in [0, 1], got {self.lr}, {self.min_lr_ratio}.")
        for name in ("max_minutes", "eval_every_minutes"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise ConfigError(f"TrainConfig.{name} must be > 0 (or null for no limit), got {getattr(self, name)}.")
        if self.nan_policy not in NAN_POLICIES:
            raise ConfigError(f"TrainConfig.nan_policy='{self.nan_policy}' is unknown; use skip or stop.")
        if self.precision not in ("auto", "fp32", "float32", "bf16", "bfloat16", "fp16", "float16"):
            raise ConfigError(f"TrainConfig.precision='{self.precision}' is unknown; use auto, fp32, bf16 or fp16.")
        if not self.data_dir:
            raise ConfigError("TrainConfig.data_dir is empty; pass the shard folder of `koforge data pack` (data_dir=...).")


@dataclasses.dataclass
class TrainResult:
    """What a run produced."""

    checkpoint_dir: Path
    """The best checkpoint (lowest validation loss), else the final one."""
    history: list[dict]
    """Records with step, train_loss and, at validations, val_loss, val_ppl, val_bpb."""
    out_dir: Path
    final_step: int
    stopped_early: bool = False
    skipped_steps: int = 0


class _LossModule(torch.nn.Module):
    """forward(x, y) -> loss, so DDP and torch.compile wrap the whole training computation."""

    def __init__(self, model: KoLM) -> None:
        super().__init__()
        self.model = model
        self.parts: dict = {}

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = self.model.compute_loss(x, y)
        self.parts = {k: v for k, v in (("aux_loss", out.aux_loss), ("mtp_loss", out.mtp_loss)) if v is not None}
        if self.parts:  # train_loss then sums them; train_lm_loss is the part comparable with val_loss
            self.parts["train_lm_loss"] = out.lm_loss
        return out.loss


def lr_lambda(step: int, warmup: int, total: int, min_ratio: float, time_fraction: float = 0.0) -> float:
    """Linear warmup to 1, then cosine decay to min_ratio at `total` steps (or when time_fraction reaches 1)."""
    if step < warmup:
        return (step + 1) / warmup
    progress_ = min(1.0, max((step - warmup) / max(1, total - warmup), time_fraction))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress_))


def build_optimizer(model: KoLM, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    kwargs = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    if device.type in ("cuda", "cpu"):
        try:
            return torch.optim.AdamW(groups, fused=True, **kwargs)
        except (RuntimeError, TypeError):
            pass
    return torch.optim.AdamW(groups, **kwargs)


def _dist_info() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if world > 1 else (0, 1)


def _step_loads(moes: list[MoE]) -> torch.Tensor | None:
    """Tokens routed to each expert during this step [n_moe, E], summed over DDP ranks (one all-reduce)."""
    if not moes:
        return None
    loads = torch.stack([m.take_step_load() for m in moes])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(loads)
    return loads


def expert_usage_record(usage: torch.Tensor) -> dict:
    """Statistics of [n_moe, E] token counts: each expert's share per MoE layer (backbone, then MTP heads)
    and the worst load relative to an even split (1.0 = balanced, E = one expert takes every token)."""
    share = usage.double() / usage.sum(1, keepdim=True).clamp(min=1)
    return {"moe_max_load": float(share.max()) * usage.shape[1],
            "expert_usage": [[round(x, 4) for x in row] for row in share.tolist()]}


def train_lm(model_config: LMConfig, train_config: TrainConfig, *, resume: bool = False,
             on_step: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Pretrain (or resume) a KoLM; returns the best/final checkpoint and the history.

    `on_step(step, record)` is called after every optimiser step (progress hooks, tests).
    """
    cfg = train_config
    # Every input is checked before anything is deleted or written (overwrite clears old checkpoints last).
    if cfg.seq_len > model_config.max_seq_len:
        raise ConfigError(f"TrainConfig.seq_len={cfg.seq_len} exceeds LMConfig.max_seq_len={model_config.max_seq_len}: "
                          f"training windows must fit the model's context. Lower train.seq_len to <= "
                          f"{model_config.max_seq_len}, or raise model.max_seq_len to >= {cfg.seq_len}.")
    if model_config.mtp_heads >= cfg.seq_len:
        raise ConfigError(f"LMConfig.mtp_heads={model_config.mtp_heads} needs training windows of more than "
                          f"{model_config.mtp_heads} tokens (head k predicts k + 2 tokens ahead); got "
                          f"TrainConfig.seq_len={cfg.seq_len}. Raise train.seq_len or lower model.mtp_heads.")
    resume = resume or cfg.resume_from is not None
    if resume and cfg.overwrite:
        raise ConfigError("overwrite (start afresh, deleting the checkpoints) contradicts resume / resume_from; "
                          "pass one of them.")
    rank, world = _dist_info()
    if cfg.batch % world:
        raise ConfigError(f"TrainConfig.batch={cfg.batch} does not divide by the {world} DDP processes.")
    device = resolve_device(cfg.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    amp = autocast_dtype(device, cfg.precision)
    warn_if_bf16_is_emulated(device, amp)
    out, resume_ckpt, stale = prepare_out_dir(cfg, resume)
    root = out / "checkpoints"

    train_data = TokenWindows(cfg.data_dir, "train", cfg.seq_len, cfg.seed)
    val_split = validation_split(cfg.data_dir)
    val_data = TokenWindows(cfg.data_dir, val_split, cfg.seq_len, cfg.seed)
    manifest = train_data.manifest
    if manifest.vocab_size > model_config.vocab_size and cfg.init_from and resume_ckpt is None:
        # raising model.vocab_size would only meet init_from's own architecture check: the data is what must change
        raise ConfigError(f"the shards in '{cfg.data_dir}' use a vocabulary of {manifest.vocab_size} ids, more than the "
                          f"{model_config.vocab_size} of the model to start from (init_from='{cfg.init_from}'): they were "
                          "packed with another tokenizer. Pack the data with that model's tokenizer (koforge data pack "
                          "--tokenizer ...), or start without --init-from.")
    if manifest.vocab_size > model_config.vocab_size:
        raise ConfigError(f"the shards use a vocabulary of {manifest.vocab_size} ids but LMConfig.vocab_size="
                          f"{model_config.vocab_size}. Set model.vocab_size={manifest.vocab_size}.")
    padded = -(-manifest.vocab_size // 128) * 128  # rounding up for fast matmuls is common and fine
    if model_config.vocab_size > padded and resume_ckpt is None and not cfg.init_from:
        log.warning("model.vocab_size=%d but the shards use %d ids: %d embedding and output rows will never see a "
                    "token (memory and softmax time for nothing). Set model.vocab_size=%d (or up to %d, a multiple "
                    "of 128).", model_config.vocab_size, manifest.vocab_size,
                    model_config.vocab_size - manifest.vocab_size, manifest.vocab_size, padded)
    tpb = tokens_per_byte(val_data.manifest, val_split)
    per = cfg.batch // world  # each rank evaluates its slice of the 1-process validation batches
    val_batches = [(x[rank * per:(rank + 1) * per], y[rank * per:(rank + 1) * per])
                   for x, y in val_data.fixed_batches(cfg.eval_batches, cfg.batch)]
    tokenizer = shards_tokenizer(cfg.tokenizer, manifest, cfg.data_dir) if cfg.tokenizer else None
    tokenizer_ref = tokenizer_reference(cfg.tokenizer)
    meta = verify_checkpoint(resume_ckpt) if resume_ckpt is not None else None
    if meta is not None:
        check_resume(meta, model_config, cfg, resume_ckpt)

    seed_everything(cfg.seed)
    model = KoLM(model_config)
    n_params = model.num_parameters()
    curve_title = f"{out.name}: {n_params / 1e6:.1f}M parameters" if n_params >= 1e5 else f"{out.name}: {n_params:,} parameters"
    recorded = meta.get("tokenizer") if meta is not None else None
    if cfg.init_from and resume_ckpt is None:
        recorded = init_weights_from(model, cfg.init_from)
    if tokenizer is None and recorded:
        tokenizer = inherited_tokenizer(recorded, str(resume_ckpt or cfg.init_from), manifest, cfg.data_dir)
        tokenizer_ref = recorded if tokenizer is not None else None
    model.gradient_checkpointing = cfg.gradient_checkpointing
    model.to(device).train()
    moes = [m for m in model.modules() if isinstance(m, MoE)]  # MTP heads' MoE layers balance too
    usage = torch.zeros(len(moes), model_config.moe_experts, dtype=torch.long, device=device) if moes else None
    optimizer = build_optimizer(model, cfg, device)
    clock = {"fraction": 0.0}  # elapsed share of max_minutes (0 without a time budget: exact resume)
    minutes_before = 0.0  # minutes of the time budget spent before this process started (by the run it resumes)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_lambda(s, cfg.warmup, cfg.steps, cfg.min_lr_ratio, clock["fraction"]))
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)

    step, history, best_val, bad_evals = 0, [], math.inf, 0
    running, consecutive_skips, skipped_total = None, 0, 0  # loss-spike policy state, checkpointed for exact resume
    if meta is not None:
        load_weights(model, resume_ckpt)
        state = read_state(resume_ckpt)
        trainer = state.get("trainer", {})
        # A time-boxed run continues its clock: the cosine decay and the budget go on where they were, rather
        # than the learning rate jumping back up and the whole budget running again.
        minutes_before = float(trainer.get("minutes") or 0.0)
        if cfg.max_minutes:
            clock["fraction"] = minutes_before / cfg.max_minutes
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        apply_optimizer_settings(optimizer, scheduler, cfg, meta["train_config"])
        scaler.load_state_dict(state["scaler"]) if state.get("scaler") else None
        train_data.load_state_dict(state["data"])
        set_rng_state(state["rng"])
        step, history = meta["step"], meta.get("history", [])
        best_val, bad_evals = meta.get("best_val", math.inf) or math.inf, meta.get("bad_evals", 0)
        running, consecutive_skips = trainer.get("running"), trainer.get("consecutive_skips", 0)
        skipped_total = trainer.get("skipped_total", 0)
        if usage is not None and trainer.get("expert_usage") is not None:
            usage.copy_(trainer["expert_usage"])
        if step >= cfg.steps:
            raise CheckpointError(f"checkpoint '{resume_ckpt}' is at step {step}, already >= steps={cfg.steps}. "
                                  "Raise steps to train further.")
        if cfg.max_minutes is not None and minutes_before >= cfg.max_minutes:
            raise CheckpointError(f"checkpoint '{resume_ckpt}' has used {minutes_before:.3g} of its "
                                  f"max_minutes={cfg.max_minutes:g}. Raise max_minutes to train further.")
        saved_world = meta.get("world_size", 1)
        if saved_world != world and rank == 0:
            # the global batch stream is the same at any world size (each rank slices it); only the
            # order of float sums changes, so a resume is close to, not bit-identical with, an unbroken run
            log.warning(f"resuming a run trained on {saved_world} process(es) with {world}: the data stream and "
                        "schedule continue unchanged, but losses will not match an uninterrupted run bit for bit.")
    if stale and rank == 0:
        for p in stale:
            shutil.rmtree(p, ignore_errors=True)

    loss_module = _LossModule(model)
    runner: torch.nn.Module = loss_module
    if cfg.compile:
        runner = torch.compile(runner)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        # A routed expert that gets no token on a rank takes no part in its backward, which DDP must look
        # for (a graph traversal each step, so only when the model has experts).
        runner = DDP(runner, device_ids=[device.index] if device.type == "cuda" else None,
                     find_unused_parameters=bool(model_config.moe_experts))

    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", {"model": model_config.to_dict(), "train": config_to_dict(cfg),
                                         "parameters": model.num_parameters(), "world_size": world})

    def save(step_: int, val_loss: float | None) -> None:
        if rank != 0:
            return
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise TrainingError(f"weights became non-finite at step {step_}; no checkpoint was written. "
                                f"The last good checkpoint is kept in '{root}'. Lower lr or use nan_policy=skip.")
        state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "scaler": scaler.state_dict() if scaler.is_enabled() else {}, "data": train_data.state_dict(),
                 "rng": rng_state(),
                 "trainer": {"running": running, "consecutive_skips": consecutive_skips, "skipped_total": skipped_total,
                             "expert_usage": None if usage is None else usage.cpu(), "minutes": spent_minutes}}
        ckpt_meta = {"model_config": model_config.to_dict(), "train_config": config_to_dict(cfg), "val_loss": val_loss,
                "best_val": best_val if math.isfinite(best_val) else None, "bad_evals": bad_evals, "history": history,
                "eos_id": manifest.eos_id, "tokenizer": tokenizer_ref, "world_size": world}
        save_checkpoint(root, step_, model, state, ckpt_meta)
        prune_checkpoints(root, cfg.keep_last)

    params = [p for p in model.parameters() if p.requires_grad]
    start_time, stopped_early = time.monotonic(), False
    spent_minutes = minutes_before  # of the time budget, this process's included (checkpointed)
    last_eval = start_time
    micro = cfg.batch
    bar = progress(total=cfg.steps, initial=step, desc="train", disable=None if rank == 0 else True) \
        if rank == 0 else None
    run_params = {**{f"model.{k}": v for k, v in model_config.to_dict().items()},
                  **{f"train.{k}": v for k, v in config_to_dict(cfg).items()}}
    with tracked_run(cfg.experiment, run_name=out.name, params=run_params if rank == 0 else None) as tracker:
        while step < cfg.steps:
            total = torch.zeros((), device=device)
            parts: dict[str, torch.Tensor] = {}  # the loss's parts, averaged like the loss itself
            for m in range(cfg.grad_accum):
                x, y = train_data.next_batch(micro, rank, world)
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                sync = world == 1 or m == cfg.grad_accum - 1
                ctx = runner.no_sync() if not sync else contextlib.nullcontext()
                with ctx, torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                    loss = runner(x, y) / cfg.grad_accum
                scaler.scale(loss).backward()
                total += loss.detach()
                for k, v in loss_module.parts.items():
                    parts[k] = parts.get(k, 0.0) + v.detach().float() / cfg.grad_accum
            if world > 1:
                dist.all_reduce(total)
                total /= world
                if parts:
                    stacked = torch.stack(list(parts.values()))
                    dist.all_reduce(stacked)
                    parts = dict(zip(parts, stacked / world))
            loss_value = float(total)
            scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip if cfg.clip > 0 else math.inf)
            loads = _step_loads(moes)
            if usage is not None:
                usage += loads
            spike = cfg.spike_factor > 0 and running is not None and loss_value > cfg.spike_factor * running
            bad = not math.isfinite(loss_value) or not torch.isfinite(grad_norm) or spike
            # fp16: inf gradients of a finite loss are the loss scale overflowing, which GradScaler expects (it
            # starts high and halves on each overflow): a skipped step, not a diverged run to stop.
            overflow = scaler.is_enabled() and math.isfinite(loss_value) and not spike
            if bad:
                if cfg.nan_policy == "stop" and not spike and not overflow:
                    raise TrainingError(f"non-finite loss ({loss_value}) or gradient at step {step + 1}; stopped "
                                        f"(nan_policy=stop). The last good checkpoint is kept in '{root}'. Lower lr or raise warmup.")
                consecutive_skips += 1
                skipped_total += 1
                optimizer.zero_grad(set_to_none=True)
                scaler.update() if scaler.is_enabled() else None
                if consecutive_skips > cfg.max_skips:
                    raise TrainingError(f"{consecutive_skips} consecutive steps skipped for a non-finite loss or gradient, "
                                        f"or a loss spike (last loss {loss_value}) at step {step + 1}; stopped. The last good checkpoint is in '{root}'.")
            else:
                consecutive_skips = 0
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                for moe, load in zip(moes, [] if loads is None else loads):
                    moe.update_bias(load)
                running = loss_value if running is None else 0.95 * running + 0.05 * loss_value
            timed = cfg.max_minutes is not None or cfg.eval_every_minutes is not None
            run_minutes, since_eval = rank0_minutes(start_time, last_eval, device=device) if timed else (0.0, 0.0)
            run_minutes = spent_minutes = minutes_before + run_minutes
            if cfg.max_minutes:
                clock["fraction"] = run_minutes / cfg.max_minutes
            with warnings.catch_warnings():  # a skipped step still advances the schedule, on purpose (as HF does)
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
                scheduler.step()
            step += 1
            record: dict = {"step": step, "train_loss": loss_value, "lr": scheduler.get_last_lr()[0],
                            **{k: float(v) for k, v in parts.items()}}
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.3f}")
            out_of_time = cfg.max_minutes is not None and run_minutes >= cfg.max_minutes
            last = step == cfg.steps or out_of_time
            timed_eval = cfg.eval_every_minutes is not None and since_eval >= cfg.eval_every_minutes
            evaluate_now = (cfg.eval_every and step % cfg.eval_every == 0) or last or timed_eval
            new_best = False
            if evaluate_now:
                record.update(evaluate(model, val_batches, device, amp, tpb, val_data.manifest.eos_id))
                if usage is not None:
                    record.update(expert_usage_record(usage))
                    usage.zero_()
                last_eval = time.monotonic()
                if rank == 0 and tokenizer is not None and cfg.sample_tokens:
                    samples = sample_generations(model, tokenizer, DEFAULT_PROMPTS, cfg.sample_tokens, manifest.eos_id)
                    record["samples"] = samples
                if record["val_loss"] < best_val:
                    best_val, bad_evals, new_best = record["val_loss"], 0, True
                else:
                    bad_evals += 1
                stopped_early = bool(cfg.early_stop_patience and bad_evals >= cfg.early_stop_patience)
            if evaluate_now or step % max(1, cfg.log_every) == 0 or step == 1:
                history.append(record)
                tracker.log_metrics({k: v for k, v in record.items() if k != "step"}, step=step)
            if on_step is not None:
                on_step(step, record)
            # A new best is saved whatever ckpt_every says: "keep the best" must have it on disk to keep.
            if (cfg.ckpt_every and step % cfg.ckpt_every == 0) or last or stopped_early or new_best:
                save(step, record.get("val_loss"))
            if world > 1:
                dist.barrier()
            if last or stopped_early:
                break
        if bar is not None:
            bar.close()
        if rank == 0:
            write_json(out / "history.json", history)
            plot_training_curve(history, out / CURVE_FILE, title=curve_title)
            samples = [{"step": r["step"], **sample} for r in history for sample in r.get("samples", [])]
            if samples:
                write_text(out / "samples.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in samples))
            tracker.log_artifact(out / "history.json")
    best = best_checkpoint(root) or (list_checkpoints(root) or [root])[-1]
    return TrainResult(checkpoint_dir=best, history=history, out_dir=out, final_step=step,
                       stopped_early=stopped_early, skipped_steps=skipped_total)

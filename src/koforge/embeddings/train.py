"""One training stage with the sentence-transformers trainer.

Adds what the stock trainer lacks: a wall-clock budget (`max_minutes`, so two
runs can be compared under the same time), a NaN/inf guard that stops the
stage with the step number (the stage's output is then never written, so the
previous checkpoint stays the last good one), MLflow logging and quiet
progress in tests. DDP comes from the trainer itself under `torchrun`
(gloo on CPU, nccl on GPU); bf16/fp16 autocast on GPU through its flags.
"""
from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from koforge._utils.device import autocast_dtype, warn_if_bf16_is_emulated
from koforge._utils.distributed import rank0_minutes
from koforge._utils.errors import ConfigError, DataError, TrainingError


@dataclass(kw_only=True)
class TrainSettings:
    """What the trainer needs from a stage."""

    learning_rate: float
    batch_size: int
    epochs: float = 1.0
    max_steps: Optional[int] = None
    max_minutes: Optional[float] = None
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    seed: int = 0
    precision: str = "auto"
    no_duplicates: bool = False
    group_by_length: bool = True
    """Batch rows of similar length together (`LengthGroupedBatchSampler`): less padding per step."""
    logging_steps: int = 10
    schedule: str = "steps"
    """steps: linear warmup/decay over max_steps; time: the same shape over the `max_minutes` wall clock."""
    query_prompt: Optional[str] = None
    """Prefix of the `anchor` column of contrastive pairs (the model's query prompt: trained as it is used);
    never of SimCSE's anchors (a single-objective SimCSE stage passes None)."""


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def training_autocast(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype of a training stage. "auto": bf16 (else fp16) on a GPU, fp32 on a CPU, whose
    bf16 is only fast with native support (avx512_bf16 / AMX: ~1.8x a fp32 MiniLM step on such a CPU)
    and emulated, slower, without it. fp16 autocast needs a GPU (its loss scaling is CUDA-only here)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision '{precision}' is unknown. Use one of: {', '.join(PRECISIONS)}.")
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"precision fp16 needs a CUDA GPU (this stage runs on {device.type}). "
                          "Use precision=bf16 or fp32.")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("precision bf16 asked for, but this GPU has no bf16. Use precision=fp16 or auto.")
    if precision == "auto" and device.type != "cuda":  # the trainer autocasts CUDA only (MPS fp16 is not its path)
        return None
    amp = autocast_dtype(device, precision)
    warn_if_bf16_is_emulated(device, amp)
    return amp


class LossGuard(nn.Module):
    """Wraps a loss; raises TrainingError at the first non-finite value, naming the step."""

    def __init__(self, loss: nn.Module, stage: str) -> None:
        super().__init__()
        self.loss = loss
        self.stage = stage
        self.step = 0

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        value = self.loss(*args, **kwargs)
        if not torch.isfinite(value).all():
            raise TrainingError(f"stage '{self.stage}' produced a non-finite loss ({value.item()}) at step {self.step + 1}; "
                                "training stopped and this stage's output was not written (the previous stage's "
                                "checkpoint is the last good one). Lower the learning rate or check the data.")
        return value

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.loss, name)


@dataclass
class StageRun:
    """What a finished stage reports."""

    steps: int
    seconds: float
    last_loss: float
    stopped_by_budget: bool


def _callbacks(guards: LossGuard | dict[str, LossGuard], settings: TrainSettings, tracker: Any, state: dict):
    from transformers import TrainerCallback

    class KoforgeCallback(TrainerCallback):
        def on_train_begin(self, args, st, control, **kw):
            state["start"] = time.monotonic()

        def on_step_begin(self, args, st, control, optimizer=None, **kw):
            # A time budget cuts a step-based linear schedule mid-way (lr never decays);
            # the time schedule warms up and decays over the wall clock instead (rank 0's, on every rank).
            if settings.schedule == "time" and settings.max_minutes and optimizer is not None:
                frac = rank0_minutes(state["start"], device=args.device)[0] / settings.max_minutes
                warm = max(settings.warmup_ratio, 1e-6)
                scale = min(frac / warm, 1.0) if frac < warm else max(0.0, (1 - frac) / (1 - warm))
                for group in optimizer.param_groups:
                    group["lr"] = settings.learning_rate * max(scale, 0.01)

        def on_step_end(self, args, st, control, **kw):
            for guard in guards.values() if isinstance(guards, dict) else [guards]:
                guard.step = st.global_step
            if settings.max_minutes is not None and rank0_minutes(state["start"], device=args.device)[0] > settings.max_minutes:
                state["budget"] = True
                control.should_training_stop = True

        def on_log(self, args, st, control, logs=None, **kw):
            if logs:
                if "loss" in logs:
                    state["loss"] = float(logs["loss"])
                if tracker is not None:
                    tracker.log_metrics({f"train/{k}": v for k, v in logs.items()}, step=st.global_step)

    return [KoforgeCallback()]


def _batch_sampler(settings: TrainSettings) -> Any:
    if settings.group_by_length:
        from koforge.embeddings.batching import LengthGroupedBatchSampler

        return functools.partial(LengthGroupedBatchSampler, no_duplicates=settings.no_duplicates)
    from sentence_transformers.base.sampler import BatchSamplers

    return BatchSamplers.NO_DUPLICATES if settings.no_duplicates else BatchSamplers.BATCH_SAMPLER


def _anchor_prompts(dataset: Any, prompt: Optional[str]) -> dict:
    """sentence-transformers' `prompts` argument: `prompt` before every `anchor` (query) text. Not SimCSE's
    anchors: its positive is the same text (two dropout views), which a prompt on one side would change."""
    if not prompt:
        return {}
    if isinstance(dataset, dict):
        return {name: {"anchor": prompt} for name, part in dataset.items()
                if "anchor" in part.column_names and name != "simcse"}
    return {"anchor": prompt} if "anchor" in dataset.column_names else {}


def _check_batches_without_repeats(dataset: Any, batch_size: int, stage: str) -> None:
    """In-batch negatives must not repeat a text of the batch, so rows sharing texts (many questions of one
    paragraph) wait for another batch; when no full batch can form, the part would never train, silently."""
    from koforge.embeddings.batching import LengthGroupedBatchSampler

    parts = dataset.items() if isinstance(dataset, dict) else [(None, dataset)]
    for name, part in parts:
        if "anchor" not in part.column_names:  # CoSENT/distill rows: no in-batch negatives
            continue
        if not any(True for _ in LengthGroupedBatchSampler(part, batch_size, drop_last=True, no_duplicates=True)):
            what = f"objective part '{name}'" if name else "the data"
            raise DataError(f"stage '{stage}': {what} ({len(part)} rows) cannot fill one batch of {batch_size} rows without "
                            "repeating a text (in-batch negatives must differ from every positive): too few distinct "
                            "texts, e.g. many questions of a few paragraphs. Lower batch_size or add data.")


def train_stage(model: Any, loss: nn.Module | dict[str, nn.Module], dataset: Any, settings: TrainSettings, *, stage: str,
                scratch_dir: str, tracker: Any = None) -> StageRun:
    """Train `model` in place on `dataset` with `loss`; returns steps, time and last loss.

    A dict of datasets with a dict of losses (same keys) is a multi-task stage: every batch comes from
    one dataset, drawn in proportion to the datasets' sizes, and meets that dataset's loss.
    """
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import MultiDatasetBatchSamplers

    device = model.device
    n = sum(len(d) for d in dataset.values()) if isinstance(dataset, dict) else len(dataset)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    steps_per_epoch = max(1, n // (settings.batch_size * world))
    max_steps = settings.max_steps if settings.max_steps else max(1, math.ceil(steps_per_epoch * settings.epochs))
    drop_last = n >= settings.batch_size * world
    small = {k: len(d) for k, d in dataset.items() if len(d) < settings.batch_size * world} if isinstance(dataset, dict) else {}
    if drop_last and small:  # the trainer drops each dataset's last partial batch: these would never train
        raise DataError(f"stage '{stage}': objective(s) {', '.join(f'{k} ({v} examples)' for k, v in small.items())} have "
                        f"fewer examples than one batch of {settings.batch_size * world} (batch_size x processes), so "
                        "their batches would all be dropped and they would never train. Add data or lower batch_size.")
    if drop_last and settings.no_duplicates:
        _check_batches_without_repeats(dataset, settings.batch_size, stage)
    amp = training_autocast(device, settings.precision)
    bf16, fp16 = amp == torch.bfloat16, amp == torch.float16
    args = SentenceTransformerTrainingArguments(
        output_dir=scratch_dir, per_device_train_batch_size=settings.batch_size, max_steps=max_steps,
        learning_rate=settings.learning_rate, warmup_steps=int(settings.warmup_ratio * max_steps),
        weight_decay=settings.weight_decay,
        lr_scheduler_type="constant" if settings.schedule == "time" and settings.max_minutes else "linear", save_strategy="no", report_to="none",
        logging_steps=settings.logging_steps, disable_tqdm=os.environ.get("KOFORGE_PROGRESS", "1") == "0",
        seed=settings.seed, data_seed=settings.seed, use_cpu=device.type == "cpu", bf16=bf16, fp16=fp16,
        dataloader_drop_last=drop_last, ddp_backend="gloo" if device.type == "cpu" and world > 1 else None,
        # Every buffer here is constant and loaded alike on every rank (position ids; new_embeddings' frozen old
        # rows, a whole vocabulary's table): DDP's default would send them from rank 0 before every step.
        ddp_broadcast_buffers=False,
        batch_sampler=_batch_sampler(settings),
        multi_dataset_batch_sampler=MultiDatasetBatchSamplers.PROPORTIONAL,
        prompts=_anchor_prompts(dataset, settings.query_prompt),
    )
    guards = {k: LossGuard(v, stage) for k, v in loss.items()} if isinstance(loss, dict) else LossGuard(loss, stage)
    state: dict = {"loss": float("nan"), "budget": False}
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=guards,
                                         callbacks=_callbacks(guards, settings, tracker, state))
    start = time.perf_counter()
    out = trainer.train()
    seconds = time.perf_counter() - start
    last = float(out.training_loss) if math.isnan(state["loss"]) else state["loss"]
    if not math.isfinite(last):
        raise TrainingError(f"stage '{stage}' ended with a non-finite loss; its output was not written.")
    return StageRun(steps=int(out.global_step), seconds=seconds, last_loss=last, stopped_by_budget=state["budget"])

"""Healing: a short distillation of the compressed model from its base model.

Loss: KL(teacher || student) of the next-token distributions at every position
of calibration token blocks, at temperature T (scaled by T^2, Hinton et al.).
The teacher runs in inference mode; the student trains in float32 with AdamW
and a linear warm-up then cosine decay. No labels are needed, so any
calibration text will do; it should not be the held-out perplexity text.
"""
from __future__ import annotations

import math
import torch
import torch.nn.functional as F
from torch import nn

from koforge._utils.errors import TrainingError
from koforge._utils.progress import progress
from koforge._utils.seed import seed_everything


def kl_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Mean over positions of KL(teacher || student) at `temperature`, times T^2."""
    V = student_logits.shape[-1]
    s = F.log_softmax(student_logits.float().reshape(-1, V) / temperature, dim=-1)
    t = F.log_softmax(teacher_logits.float().reshape(-1, V) / temperature, dim=-1)
    return F.kl_div(s, t, log_target=True, reduction="batchmean") * temperature ** 2


def heal(student: nn.Module, teacher: nn.Module, sequences: torch.Tensor, *, steps: int = 100, lr: float = 3e-4,
         batch_size: int = 8, temperature: float = 1.0, seed: int = 0) -> dict:
    """Distil `teacher` into `student` on (N, T) token blocks, in place; returns the loss curve."""
    if student.dtype != torch.float32:
        raise TrainingError(f"heal trains float32 students (got {student.dtype}); run heal before convert_dtype.")
    seed_everything(seed)
    device = next(student.parameters()).device
    teacher.eval()
    student.train()
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    warmup = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for step in progress(range(steps), desc="heal", leave=False):
        idx = torch.randint(0, sequences.shape[0], (min(batch_size, sequences.shape[0]),), generator=gen)
        batch = sequences[idx].to(device)  # (B, T)
        with torch.inference_mode():
            t_logits = teacher(input_ids=batch, use_cache=False).logits.float()
        s_logits = student(input_ids=batch, use_cache=False).logits
        loss = kl_loss(s_logits, t_logits.clone(), temperature)
        if not torch.isfinite(loss):
            raise TrainingError(f"healing diverged at step {step} (loss {loss.item()}). Lower compression.heal_lr "
                                f"(now {lr}).")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    student.eval()
    return {"steps": steps, "first_loss": losses[0], "last_loss": losses[-1],
            "mean_last_10": sum(losses[-10:]) / len(losses[-10:]), "losses": losses}

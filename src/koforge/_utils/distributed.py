"""What every DDP rank must agree on: decisions taken from rank 0's clock."""
from __future__ import annotations

import os
import time

import torch
import torch.distributed as dist


def launch_rank() -> int:
    """This process's rank under torchrun (its RANK variable); 0 when not launched by torchrun."""
    return int(os.environ.get("RANK", "0"))


def rank0_minutes(*since: float, device: torch.device | str = "cpu") -> list[float]:
    """Minutes from each `time.monotonic()` point to now, as rank 0 measures them (on every rank).

    Time-based choices (stop at a budget, validate every N minutes, the learning rate of a time schedule)
    taken from each rank's own clock differ by a step now and then; the ranks' collectives then stop
    matching and the run hangs, or the replicas drift apart.
    """
    now = time.monotonic()
    values = torch.tensor([(now - t) / 60 for t in since], dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.broadcast(values, src=0)
    return values.tolist()

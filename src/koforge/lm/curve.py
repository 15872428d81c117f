"""The training curve of an LM run: train and validation loss against the step, as a PNG."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

CURVE_FILE = "training_curve.png"


def plot_training_curve(history: Sequence[dict], path: str | os.PathLike, *, title: Optional[str] = None) -> Optional[Path]:
    """Plot the `train_loss` and `val_loss` records of a run's history; None (nothing written) when it has neither."""
    train = [(h["step"], h["train_loss"]) for h in history if "train_loss" in h]
    val = [(h["step"], h["val_loss"]) for h in history if h.get("val_loss") is not None]
    if not train and not val:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from koforge._utils.io import atomic_file

    fig, ax = plt.subplots(figsize=(6, 3.6))
    if train:
        ax.plot(*zip(*train), label="train loss")
    if val:
        ax.plot(*zip(*val), "o-", label="validation loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # a short run would get ticks at step 1.25
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title or "LM training")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path

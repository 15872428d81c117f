"""Training windows from token shards: random contiguous windows, fixed validation windows.

The sampler draws window starts from its own `torch.Generator`, so its state
(generator + windows drawn) is the data position saved in a checkpoint: a
resumed run sees exactly the batches the uninterrupted run would have seen.
Every DDP rank draws the same global batch and keeps its own slice, so 2
processes see the same global batch as 1.
"""
from __future__ import annotations

import numpy as np
import torch

from koforge._utils.errors import DataError
from koforge._utils.logging import get_logger
from koforge.data.shards import ShardManifest, open_split

log = get_logger(__name__)


class TokenWindows:
    """Random [B, T] (input, target) windows over the concatenated shards of one split."""

    def __init__(self, folder: str, split: str, seq_len: int, seed: int) -> None:
        self.manifest, self.maps = open_split(folder, split)
        self.seq_len = seq_len
        usable = [m for m in self.maps if len(m) > seq_len]
        if not usable:
            longest = max((len(m) for m in self.maps), default=0)
            raise DataError(f"split '{split}' of '{folder}' has no shard longer than seq_len+1={seq_len + 1} tokens "
                            f"(longest: {longest}). Lower seq_len or pack more text.")
        self.maps = usable
        # Window starts per shard; a start is drawn uniformly over all of them.
        self.starts = np.cumsum([0] + [len(m) - seq_len for m in usable])
        self.generator = torch.Generator().manual_seed(seed)
        self.drawn = 0

    @property
    def split_info(self):
        return self.manifest

    def _window(self, index: int) -> np.ndarray:
        shard = int(np.searchsorted(self.starts, index, side="right") - 1)
        offset = index - int(self.starts[shard])
        return np.asarray(self.maps[shard][offset:offset + self.seq_len + 1], dtype=np.int64)

    def next_batch(self, batch: int, rank: int = 0, world: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """The rank's slice of the next global batch of `batch` windows: ([b, T], [b, T]) int64."""
        idx = torch.randint(0, int(self.starts[-1]), (batch,), generator=self.generator).tolist()
        self.drawn += batch
        per = batch // world
        rows = np.stack([self._window(i) for i in idx[rank * per:(rank + 1) * per]])
        t = torch.from_numpy(rows)
        return t[:, :-1], t[:, 1:]

    def fixed_batches(self, n_batches: int, batch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """`n_batches` evenly spaced, deterministic validation batches."""
        total = int(self.starts[-1])
        n = max(1, n_batches * batch)
        positions = np.linspace(0, total - 1, n).astype(np.int64)
        rows = np.stack([self._window(int(i)) for i in positions])
        t = torch.from_numpy(rows)
        return [(t[i:i + batch, :-1], t[i:i + batch, 1:]) for i in range(0, n, batch)]

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "drawn": self.drawn, "windows": int(self.starts[-1])}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.drawn = int(state["drawn"])
        saved = state.get("windows")
        if saved is not None and int(saved) != int(self.starts[-1]):
            # the same generator draws starts over another range: other windows than the uninterrupted run's
            log.warning("the training data differs from the checkpoint's (%d window starts, was %d: other or re-packed "
                        "shards): training continues, but on other batches than an uninterrupted run would have seen.",
                        int(self.starts[-1]), int(saved))


VALIDATION_SPLITS = ("val", "validation")  # a SPLIT=PATH pack's usual name, and `koforge data split`'s


def validation_split(folder: str) -> str:
    """The name of the shard folder's validation split: `val`, else `validation`."""
    manifest = ShardManifest.read(folder)
    for name in VALIDATION_SPLITS:
        if name in manifest.splits and manifest.splits[name].files:
            return name
    packed = ", ".join(k for k, v in manifest.splits.items() if v.files) or "none"
    raise DataError(f"shard folder '{folder}' has no validation split (looked for {' or '.join(VALIDATION_SPLITS)}; "
                    f"splits: {packed}). Pack one beside train, e.g. `koforge data pack train=train.jsonl "
                    "val=heldout.jsonl -t TOKENIZER -o DIR`, or pack a `koforge data split` folder.")


def tokens_per_byte(manifest: ShardManifest, split: str) -> float:
    """Text tokens per UTF-8 byte of a split (turns nats per text token into bits per byte). The EOS between
    documents is no text: it is left out here, as its loss is left out of bits per byte (`lm.validation.evaluate`)."""
    info = manifest.splits[split]
    if not info.bytes:
        raise DataError(f"the manifest records 0 bytes for split '{split}'; bits per byte cannot be computed. Re-pack.")
    return (info.tokens - info.documents) / info.bytes

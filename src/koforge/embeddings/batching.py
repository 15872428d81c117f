"""Length-grouped batches: rows of similar length train together, so batches carry little padding.

A batch is padded to its longest text, so one 60-token sentence among 32 of ~15 makes every row cost 60
(KorSTS train through the expanded MiniLM: 32 x 43-67 padded tokens for ~17 real ones per row, a CoSENT
step at 2.0 s instead of ~0.8 s). The scheme is that of transformers' `LengthGroupedSampler`: shuffle
the rows, cut the order into mega-batches of `group` batches, sort each mega-batch by length and cut it
into batches, then shuffle the batches. The rows of an epoch and the randomness of what meets what
across batches stay; within a batch, texts are of similar length (so length is no clue to a match).
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

import torch
from sentence_transformers.base.sampler import DefaultBatchSampler

GROUP_BATCHES = 50  # batches per mega-batch, as transformers' LengthGroupedSampler


class LengthGroupedBatchSampler(DefaultBatchSampler):
    """Batches of rows of similar text length, in random order; a drop-in `batch_sampler` of the trainer.

    Length is the number of characters over all text columns of a row (no tokenization needed).
    With `no_duplicates`, a row sharing a text with the batch being filled waits for the next batch
    (in-batch negatives must not be copies of a positive), like `NoDuplicatesBatchSampler`.
    """

    def __init__(self, dataset: Any, batch_size: int, drop_last: bool, valid_label_columns: list[str] | None = None,
                 generator: torch.Generator | None = None, seed: int = 0, *, no_duplicates: bool = False,
                 group: int = GROUP_BATCHES) -> None:
        super().__init__(dataset, batch_size=batch_size, drop_last=drop_last, valid_label_columns=valid_label_columns,
                         generator=generator, seed=seed)
        labels = set(valid_label_columns or [])
        columns = [dataset[c] for c in dataset.column_names if c not in labels]
        texts = [col for col in columns if col and isinstance(col[0], str)]
        self.n = len(dataset)
        self.lengths = [sum(len(col[i]) for col in texts) for i in range(self.n)]
        self.row_texts = [frozenset(col[i] for col in texts) for i in range(self.n)] if no_duplicates else None
        self.group = max(1, group)

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.n, generator=gen).tolist()
        span = self.batch_size * self.group
        batches: list[list[int]] = []
        left: list[int] = []  # rows that did not fill a batch join the next mega-batch
        for start in range(0, self.n, span):
            mega = sorted(left + order[start:start + span], key=self.lengths.__getitem__, reverse=True)
            full, left = self._cut(mega)
            batches += full
        if not self.drop_last:
            batches += self._last(left)
        for i in torch.randperm(len(batches), generator=gen).tolist():
            yield batches[i]

    def _texts(self, i: int) -> frozenset:
        return self.row_texts[i] if self.row_texts is not None else frozenset()

    def _cut(self, rows: list[int]) -> tuple[list[list[int]], list[int]]:
        """Full batches of rows taken in order, and the rows left over; a row clashing with the batch
        being filled (no_duplicates) waits and is tried first in the next one."""
        batches, batch, seen, later = [], [], set(), []
        queue = deque(rows)
        while queue:
            i = queue.popleft()
            if not seen.isdisjoint(self._texts(i)):
                later.append(i)
                continue
            batch.append(i)
            seen |= self._texts(i)
            if len(batch) == self.batch_size:
                batches.append(batch)
                batch, seen = [], set()
                queue.extendleft(reversed(later))
                later = []
        return batches, batch + later

    def _last(self, rows: list[int]) -> list[list[int]]:
        """The partial batch(es) of the epoch's leftover rows: more than one only where rows clash."""
        batches = []
        while rows:
            batch, seen, later = [], set(), []
            for i in rows:
                if seen.isdisjoint(self._texts(i)):
                    batch.append(i)
                    seen |= self._texts(i)
                else:
                    later.append(i)
            batches.append(batch)
            rows = later
        return batches

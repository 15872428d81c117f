"""Token ids checked against the model's embedding table before a forward pass.

A tokenizer from another model (a `--tokenizer` of the wrong size, or one shipped
with an export by mistake) gives ids past the last embedding row, and torch's
`IndexError: index out of range in self` names neither the tokenizer nor the fix.
"""
from __future__ import annotations

from typing import Any, Iterable

from koforge._utils.errors import DataError


def check_ids_fit(model: Any, ids: Iterable[int], what: str) -> None:
    """Refuse ids the model has no embedding row for, naming `what` was encoded."""
    rows = model.get_input_embeddings().num_embeddings
    top = max((int(i) for i in ids), default=-1)
    if top >= rows:
        raise DataError(f"{what} encodes to token id {top}, but the model has {rows} embedding rows (ids 0..{rows - 1}): "
                        "the tokenizer is not the model's. Pass the tokenizer it was trained with (--tokenizer PATH), "
                        "or re-export the model with its own.")

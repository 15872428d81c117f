"""Reading held-out / calibration text and cutting it into token sequences.

Formats: `.txt` (one document per line), `.jsonl` (one JSON object per line,
the text in `text_field`), and SQuAD/KorQuAD `.json` (the paragraphs'
`context`). Documents are taken in file order, so a baseline and every
compressed model see exactly the same text; `texts_sha` identifies it.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import torch

from koforge._utils.errors import DataError
from koforge._utils.io import require_path


def load_texts(path: str | Path, *, text_field: str = "text", max_docs: int = 200, max_chars: int = 60000,
               skip: int = 0) -> list[str]:
    """Documents of a text file after the first `skip`, up to `max_docs` documents and about `max_chars` characters."""
    p = require_path(path, "text file")
    docs: list[str] = []
    try:
        if p.suffix == ".json":
            data = json.loads(p.read_text(encoding="utf-8"))
            stream = (para["context"] for art in data["data"] for para in art["paragraphs"])
        else:
            stream = _lines(p, text_field)
        total, seen = 0, 0
        for doc in stream:
            doc = doc.strip()
            if not doc:
                continue
            seen += 1
            if seen <= skip:
                continue
            docs.append(doc)
            total += len(doc)
            if len(docs) >= max_docs or total >= max_chars:
                break
    except UnicodeDecodeError:
        raise DataError(f"text file '{p}' is not UTF-8. Convert it (iconv -t utf-8).") from None
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DataError(f"text file '{p}' is not in a supported format ({type(e).__name__}: {e}). Use .txt (one "
                        f"document per line), .jsonl with a '{text_field}' field, or a KorQuAD .json.") from None
    if not docs:
        raise DataError(f"text file '{p}' holds no non-empty document" + (f" after the first {skip}." if skip else "."))
    return docs


def _lines(p: Path, text_field: str):
    with p.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if p.suffix == ".jsonl":
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:  # its own line number is 1: name the file's
                    raise DataError(f"line {n} of '{p}' is not JSON ({e.msg}); expected one object per line.") from None
                if not isinstance(record, dict) or text_field not in record:
                    fields = ", ".join(record) if isinstance(record, dict) else type(record).__name__
                    raise DataError(f"line {n} of '{p}' has no field '{text_field}' (fields: {fields}). "
                                    "Set text_field to the field holding the text.")
                yield str(record[text_field])
            else:
                yield line


def texts_sha(texts: Sequence[str]) -> str:
    """A short hash of the exact documents used."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8") + b"\0")
    return h.hexdigest()[:16]


def token_sequences(tokenizer: Any, texts: Sequence[str], *, length: int, max_sequences: int | None = None) -> torch.Tensor:
    """Non-overlapping (N, length) token blocks of the concatenated texts (the tail is dropped)."""
    ids: list[int] = []
    for t in texts:
        ids.extend(tokenizer(t, add_special_tokens=False)["input_ids"])
        eos = getattr(tokenizer, "eos_token_id", None)
        if eos is not None:
            ids.append(eos)
        if max_sequences and len(ids) >= length * max_sequences:
            break
    n = len(ids) // length
    if max_sequences:
        n = min(n, max_sequences)
    if n == 0:
        raise DataError(f"calibration text gives {len(ids)} tokens, fewer than one sequence of {length}. "
                        "Give more text or a smaller calibration_context.")
    return torch.tensor(ids[: n * length], dtype=torch.long).view(n, length)  # (N, T)


def run_with_hooks(model: torch.nn.Module, sequences: torch.Tensor, handles: list, batch_size: int = 8) -> int:
    """Forward `sequences` in batches (hooks already registered), then remove `handles`; returns tokens seen."""
    device = next(model.parameters()).device
    tokens = 0
    try:
        for start in range(0, sequences.shape[0], batch_size):
            batch = sequences[start:start + batch_size].to(device)
            model(input_ids=batch, use_cache=False)
            tokens += batch.numel()
    finally:
        for h in handles:
            h.remove()
    return tokens

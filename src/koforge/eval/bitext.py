"""Korean-English bitext retrieval: does each Korean line retrieve its own English line?

Reads two line-aligned files, embeds both sides and reports the share of
Korean sentences whose nearest English sentence (cosine) is their translation
(`ko2en`, primary is the mean of both directions). Measures how much English /
cross-lingual ability a Korean fine-tune keeps.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from koforge._utils.errors import DataError
from koforge.eval._encode import encode
from koforge.eval._read import read_text_file
from koforge.eval.metrics import cosine_matrix


def read_lines(path: str | os.PathLike) -> list[str]:
    """Every line of a bitext file, blank ones kept (they hold a pair's place in the alignment)."""
    return read_text_file(path, "bitext file").splitlines()


def evaluate_bitext(model: Any, ko_path: str | os.PathLike, en_path: str | os.PathLike, *,
                    max_pairs: int | None = None, batch_size: int = 64) -> dict[str, Any]:
    """Accuracy of nearest-neighbour translation retrieval in both directions."""
    ko, en = read_lines(ko_path), read_lines(en_path)
    if len(ko) != len(en):
        raise DataError(f"bitext files are not line-aligned: '{ko_path}' has {len(ko)} lines, '{en_path}' {len(en)}. "
                        "Pass two files with one translation per line.")
    keep = [i for i in range(len(ko)) if ko[i].strip() and en[i].strip()]
    if max_pairs:
        keep = keep[:max_pairs]
    if not keep:
        raise DataError(f"no non-empty aligned lines in '{ko_path}' / '{en_path}'.")
    ko_emb = encode(model, [ko[i] for i in keep], batch_size=batch_size)
    en_emb = encode(model, [en[i] for i in keep], batch_size=batch_size)
    sim = cosine_matrix(ko_emb, en_emb)
    target = np.arange(len(keep))
    ko2en = float((sim.argmax(axis=1) == target).mean())
    en2ko = float((sim.argmax(axis=0) == target).mean())
    return {"primary": (ko2en + en2ko) / 2, "ko2en": ko2en, "en2ko": en2ko, "n_pairs": len(keep)}

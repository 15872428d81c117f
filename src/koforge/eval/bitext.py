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
from koforge.eval._read import read_text_file, split_lines
from koforge.eval.metrics import cosine_matrix


def read_lines(path: str | os.PathLike) -> list[str]:
    """Every line of a bitext file, blank ones kept (they hold a pair's place in the alignment)."""
    return split_lines(read_text_file(path, "bitext file"))


def evaluate_bitext(model: Any, ko_path: str | os.PathLike, en_path: str | os.PathLike, *,
                    max_pairs: int | None = None, batch_size: int = 64) -> dict[str, Any]:
    """Accuracy of nearest-neighbour translation retrieval in both directions (a retrieved line counts as right when
    the files pair it with the query's text: repeated lines are interchangeable)."""
    ko, en = read_lines(ko_path), read_lines(en_path)
    if len(ko) != len(en):
        raise DataError(f"bitext files are not line-aligned: '{ko_path}' has {len(ko)} lines, '{en_path}' {len(en)}. "
                        "Pass two files with one translation per line.")
    keep = [i for i in range(len(ko)) if ko[i].strip() and en[i].strip()]
    if max_pairs:
        keep = keep[:max_pairs]
    if not keep:
        raise DataError(f"no non-empty aligned lines in '{ko_path}' / '{en_path}'.")
    ko_side, en_side = [ko[i] for i in keep], [en[i] for i in keep]
    sim = cosine_matrix(encode(model, ko_side, batch_size=batch_size), encode(model, en_side, batch_size=batch_size))
    # right when the files pair the query's text with the retrieved text: news files repeat lines ("Ideal temperature:"
    # 5 times in korean-english-park.test.en), and which identical copy wins the tie says nothing about the model
    pairs = set(zip(ko_side, en_side))
    ko2en = float(np.mean([(ko_side[i], en_side[j]) in pairs for i, j in enumerate(sim.argmax(axis=1))]))
    en2ko = float(np.mean([(ko_side[j], en_side[i]) in pairs for i, j in enumerate(sim.argmax(axis=0))]))
    return {"primary": (ko2en + en2ko) / 2, "ko2en": ko2en, "en2ko": en2ko, "n_pairs": len(keep)}

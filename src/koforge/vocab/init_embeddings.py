"""Rows for new tokens, computed from the base model's old rows.

- `mean`: the mean of the old rows of the pieces the *base* tokenizer gives for
  the new token's text (Thunder / EEVE style). Unknown-token pieces are left out
  of the mean unless they are all there is.
- `random`: Gaussian with the old rows' per-dimension mean and std.
- `focus`: FOCUS-style (Dobler & de Melo, 2023) weighted combination of similar
  old tokens. FOCUS measures similarity with fastText vectors trained on the
  target language; here (no auxiliary model) similarity is the cosine of
  jamo 1-3-gram counts between the new token and the old tokens of the same
  script, and the weights are a softmax over the top-k similarities. New tokens
  with no similar old token fall back to `mean`.

All maths is float32 on CPU; rows are cast to the matrix dtype at the end.
Statistics over the old rows are accumulated in chunks so a 150K x 4K matrix is
never copied whole.
"""
from __future__ import annotations

import unicodedata
from collections import Counter
from typing import Any, Optional, Sequence

import torch

from koforge.vocab.text import Convention, is_hangul, passes_filter


def piece_ids(base_tok: Any, texts: Sequence[str]) -> list[list[int]]:
    """Ids the base tokenizer gives for each text (no specials), unknown pieces dropped when others exist."""
    unk = getattr(base_tok, "unk_token_id", None)
    out = []
    encoded = base_tok(list(texts), add_special_tokens=False, padding=False, truncation=False)["input_ids"] if texts else []
    for ids in encoded:
        known = [i for i in ids if i != unk]
        out.append(known or ids)
    return out


def row_stats(weight: torch.Tensor, n_rows: int, chunk: int = 16384) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std of the first `n_rows` rows, in float64 chunks."""
    total = torch.zeros(weight.shape[1], dtype=torch.float64)
    sq = torch.zeros_like(total)
    for s in range(0, n_rows, chunk):
        block = weight[s:min(s + chunk, n_rows)].detach().to(torch.float64)
        total += block.sum(0)
        sq += (block * block).sum(0)
    mean = total / n_rows
    var = (sq / n_rows - mean * mean).clamp_min(0)
    return mean.float(), var.sqrt().float()


def mean_rows(weight: torch.Tensor, pieces: Sequence[Sequence[int]]) -> torch.Tensor:
    """[N, D]: row i is the mean of weight[pieces[i]]."""
    flat = torch.tensor([i for p in pieces for i in p], dtype=torch.long)
    seg = torch.tensor([k for k, p in enumerate(pieces) for _ in p], dtype=torch.long)
    counts = torch.tensor([max(len(p), 1) for p in pieces], dtype=torch.float32)
    out = torch.zeros(len(pieces), weight.shape[1], dtype=torch.float32)
    if len(flat):
        out.index_add_(0, seg, weight.detach()[flat].float())
    return out / counts[:, None]


def _ngrams(text: str) -> Counter:
    jamo = unicodedata.normalize("NFD", text)
    grams: Counter = Counter()
    for n in (1, 2, 3):
        grams.update(jamo[i:i + n] for i in range(len(jamo) - n + 1))
    return grams


def _sparse(texts: Sequence[str], index: dict[str, int], grow: bool) -> tuple[list[int], list[int], list[float]]:
    rows, cols, vals = [], [], []
    for r, t in enumerate(texts):
        g = _ngrams(t)
        norm = sum(v * v for v in g.values()) ** 0.5 or 1.0
        for gram, v in g.items():
            c = index.get(gram)
            if c is None:
                if not grow:
                    continue
                c = index[gram] = len(index)
            rows.append(r)
            cols.append(c)
            vals.append(v / norm)
    return rows, cols, vals


def focus_rows(weight: torch.Tensor, new_texts: Sequence[str], old_ids: Sequence[int], old_texts: Sequence[str],
               fallback: torch.Tensor, top_k: int, temperature: float, chunk: int = 1024) -> tuple[torch.Tensor, int]:
    """[N, D] FOCUS-style rows, and how many fell back to `fallback` (no similar old token)."""
    if not old_ids:
        return fallback.clone(), len(new_texts)
    index: dict[str, int] = {}
    r, c, v = _sparse(old_texts, index, grow=True)
    old = torch.sparse_coo_tensor(torch.tensor([r, c], dtype=torch.long).reshape(2, -1), torch.tensor(v, dtype=torch.float32),
                                  (len(old_texts), len(index)), check_invariants=True).coalesce()
    r, c, v = _sparse(new_texts, index, grow=False)
    new = torch.sparse_coo_tensor(torch.tensor([r, c], dtype=torch.long).reshape(2, -1), torch.tensor(v, dtype=torch.float32),
                                  (len(new_texts), len(index)), check_invariants=True).coalesce()
    old_ids_t = torch.tensor(list(old_ids), dtype=torch.long)
    out = fallback.clone()
    fell_back = 0
    k = min(top_k, len(old_ids))
    for s in range(0, len(new_texts), chunk):
        dense_new = new.index_select(0, torch.arange(s, min(s + chunk, len(new_texts)))).to_dense()  # [n, G]
        sim = torch.sparse.mm(old, dense_new.T).T  # [n, n_old] cosine (rows are unit-norm)
        top, idx = sim.topk(k, dim=1)
        ok = top[:, 0] > 0
        w = torch.softmax(top / temperature, dim=1) * (top > 0)
        w = w / w.sum(1, keepdim=True).clamp_min(1e-12)
        rows = weight.detach()[old_ids_t[idx]].float()  # [n, k, D]
        combined = (w[..., None] * rows).sum(1)
        out[s:s + chunk][ok] = combined[ok]
        fell_back += int((~ok).sum())
    return out, fell_back


def same_script_old_tokens(base_tok: Any, n_old: int) -> tuple[list[int], list[str]]:
    """Ids and core texts of the base's Hangul vocabulary entries (FOCUS candidates)."""
    import json

    conv = Convention.from_json(json.loads(base_tok.backend_tokenizer.to_str()))
    ids, texts = [], []
    for tok, i in base_tok.backend_tokenizer.get_vocab(with_added_tokens=False).items():
        if i >= n_old:
            continue
        tt = conv.to_text(tok)
        if tt.decodable and any(is_hangul(ch) for ch in tt.core) and passes_filter(tt.core, "hangul", None):
            ids.append(i)
            texts.append(tt.core)
    return ids, texts


def new_rows(weight: torch.Tensor, n_old: int, texts: Sequence[str], pieces: Sequence[Sequence[int]], *, init: str,
             noise_std: float, generator: torch.Generator, focus: Optional[tuple[list[int], list[str]]] = None,
             top_k: int = 8, temperature: float = 0.05) -> tuple[torch.Tensor, dict[str, Any]]:
    """[N, D] float32 rows for the new tokens, and facts for the report."""
    mean, std = row_stats(weight, n_old)
    info: dict[str, Any] = {"init": init}
    if init == "random":
        rows = mean + std * torch.randn(len(texts), weight.shape[1], generator=generator)
    else:
        rows = mean_rows(weight, pieces)
        if init == "focus":
            old_ids, old_texts = focus or ([], [])
            cores = [t.strip() for t in texts]
            rows, info["focus_fallback_to_mean"] = focus_rows(weight, cores, old_ids, old_texts, rows, top_k, temperature)
            info["focus_candidates"] = len(old_ids)
    if noise_std > 0:
        rows = rows + noise_std * std * torch.randn(rows.shape, generator=generator)
    return rows, info

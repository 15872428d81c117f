"""Ranking and correlation metrics shared by the evaluators.

The retrieval metrics follow the definitions MTEB uses for its Korean
retrieval tasks (binary relevance, cut-off k): NDCG@k with log2 discounts and
an ideal ranking of min(k, |relevant|) hits, MAP@k normalised by
|relevant| (trec_eval's `map_cut`, which MTEB calls through pytrec_eval), Recall@k
and P@k. Every function is pure numpy so it can
be checked by hand on tiny inputs; none of them embeds anything.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.stats import spearmanr


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best columns of each row of `scores` (Q, N), best first; ties by lower index."""
    k = min(k, scores.shape[1])
    # stable argsort on -score keeps the lower index first among ties
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def _hits(ranked: Sequence[int], relevant: set[int]) -> np.ndarray:
    return np.array([1.0 if r in relevant else 0.0 for r in ranked])


def ndcg_at_k(ranked: Sequence[int], relevant: set[int], k: int = 10) -> float:
    """NDCG@k of one ranking with binary relevance."""
    if not relevant:
        return 0.0
    hits = _hits(list(ranked)[:k], relevant)
    discounts = 1.0 / np.log2(np.arange(2, len(hits) + 2))
    ideal = (1.0 / np.log2(np.arange(2, min(k, len(relevant)) + 2))).sum()
    return float((hits * discounts).sum() / ideal)


def average_precision_at_k(ranked: Sequence[int], relevant: set[int], k: int = 10) -> float:
    """AP@k of one ranking: precision at each relevant hit in the top k, summed and divided by |relevant|
    (trec_eval `map_cut`; a query with more relevant items than k cannot reach 1)."""
    if not relevant:
        return 0.0
    hits = _hits(list(ranked)[:k], relevant)
    precisions = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precisions * hits).sum() / len(relevant))


def recall_at_k(ranked: Sequence[int], relevant: set[int], k: int = 10) -> float:
    """Share of the relevant items found in the top k."""
    if not relevant:
        return 0.0
    return float(_hits(list(ranked)[:k], relevant).sum() / len(relevant))


def precision_at_k(ranked: Sequence[int], relevant: set[int], k: int = 10) -> float:
    """Share of the top k that is relevant (always divided by k, as MTEB does)."""
    return float(_hits(list(ranked)[:k], relevant).sum() / k)


def retrieval_metrics(rankings: Sequence[Sequence[int]], relevant: Sequence[set[int]], k: int = 10) -> dict[str, float]:
    """Mean NDCG/MAP/Recall/P@k over queries."""
    if len(rankings) != len(relevant):
        raise ValueError(f"{len(rankings)} rankings but {len(relevant)} relevance sets")
    out = {f"ndcg@{k}": [], f"map@{k}": [], f"recall@{k}": [], f"p@{k}": []}
    for ranked, rel in zip(rankings, relevant):
        out[f"ndcg@{k}"].append(ndcg_at_k(ranked, rel, k))
        out[f"map@{k}"].append(average_precision_at_k(ranked, rel, k))
        out[f"recall@{k}"].append(recall_at_k(ranked, rel, k))
        out[f"p@{k}"].append(precision_at_k(ranked, rel, k))
    return {name: float(np.mean(v)) if v else 0.0 for name, v in out.items()}


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of every row of `a` (N, D) with every row of `b` (M, D) -> (N, M)."""
    a = a / np.clip(np.linalg.norm(a, axis=1, keepdims=True), 1e-12, None)
    b = b / np.clip(np.linalg.norm(b, axis=1, keepdims=True), 1e-12, None)
    return a @ b.T


def paired_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of row i of `a` with row i of `b` -> (N,)."""
    a = a / np.clip(np.linalg.norm(a, axis=1, keepdims=True), 1e-12, None)
    b = b / np.clip(np.linalg.norm(b, axis=1, keepdims=True), 1e-12, None)
    return (a * b).sum(axis=1)


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation (0.0 when either side is constant, as `spearman`; numpy gives NaN and a warning)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (0.0 when either side is constant)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return 0.0
    return float(spearmanr(x, y).statistic)

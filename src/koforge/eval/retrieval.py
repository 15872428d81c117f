"""Question -> paragraph retrieval on KorQuAD 1.0.

`evaluate_korquad_retrieval` embeds every paragraph of a SQuAD-format file
once and ranks them for each question by cosine; the paragraph a question was
asked on is its one relevant document (verbatim repeats of a paragraph count
once). Metrics: NDCG@10 (primary), MAP@10, Recall@10, P@10, the metrics MTEB
reports for its Korean retrieval tasks (`koforge.eval.mteb_bridge` runs those, and this task through MTEB's evaluator).
"""
from __future__ import annotations

import os
import random
from typing import Any

from koforge._utils.errors import ConfigError, DataError
from koforge._utils.io import read_json
from koforge.eval._encode import encode
from koforge.eval.metrics import cosine_matrix, retrieval_metrics, top_k

def read_korquad(path: str | os.PathLike) -> tuple[list[str], list[str], list[int]]:
    """(paragraphs, questions, index of each question's paragraph) from a SQuAD-format JSON.

    A context repeated verbatim is one paragraph (KorQuAD 1.0 dev repeats 3): two copies embed alike, and the tie
    went to the first, so questions asked on a later copy ranked their own paragraph second."""
    doc = read_json(path, "KorQuAD file")
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise DataError(f"'{path}' is not SQuAD format: expected a top-level object with a 'data' list.")
    paragraphs, questions, gold = [], [], []
    index: dict[str, int] = {}
    for article in doc["data"]:
        for para in article.get("paragraphs", []):
            if "context" not in para:
                raise DataError(f"'{path}': a paragraph lacks its 'context' field (SQuAD format expected).")
            if para["context"] not in index:
                index[para["context"]] = len(paragraphs)
                paragraphs.append(para["context"])
            for qa in para.get("qas", []):
                questions.append(qa["question"])
                gold.append(index[para["context"]])
    if not questions:
        raise DataError(f"'{path}' holds no questions.")
    return paragraphs, questions, gold


def sample_queries(n: int, max_queries: int | None, seed: int) -> list[int]:
    """Indices of the evaluated questions: all, or a seeded sample of `max_queries` in file order."""
    if max_queries is not None and max_queries < 1:
        raise ConfigError(f"the number of queries to sample must be >= 1 (None for all), got {max_queries}.")
    order = list(range(n))
    if max_queries is not None and max_queries < n:
        order = sorted(random.Random(seed).sample(order, max_queries))
    return order


def evaluate_korquad_retrieval(model: Any, korquad_json: str | os.PathLike, *, k: int = 10, max_queries: int | None = None,
                               seed: int = 0, batch_size: int = 32, query_prompt: str | None = None,
                               passage_prompt: str | None = None) -> dict[str, Any]:
    """NDCG/MAP/Recall/P@k of questions against all paragraphs; `max_queries` samples questions (seeded)."""
    paragraphs, questions, gold = read_korquad(korquad_json)
    order = sample_queries(len(questions), max_queries, seed)
    queries = [questions[i] for i in order]
    relevant = [{gold[i]} for i in order]
    p_emb = encode(model, paragraphs, batch_size=batch_size, prompt=passage_prompt)
    q_emb = encode(model, queries, batch_size=batch_size, prompt=query_prompt)
    ranked = top_k(cosine_matrix(q_emb, p_emb), k)
    metrics = retrieval_metrics(ranked.tolist(), relevant, k)
    return {"primary": metrics[f"ndcg@{k}"], **metrics, "n_queries": len(queries), "n_docs": len(paragraphs)}

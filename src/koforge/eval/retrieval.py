"""Question -> paragraph retrieval on KorQuAD 1.0, plus the MTEB Korean retrieval tasks.

`evaluate_korquad_retrieval` embeds every paragraph of a SQuAD-format file
once and ranks them for each question by cosine; the paragraph a question was
asked on is its one relevant document. Metrics: NDCG@10 (primary), MAP@10,
Recall@10, P@10, the metrics MTEB reports for its Korean retrieval tasks.
`evaluate_mteb` runs named hub tasks through the optional `mteb` package
(`pip install koforge[mteb]`); it is imported lazily.
"""
from __future__ import annotations

import os
import random
from typing import Any, Sequence

from koforge._utils.errors import ConfigError, DataError
from koforge._utils.io import read_json
from koforge.eval._encode import encode
from koforge.eval.metrics import cosine_matrix, retrieval_metrics, top_k

MTEB_KOREAN_TASKS = ("Ko-StrategyQA", "AutoRAGRetrieval", "MIRACLRetrieval", "MrTidyRetrieval",
                     "BelebeleRetrieval", "PublicHealthQA")


def read_korquad(path: str | os.PathLike) -> tuple[list[str], list[str], list[int]]:
    """(paragraphs, questions, index of each question's paragraph) from a SQuAD-format JSON."""
    doc = read_json(path, "KorQuAD file")
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise DataError(f"'{path}' is not SQuAD format: expected a top-level object with a 'data' list.")
    paragraphs, questions, gold = [], [], []
    for article in doc["data"]:
        for para in article.get("paragraphs", []):
            if "context" not in para:
                raise DataError(f"'{path}': a paragraph lacks its 'context' field (SQuAD format expected).")
            paragraphs.append(para["context"])
            for qa in para.get("qas", []):
                questions.append(qa["question"])
                gold.append(len(paragraphs) - 1)
    if not questions:
        raise DataError(f"'{path}' holds no questions.")
    return paragraphs, questions, gold


def evaluate_korquad_retrieval(model: Any, korquad_json: str | os.PathLike, *, k: int = 10, max_queries: int | None = None,
                               seed: int = 0, batch_size: int = 32, query_prompt: str | None = None,
                               passage_prompt: str | None = None) -> dict[str, Any]:
    """NDCG/MAP/Recall/P@k of questions against all paragraphs; `max_queries` samples questions (seeded)."""
    paragraphs, questions, gold = read_korquad(korquad_json)
    order = list(range(len(questions)))
    if max_queries and max_queries < len(order):
        order = sorted(random.Random(seed).sample(order, max_queries))
    queries = [questions[i] for i in order]
    relevant = [{gold[i]} for i in order]
    p_emb = encode(model, paragraphs, batch_size=batch_size, prompt=passage_prompt)
    q_emb = encode(model, queries, batch_size=batch_size, prompt=query_prompt)
    ranked = top_k(cosine_matrix(q_emb, p_emb), k)
    metrics = retrieval_metrics(ranked.tolist(), relevant, k)
    return {"primary": metrics[f"ndcg@{k}"], **metrics, "n_queries": len(queries), "n_docs": len(paragraphs)}


def evaluate_mteb(model: Any, tasks: Sequence[str] = MTEB_KOREAN_TASKS, *, languages: Sequence[str] = ("kor",),
                  output_folder: str | None = None) -> dict[str, Any]:
    """Run MTEB retrieval tasks by name (needs `pip install koforge[mteb]` and the hub)."""
    try:
        import mteb  # noqa: PLC0415 - optional extra
    except ImportError:
        raise ConfigError("the `mteb` package is not installed. Install it with `pip install 'koforge[mteb]'` "
                          "(into an environment whose torch you are happy to keep).") from None
    unknown = [t for t in tasks if not isinstance(t, str) or not t]
    if unknown:
        raise ConfigError(f"MTEB task names must be non-empty strings, got {unknown!r}.")
    selected = mteb.get_tasks(tasks=list(tasks), languages=list(languages))
    results = mteb.MTEB(tasks=selected).run(model, output_folder=output_folder)
    scores: dict[str, float] = {}
    for res in results:
        name = getattr(res, "task_name", str(res))
        main = res.get_score() if hasattr(res, "get_score") else float("nan")
        scores[name] = float(main)
    primary = sum(scores.values()) / len(scores) if scores else 0.0
    return {"primary": primary, **scores}

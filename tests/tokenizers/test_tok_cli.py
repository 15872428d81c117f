"""`koforge tokenizer ...` through Typer's runner."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from koforge.cli.main import app
from koforge.tokenizers.train import TokenizerTrainConfig, train_tokenizer

runner = CliRunner()


@pytest.fixture(scope="module")
def tok_dir(assets, tmp_path_factory):
    texts = (assets / "tok_nsmc_400.txt").read_text(encoding="utf-8").splitlines()
    return train_tokenizer(texts, TokenizerTrainConfig(vocab_size=300), tmp_path_factory.mktemp("cli") / "tok").path


def test_train_eval_compare(assets, tmp_path):
    corpus = str(assets / "tok_nsmc_400.txt")
    r = runner.invoke(app, ["tokenizer", "train", "-i", corpus, "-o", str(tmp_path / "a"), "vocab_size=400"])
    assert r.exit_code == 0, r.output
    cfg = json.loads((tmp_path / "a" / "koforge_tokenizer_config.json").read_text())
    assert (cfg["kind"], cfg["vocab_size"], cfg["digits"]) == ("bpe", 400, "split")
    r = runner.invoke(app, ["tokenizer", "train", "-i", corpus, "-o", str(tmp_path / "b"), "-p", "superbpe-32k",
                            "vocab_size=600", "superbpe_transition=450"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["tokenizer", "eval", str(tmp_path / "a"), str(tmp_path / "b"), "-x", f"nsmc={corpus}",
                            "-x", str(assets / "data_petitions_12.jsonl"), "-f", "text", "-n", "50", "-r", "a"])
    assert r.exit_code == 1 and "no field 'text'" in r.output  # one field for all sets
    r = runner.invoke(app, ["tokenizer", "compare", str(tmp_path / "a"), str(tmp_path / "b"), "-x", f"nsmc={corpus}",
                            "-n", "100", "-o", str(tmp_path / "cmp")])
    assert r.exit_code == 0, r.output
    assert "b on nsmc:" in r.output and "% tokens vs a" in r.output
    assert {p.name for p in (tmp_path / "cmp").iterdir()} == {"comparison.md", "comparison.json", "comparison.png"}
    before = (tmp_path / "cmp" / "comparison.json").read_text()
    r = runner.invoke(app, ["tokenizer", "compare", str(tmp_path / "a"), "-x", f"nsmc={corpus}", "-n", "5", "-o", str(tmp_path / "cmp")])
    assert r.exit_code == 1 and "already exists" in r.output and "--overwrite" in r.output
    assert (tmp_path / "cmp" / "comparison.json").read_text() == before
    r = runner.invoke(app, ["tokenizer", "compare", str(tmp_path / "a"), "-x", f"nsmc={corpus}", "-n", "5", "-o", str(tmp_path / "cmp"),
                            "--overwrite"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "cmp" / "comparison.json").read_text())["rows"][0]["tokenizer"] == "a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "cmp"]  # no temporary folder left


def test_train_refusals_are_one_line(assets, tmp_path):
    corpus = str(assets / "tok_nsmc_400.txt")
    (tmp_path / "out").mkdir()
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("kind: [bpe\n", encoding="utf-8")
    cases = [
        (["-o", str(tmp_path / "out")], "already exists"),
        (["-o", str(tmp_path / "o2"), "vocab_size=100"], "vocab_size=100 is below"),
        (["-o", str(tmp_path / "o3"), "vocab_sise=1000"], "vocab_sise"),
        (["-o", str(tmp_path / "o4"), "-p", "nosuchpreset"], "no tokenizer preset named 'nosuchpreset'"),
        (["-o", str(tmp_path / "o5"), "-i", str(tmp_path / "missing.txt")], "input not found"),
        (["-o", str(tmp_path / "o6"), "-p", str(bad_yaml)], f"config file '{bad_yaml}' is not valid YAML, line 2"),
    ]
    for extra, message in cases:
        r = runner.invoke(app, ["tokenizer", "train", "-i", corpus, *extra])
        assert r.exit_code == 1 and message in r.output and "Traceback" not in r.output, (extra, r.output)
    assert not any((tmp_path / n).exists() for n in ("o2", "o3", "o4", "o5", "o6"))
    r = runner.invoke(app, ["tokenizer", "eval", str(tmp_path / "nope"), "-x", corpus])
    assert r.exit_code == 1 and "tokenizer not found" in r.output


def test_train_output_under_a_file_fails_before_training(assets, tmp_path, monkeypatch):
    import koforge.tokenizers.train

    def never(*args, **kwargs):
        raise AssertionError("training started although the output path cannot be created")

    monkeypatch.setattr(koforge.tokenizers.train, "train_backend", never)
    (tmp_path / "existing.jsonl").write_text("{}\n")
    r = runner.invoke(app, ["tokenizer", "train", "-i", str(assets / "tok_nsmc_400.txt"), "-o", str(tmp_path / "existing.jsonl" / "tok")])
    assert r.exit_code == 1 and "existing.jsonl' is a file, not a folder" in r.output and "Traceback" not in r.output, r.output


def test_eval_limit_must_be_positive(assets, tok_dir):
    for limit in ("-1", "0"):
        r = runner.invoke(app, ["tokenizer", "eval", str(tok_dir), "-x", str(assets / "tok_nsmc_400.txt"), "-n", limit])
        assert r.exit_code == 1 and f"--limit/-n must be >= 1 (documents per text set), got {limit}" in r.output, r.output


def test_eval_and_compare_skip_non_utf8_lines_or_fail_with_strict(tok_dir, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes("좋은 줄\n".encode() + b"\xff\xfe\n" + "둘째 줄\n".encode())
    for command in ("eval", "compare"):
        r = runner.invoke(app, ["tokenizer", command, str(tok_dir), "-x", str(bad), "--strict"])
        assert r.exit_code == 1 and f"{bad}:2: not valid UTF-8 (byte 0xff at column 0)" in r.output, r.output
    r = runner.invoke(app, ["tokenizer", "eval", str(tok_dir), "-x", str(bad)])
    assert r.exit_code == 0 and "| bad |" in r.output, r.output


def test_text_sets_with_the_same_file_name_stay_apart(tok_dir, tmp_path):
    for folder, text in (("d1", "가나다\n"), ("d2", "라마바사 아자차카\n")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "test.txt").write_text(text, encoding="utf-8")
    r = runner.invoke(app, ["tokenizer", "eval", str(tok_dir), "-x", str(tmp_path / "d1" / "test.txt"),
                            "-x", str(tmp_path / "d2" / "test.txt"), "-x", f"test-2={tmp_path / 'd1' / 'test.txt'}",
                            "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "out" / "comparison.json").read_text())["rows"]
    assert [r["text_set"] for r in rows] == ["test", "test-3", "test-2"]  # the explicit name keeps its own
    assert rows[0]["tokens"] == rows[2]["tokens"] != rows[1]["tokens"]
    r = runner.invoke(app, ["tokenizer", "eval", str(tok_dir), "-x", f"a={tmp_path / 'd1' / 'test.txt'}", "-x", f"a={tmp_path / 'd2' / 'test.txt'}"])
    assert r.exit_code == 1 and "text set name 'a' is given twice" in r.output


def test_a_mistyped_tokenizer_name_is_one_line(assets, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["tokenizer", "eval", "mytok", "-x", str(assets / "tok_nsmc_400.txt")])
    assert r.exit_code == 1 and "tokenizer 'mytok' not found" in r.output and "'org/name'" in r.output
    assert len(r.output.strip().splitlines()) <= 3 and "Retrying" not in r.output, r.output  # one (wrapped) message


def test_group_help_has_an_example():
    r = runner.invoke(app, ["tokenizer", "--help"])
    assert r.exit_code == 0 and "Example: koforge tokenizer train" in r.output


def test_train_and_eval_are_tracked_in_mlflow(assets, tmp_path, mlflow_store):
    import mlflow

    corpus = str(assets / "tok_nsmc_400.txt")
    r = runner.invoke(app, ["tokenizer", "train", "-i", corpus, "-o", str(tmp_path / "tok"), "vocab_size=400"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["tokenizer", "eval", str(tmp_path / "tok"), "-x", f"nsmc={corpus}", "-n", "20",
                            "-o", str(tmp_path / "cmp")])
    assert r.exit_code == 0, r.output
    mlflow.set_tracking_uri(mlflow_store)
    runs = {run.info.run_name: run for run in mlflow.search_runs(experiment_names=["koforge-tokenizer"], output_format="list")}
    train, evaluation = runs["train:tok"], runs["eval:tok"]
    assert train.info.status == evaluation.info.status == "FINISHED"
    assert (train.data.params["vocab_size"], train.data.metrics["vocab_size"]) == ("400", 400.0)
    measured = json.loads((tmp_path / "cmp" / "comparison.json").read_text())["rows"][0]
    assert evaluation.data.metrics["tok/nsmc/tokens"] == measured["tokens"]
    assert evaluation.data.metrics["tok/nsmc/chars_per_token"] == pytest.approx(measured["chars_per_token"])
    assert [a.path for a in mlflow.MlflowClient().list_artifacts(evaluation.info.run_id)] == ["comparison.json"]

"""`koforge tokenizer ...` through Typer's runner."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from koforge.cli.main import app

runner = CliRunner()


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


def test_train_refusals_are_one_line(assets, tmp_path):
    corpus = str(assets / "tok_nsmc_400.txt")
    (tmp_path / "out").mkdir()
    cases = [
        (["-o", str(tmp_path / "out")], "already exists"),
        (["-o", str(tmp_path / "o2"), "vocab_size=100"], "vocab_size=100 is below"),
        (["-o", str(tmp_path / "o3"), "vocab_sise=1000"], "vocab_sise"),
        (["-o", str(tmp_path / "o4"), "-p", "nosuchpreset"], "no tokenizer preset named 'nosuchpreset'"),
        (["-o", str(tmp_path / "o5"), "-i", str(tmp_path / "missing.txt")], "input not found"),
    ]
    for extra, message in cases:
        r = runner.invoke(app, ["tokenizer", "train", "-i", corpus, *extra])
        assert r.exit_code == 1 and message in r.output and "Traceback" not in r.output, (extra, r.output)
    assert not any((tmp_path / n).exists() for n in ("o2", "o3", "o4", "o5"))
    r = runner.invoke(app, ["tokenizer", "eval", str(tmp_path / "nope"), "-x", corpus])
    assert r.exit_code == 1 and "tokenizer not found" in r.output

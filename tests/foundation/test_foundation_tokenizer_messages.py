"""`koforge tokenizer train` tells the user what the corpus could not give and how to fix a config."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from koforge._utils.errors import ConfigError
from koforge.cli.main import app
from koforge.tokenizers.train import TokenizerTrainConfig

runner = CliRunner()


def test_a_corpus_too_small_for_vocab_size_is_reported(assets, tmp_path):
    small = tmp_path / "five.txt"
    small.write_text("\n".join((assets / "tok_nsmc_400.txt").read_text(encoding="utf-8").splitlines()[:5]), encoding="utf-8")
    r = runner.invoke(app, ["tokenizer", "train", "-i", str(small), "-o", str(tmp_path / "tok"), "vocab_size=2000"])
    assert r.exit_code == 0, r.output
    assert "not vocab_size=2,000" in r.output and "add text" in r.output


def test_skipped_lines_are_counted_and_the_first_is_named(assets, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes((assets / "tok_nsmc_400.txt").read_bytes() + b"\xff\xfe broken\n")
    r = runner.invoke(app, ["tokenizer", "train", "-i", str(bad), "-o", str(tmp_path / "tok"), "vocab_size=300"])
    assert r.exit_code == 0, r.output
    assert f"skipped 1 unreadable line(s) (first: {bad}:401)" in r.output


def test_a_preset_transition_above_a_smaller_vocab_size_says_how_to_fix_it():
    with pytest.raises(ConfigError, match="superbpe_transition=16000 must be >= 260 and below vocab_size=3000. "
                                          "Set superbpe_transition=N in that range, or superbpe_transition=null"):
        TokenizerTrainConfig(kind="superbpe", vocab_size=3000, superbpe_transition=16000)

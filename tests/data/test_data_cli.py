"""`koforge data ...` through Typer's runner: the whole chain and one-line errors."""
from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from koforge.cli.main import app
from koforge.data.shards import ShardManifest

runner = CliRunner()


def test_clean_split_stats_pack_chain(assets, tmp_path):
    r = runner.invoke(app, ["data", "clean", "-i", str(assets / "data_petitions_12.jsonl"), "-f", "content",
                            "-o", str(tmp_path / "c.jsonl"), "-p", "korean-web", "min_chars=20"])
    assert r.exit_code == 0, r.output
    assert sum(1 for _ in (tmp_path / "c.jsonl").open()) == 12
    r = runner.invoke(app, ["data", "split", "-i", str(tmp_path / "c.jsonl"), "-o", str(tmp_path / "sp"),
                            "train=0.5", "validation=0.25", "test=0.25"])
    assert r.exit_code == 0, r.output
    counts = json.loads((tmp_path / "sp" / "split_config.json").read_text())["documents"]
    assert sum(counts.values()) == 12
    r = runner.invoke(app, ["data", "stats", str(tmp_path / "c.jsonl"), "--plot", str(tmp_path / "h.png"), "--json", str(tmp_path / "s.json")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "s.json").read_text())["documents"] == 12
    r = runner.invoke(app, ["tokenizer", "train", "-i", str(assets / "tok_nsmc_400.txt"), "-o", str(tmp_path / "tok"), "vocab_size=500"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["data", "pack", str(tmp_path / "sp"), "-t", str(tmp_path / "tok"), "-o", str(tmp_path / "sh")])
    assert r.exit_code == 0, r.output
    m = ShardManifest.read(tmp_path / "sh")
    assert {k: v.documents for k, v in m.splits.items() if v.documents} == {k: v for k, v in counts.items() if v}
    assert "tokens/s" in r.output


def test_cli_bad_inputs_are_one_line(tmp_path):
    r = runner.invoke(app, ["data", "stats", str(tmp_path / "missing.txt")])
    assert r.exit_code == 1 and "input not found" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["data", "stats", str(tmp_path / "missing.txt"), "--plot", str(tmp_path / "h.jpg")])
    assert r.exit_code == 1 and "--plot writes a PNG image; name it .png" in r.output and not (tmp_path / "h.jpg").exists()
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\n\xff\xfe\n")
    r = runner.invoke(app, ["data", "clean", "-i", str(bad), "-o", str(tmp_path / "o.txt"), "--strict"])
    assert r.exit_code == 1 and f"{bad}:2" in r.output and not (tmp_path / "o.txt").exists()
    r = runner.invoke(app, ["data", "clean", "-i", str(bad), "-o", str(tmp_path / "o.txt")])
    assert r.exit_code == 0 and "skipped 1" in r.output
    r = runner.invoke(app, ["data", "clean", "-i", str(bad), "-o", str(tmp_path / "o.txt")])
    assert r.exit_code == 1 and "already exists" in r.output
    r = runner.invoke(app, ["data", "clean", "-i", str(bad), "-o", str(tmp_path / "o2.txt"), "min_hangul_ratio=2"])
    assert r.exit_code == 1 and "min_hangul_ratio" in r.output


def test_default_split_of_a_small_corpus_packs_with_empty_splits_skipped(assets, tmp_path):
    """12 documents at 98/1/1 leave validation and test empty: the README pipeline must still pack."""
    r = runner.invoke(app, ["data", "split", "-i", str(assets / "data_petitions_12.jsonl"), "-f", "content", "-o", str(tmp_path / "sp")])
    assert r.exit_code == 0, r.output
    counts = json.loads((tmp_path / "sp" / "split_config.json").read_text())["documents"]
    empty = sorted(k for k, v in counts.items() if v == 0)
    assert empty and counts["train"] > 0
    r = runner.invoke(app, ["tokenizer", "train", "-i", str(assets / "tok_nsmc_400.txt"), "-o", str(tmp_path / "tok"), "vocab_size=300"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["data", "pack", str(tmp_path / "sp"), "-t", str(tmp_path / "tok"), "-o", str(tmp_path / "sh")])
    assert r.exit_code == 0, r.output
    assert all(f"skipping empty split file {tmp_path / 'sp' / name}.jsonl" in r.output for name in empty), r.output
    assert {k: v.documents for k, v in ShardManifest.read(tmp_path / "sh").splits.items()} == {k: v for k, v in counts.items() if v}
    assert "tokens encoded in" in r.output and "setup" in r.output


def test_pack_a_bare_tokenizer_json(assets, tmp_path):
    r = runner.invoke(app, ["tokenizer", "train", "-i", str(assets / "tok_nsmc_400.txt"), "-o", str(tmp_path / "tok"), "vocab_size=300"])
    assert r.exit_code == 0, r.output
    text = str(assets / "tok_nsmc_400.txt")
    r = runner.invoke(app, ["data", "pack", text, "-t", str(tmp_path / "tok" / "tokenizer.json"), "-o", str(tmp_path / "beside")])
    assert r.exit_code == 0, r.output  # the sibling tokenizer_config.json names the EOS
    (tmp_path / "bare").mkdir()
    shutil.copy(tmp_path / "tok" / "tokenizer.json", tmp_path / "bare" / "tokenizer.json")
    bare = str(tmp_path / "bare" / "tokenizer.json")
    r = runner.invoke(app, ["data", "pack", text, "-t", bare, "-o", str(tmp_path / "sh")])
    assert r.exit_code == 1 and "tokenizer 'bare' names no EOS token" in r.output, r.output
    assert "Pass --eos-token '</s>'" in " ".join(r.output.split())  # a token this vocabulary holds
    r = runner.invoke(app, ["data", "pack", text, "-t", bare, "-o", str(tmp_path / "sh"), "--eos-token", "<nope>"])
    assert r.exit_code == 1 and "'<nope>' is not in the vocabulary of tokenizer 'bare'" in r.output
    assert "Pass a token it holds (</s>)" in " ".join(r.output.split())
    assert not (tmp_path / "sh").exists()
    r = runner.invoke(app, ["data", "pack", text, "-t", bare, "-o", str(tmp_path / "sh"), "--eos-token", "<pad>"])
    assert r.exit_code == 0, r.output
    assert ShardManifest.read(tmp_path / "sh").eos_id == 3 and ShardManifest.read(tmp_path / "beside").eos_id == 2  # <pad>, </s>


def test_help_carries_examples_of_the_commands_own_config():
    r = runner.invoke(app, ["data", "--help"])
    assert r.exit_code == 0 and "Example: koforge data clean" in r.output
    for command, key in (("clean", "min_chars=20"), ("split", "validation=0.05")):
        r = runner.invoke(app, ["data", command, "--help"])
        assert r.exit_code == 0 and key in r.output and "vocab_size" not in r.output, r.output


def test_pack_takes_a_path_holding_an_equals_sign_as_a_path(tmp_path, monkeypatch):
    """Partitioned data lakes name folders lang=ko/: 'lang=ko/part-0.jsonl' was read as split 'lang' of path 'ko/...'."""
    from koforge.cli.data import _splits

    part = tmp_path / "lang=ko" / "part-0.jsonl"
    part.parent.mkdir()
    part.write_text('{"text": "가"}\n', encoding="utf-8")
    assert _splits([str(part)]) == ({"train": [str(part)]}, [])
    monkeypatch.chdir(tmp_path)  # relative, 'lang' is a valid split name: only the path's existence tells them apart
    assert _splits(["lang=ko/part-0.jsonl"]) == ({"train": ["lang=ko/part-0.jsonl"]}, [])
    assert _splits([f"validation={part}", "test=t.jsonl"]) == ({"validation": [str(part)], "test": ["t.jsonl"]}, [])

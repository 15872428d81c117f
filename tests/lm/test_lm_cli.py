"""`koforge lm` through typer's CliRunner: train -> generate -> export -> import, and bad inputs."""
from __future__ import annotations

import pytest
import torch
from lm_helpers import tiny_config, write_tiny_shards
from typer.testing import CliRunner

from koforge.cli.main import app
from koforge.lm.checkpoint import load_model
from koforge.lm.hf import export_model
from koforge.lm.model import KoLM

runner = CliRunner()


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    """A word-level tokenizer over 64 ids, saved like `koforge tokenizer train` output (tokenizer.json)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"</s>": 0, **{f"w{i}": i for i in range(1, 63)}, "<unk>": 63}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    folder = tmp_path_factory.mktemp("tok")
    tok.save(str(folder / "tokenizer.json"))
    return folder


def test_train_generate_export_import(tmp_path, tokenizer_dir):
    shards = write_tiny_shards(tmp_path / "shards")
    out = tmp_path / "run"
    args = ["lm", "train", "--data", str(shards), "--out", str(out), "--tokenizer", str(tokenizer_dir),
            "model.vocab_size=64", "model.d_model=32", "model.n_layers=2", "model.n_heads=4", "model.n_kv_heads=2",
            "model.d_ff=64", "model.max_seq_len=64", "train.steps=4", "train.batch=4", "train.seq_len=16",
            "train.eval_every=2", "train.eval_batches=1", "train.warmup=1", "train.sample_tokens=4"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "best checkpoint" in r.output
    r = runner.invoke(app, ["lm", "generate", str(out), "w5 w6 w7", "-n", "5", "--temperature", "0"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("w5 w6 w7")
    r = runner.invoke(app, ["lm", "generate", str(out), "w5", "w9 w10", "-n", "4", "--precision", "int8"])
    assert r.exit_code == 0 and "generations" in r.output, r.output
    r = runner.invoke(app, ["lm", "export", str(out), str(tmp_path / "hf"), "--onnx", str(tmp_path / "m.onnx")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "hf" / "tokenizer.json").exists() and (tmp_path / "m.onnx").exists()
    r = runner.invoke(app, ["lm", "import", str(tmp_path / "hf"), str(tmp_path / "imported")])
    assert r.exit_code == 0, r.output
    a, _, _ = load_model(out)
    b, _, _ = load_model(tmp_path / "imported")
    ids = torch.randint(0, 64, (1, 8))
    assert torch.equal(a(ids), b(ids))
    r = runner.invoke(app, ["lm", "train", "--data", str(shards), "--out", str(out), "--resume", "model.d_model=64",
                            "model.vocab_size=64", "train.steps=8", "train.batch=4", "train.seq_len=16"])
    assert r.exit_code == 1 and "another model config" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("args,message", [
    (["lm", "train", "--data", "{tmp}/nope", "--out", "{tmp}/o"], "not found"),
    (["lm", "train", "--data", "{tmp}", "--out", "{tmp}/o", "model.n_heads=4", "model.n_kv_heads=3"], "n_kv_heads"),
    (["lm", "train", "--data", "{tmp}", "--out", "{tmp}/o"], "manifest.json"),
    (["lm", "train", "--data", "{tmp}", "--out", "{tmp}/o", "steps=3"], "model. or train."),
    (["lm", "generate", "{tmp}/hf", "w1 " * 70, "--tokenizer", "{tok}"], "truncate"),
    (["lm", "generate", "{tmp}/hf", "w1", "--tokenizer", "{tok}", "--precision", "int8", "--compile"], "int8"),
    (["lm", "export", "{tmp}/nope", "{tmp}/x"], "not found"),
])
def test_bad_inputs_give_one_clear_line(tmp_path, tokenizer_dir, args, message):
    export_model(KoLM(tiny_config()), tmp_path / "hf")
    args = [a.format(tmp=tmp_path, tok=tokenizer_dir) for a in args]
    r = runner.invoke(app, args)
    assert r.exit_code == 1, r.output
    assert message in r.output and "Traceback" not in r.output

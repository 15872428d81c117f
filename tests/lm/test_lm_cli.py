"""`koforge lm` through typer's CliRunner: train -> generate -> export -> import, and bad inputs."""
from __future__ import annotations

import logging
import shutil

import pytest
import torch
from lm_helpers import tiny_config, write_tiny_shards
from typer.testing import CliRunner

from koforge.cli.main import app
from koforge.lm.checkpoint import load_model, resolve_checkpoint, verify_checkpoint
from koforge.lm.hf import export_model, export_to_hf
from koforge.lm.model import KoLM

runner = CliRunner()
TINY = ["model.vocab_size=64", "model.d_model=32", "model.n_layers=2", "model.n_heads=4", "model.n_kv_heads=2",
        "model.d_ff=64", "model.max_seq_len=64"]
SHORT_RUN = ["train.steps=4", "train.batch=4", "train.seq_len=16", "train.eval_every=2", "train.eval_batches=1",
             "train.warmup=1", "train.sample_tokens=4"]


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


def shards_of(folder, tokenizer_dir):
    """Tiny shards recorded as packed with `tokenizer_dir` (what `koforge data pack -t` writes)."""
    from koforge.tokenizers.io import tokenizer_fingerprint

    return write_tiny_shards(folder, fingerprint=tokenizer_fingerprint(tokenizer_dir))


def test_train_generate_export_import(tmp_path, tokenizer_dir):
    shards = shards_of(tmp_path / "shards", tokenizer_dir)
    out = tmp_path / "run"
    args = ["lm", "train", "--data", str(shards), "--out", str(out), "--tokenizer", str(tokenizer_dir), *TINY, *SHORT_RUN]
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
    # The imported checkpoint trains further; the model config comes from it.
    r = runner.invoke(app, ["lm", "train", "--data", str(shards), "--out", str(tmp_path / "more"),
                            "--init-from", str(tmp_path / "imported"), *SHORT_RUN])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["lm", "train", "--data", str(shards), "--out", str(out), "--resume", "model.d_model=64",
                            "model.vocab_size=64", "train.steps=8", "train.batch=4", "train.seq_len=16"])
    assert r.exit_code == 1 and "another model config" in r.output and "Traceback" not in r.output


def test_resume_takes_the_architecture_and_data_stream_from_the_checkpoint(tmp_path, tokenizer_dir):
    """--resume alone continues with the model and train settings recorded in the checkpoint (a new step count
    given): it ends with the uninterrupted run's weights. A setting given again wins (a clash is refused)."""
    import dataclasses

    from koforge.lm.resume import RESUMED_TRAIN_FIELDS
    from koforge.lm.train import TrainConfig

    own = {"data_dir", "out_dir", "overwrite", "resume_from", "init_from", "tokenizer", "device"}  # the new command's
    assert {f.name for f in dataclasses.fields(TrainConfig)} == set(RESUMED_TRAIN_FIELDS) | own
    from safetensors.torch import load_file

    shards = shards_of(tmp_path / "shards", tokenizer_dir)
    flat_lr = ["train.warmup=0", "train.min_lr_ratio=1.0"]  # 4 + 2 steps then follow the schedule of 6
    steps6 = [o if not o.startswith("train.steps=") else "train.steps=6" for o in SHORT_RUN]
    whole, part = tmp_path / "whole", tmp_path / "part"
    for out, steps in ((whole, steps6), (part, SHORT_RUN)):
        r = runner.invoke(app, ["lm", "train", "--data", str(shards), "--out", str(out), *TINY, *steps, *flat_lr])
        assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["lm", "train", "--data", str(shards), "--out", str(part), "--resume", "train.steps=6"])
    assert r.exit_code == 0, r.output
    a, b = (load_file(str(run / "checkpoints" / "step_0000006" / "model.safetensors")) for run in (whole, part))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    r = runner.invoke(app, ["lm", "train", "--data", str(shards), "--out", str(part), "--resume", "train.steps=8",
                            "train.batch=8"])
    assert r.exit_code == 1 and "the data stream differs (batch: checkpoint 4 vs now 8)" in r.output


def test_resume_and_init_from_keep_the_recorded_tokenizer_and_take_the_new_optimizer_settings(tmp_path, tokenizer_dir):
    """A run resumed (or started from a checkpoint) without --tokenizer keeps the one recorded there, so it can
    still generate and export; train.resume_from may name the run folder (its latest checkpoint); a changed
    lr / weight decay applies from the next step instead of being silently replaced by the checkpoint's."""
    import json

    shards = shards_of(tmp_path / "shards", tokenizer_dir)
    out = tmp_path / "run"
    r = runner.invoke(app, ["lm", "train", "--data", str(shards), "--out", str(out), "--tokenizer", str(tokenizer_dir),
                            *TINY, *SHORT_RUN, "train.lr=0.002", "train.warmup=0", "train.min_lr_ratio=1.0"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["lm", "train", "--data", str(shards), "--out", str(out), f"train.resume_from={out}", *TINY,
                            *SHORT_RUN, "train.steps=6", "train.log_every=1", "train.lr=0.01", "train.weight_decay=0.5", "train.warmup=0",
                            "train.min_lr_ratio=1.0"])
    assert r.exit_code == 0, r.output
    assert "resuming with lr=0.01 (checkpoint 0.002), weight_decay=0.5 (checkpoint 0.1)" in r.output
    last = verify_checkpoint(out / "checkpoints" / "step_0000006")
    assert last["tokenizer"] == str(tokenizer_dir.resolve())
    assert [h["lr"] for h in last["history"] if h["step"] > 4] == [0.01, 0.01]
    state = torch.load(out / "checkpoints" / "step_0000006" / "state.pt", weights_only=True)
    assert [g["weight_decay"] for g in state["optimizer"]["param_groups"]] == [0.5, 0.0]
    assert "samples" in last["history"][-1]  # generations went on after the resume
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {s["step"] for s in samples} == {2, 4, 6} and all("completion" in s for s in samples)
    r = runner.invoke(app, ["lm", "generate", str(out), "w5", "-n", "2"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["lm", "train", "--data", str(shards), "--out", str(tmp_path / "more"),
                            "--init-from", str(out), *SHORT_RUN])
    assert r.exit_code == 0, r.output
    assert verify_checkpoint(resolve_checkpoint(tmp_path / "more"))["tokenizer"] == str(tokenizer_dir.resolve())


@pytest.mark.parametrize("args,message", [
    (["lm", "train", "--data", "{tmp}/nope", "--out", "{tmp}/o"], "not found"),
    (["lm", "train", "--data", "{tmp}", "--out", "{tmp}/o", "model.n_heads=4", "model.n_kv_heads=3"], "n_kv_heads"),
    (["lm", "train", "--data", "{tmp}", "--out", "{tmp}/o"], "manifest.json"),
    (["lm", "train", "--data", "{tmp}", "--out", "{tmp}/o", "steps=3"], "model.KEY=VALUE or train.KEY=VALUE"),
    (["lm", "train", "--data", "{tmp}", "--out", "{tmp}/o", "train.steps"], "'train.steps' must be model.KEY=VALUE"),
    (["lm", "train", "--data", "{tmp}", "--out", "{tmp}/o", "model.max_seq_len=16", "train.seq_len=32"],
     "seq_len=32 exceeds LMConfig.max_seq_len=16"),
    (["lm", "train", "--data", "{tmp}", "--out", "{tmp}/o", "--init-from", "{tmp}/nope"], "not found"),
    (["lm", "generate", "{tmp}/hf", "w1 " * 70, "--tokenizer", "{tok}"], "truncate"),
    (["lm", "generate", "{tmp}/hf", "w1", "--tokenizer", "{tok}", "--precision", "int8", "--compile"], "int8"),
    # bytes that are not UTF-8 reach Python as lone surrogates, which the tokenizer cannot take
    (["lm", "generate", "{tmp}/hf", "w1 w2\udcff", "--tokenizer", "{tok}"], "prompt 0 is not valid UTF-8 (bytes b'\\xff'"),
    (["lm", "export", "{tmp}/nope", "{tmp}/x"], "not found"),
    # an empty stop string is in every text: the completion would be cut to nothing, silently
    (["lm", "generate", "{tmp}/hf", "w1", "--tokenizer", "{tok}", "--stop", "w3", "--stop", ""], "--stop is empty"),
])
def test_bad_inputs_give_one_clear_line(tmp_path, tokenizer_dir, args, message):
    export_model(KoLM(tiny_config()), tmp_path / "hf")
    args = [a.format(tmp=tmp_path, tok=tokenizer_dir) for a in args]
    r = runner.invoke(app, args)
    assert r.exit_code == 1, r.output
    assert message in r.output and "Traceback" not in r.output


def _counting_model() -> KoLM:
    """Greedy decoding counts: id i is followed by i + 1 (one-hot embeddings, blocks silenced, shifted lm_head)."""
    model = KoLM(tiny_config(d_model=64))  # d_model = vocabulary: embeddings can be one-hot
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                p.zero_()
        model.model.embed_tokens.weight.copy_(torch.eye(64))
        model.lm_head.weight.copy_(torch.roll(torch.eye(64), 1, dims=0))
    return model


def test_streaming_holds_back_a_partial_stop_string_and_echoes_the_prompt_used(tmp_path, tokenizer_dir):
    export_model(_counting_model(), tmp_path / "hf", tokenizer=tokenizer_dir, eos_id=0)
    greedy = ["--temperature", "0", "--repetition-penalty", "1"]
    r = runner.invoke(app, ["lm", "generate", str(tmp_path / "hf"), "w5 w6", "-n", "8", *greedy, "--no-stream"])
    assert r.exit_code == 0 and "w7 w8 w9 w10" in r.output, r.output
    # "w9" may begin the stop string "w9 w10": streamed only once the next token shows it does not.
    r = runner.invoke(app, ["lm", "generate", str(tmp_path / "hf"), "w5 w6", "-n", "8", *greedy, "--stop", "w9 w10"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("w5 w6 w7 w8") and "w9" not in r.output, r.output  # spaced as the tokenizer decodes
    r = runner.invoke(app, ["lm", "generate", str(tmp_path / "hf"), "w5 w6", "-n", "8", *greedy, "--stop-token", "9"])
    assert r.exit_code == 0 and r.output.startswith("w5 w6 w7 w8") and "w9" not in r.output, r.output
    r = runner.invoke(app, ["lm", "generate", str(tmp_path / "hf"), "w5", *greedy, "--stop-token", "64"])
    assert r.exit_code == 1 and "--stop-token 64 is not an id of this model (0..63)" in r.output, r.output
    # A prompt over the context: the error alone, nothing echoed; truncated, the kept tokens are echoed.
    long = " ".join(f"w{i}" for i in range(1, 63)) + " " + " ".join(f"w{i}" for i in range(1, 11))  # 72 tokens
    r = runner.invoke(app, ["lm", "generate", str(tmp_path / "hf"), long, "-n", "4", *greedy])
    assert r.exit_code == 1 and r.output.startswith("error:") and "w1 w2" not in r.output, r.output
    r = runner.invoke(app, ["lm", "generate", str(tmp_path / "hf"), long, "-n", "4", *greedy, "--truncate", "left"])
    assert r.exit_code == 0 and r.output.startswith("w13 w14 "), r.output  # the last 60 tokens (64 - 4 new)


def test_recorded_tokenizer_path_is_absolute_and_a_missing_one_is_reported(tmp_path, tokenizer_dir, monkeypatch, caplog):
    shards_of(tmp_path / "shards", tokenizer_dir)
    shutil.copytree(tokenizer_dir, tmp_path / "tok")
    monkeypatch.chdir(tmp_path)  # relative paths, as typed in a shell
    r = runner.invoke(app, ["lm", "train", "--data", "shards", "--out", "run", "--tokenizer", "tok", *TINY, *SHORT_RUN])
    assert r.exit_code == 0, r.output
    assert verify_checkpoint(resolve_checkpoint(tmp_path / "run"))["tokenizer"] == str((tmp_path / "tok").resolve())
    r = runner.invoke(app, ["lm", "export", "run", "hf"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["lm", "import", "hf", "imported"])
    assert r.exit_code == 0, r.output
    assert verify_checkpoint(resolve_checkpoint(tmp_path / "imported"))["tokenizer"] == str((tmp_path / "hf").resolve())
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    r = runner.invoke(app, ["lm", "generate", str(tmp_path / "run"), "w5 w6", "-n", "3"])
    assert r.exit_code == 0, r.output
    shutil.rmtree(tmp_path / "tok")
    with caplog.at_level(logging.WARNING, logger="koforge"):
        export_to_hf(tmp_path / "run", tmp_path / "hf2")
    assert "tokenizer recorded" in caplog.text and "--tokenizer" in caplog.text
    assert not (tmp_path / "hf2" / "tokenizer.json").exists()


def test_speculative_generation_prints_the_greedy_text_and_its_draft_statistics(tmp_path, tokenizer_dir):
    from koforge.lm.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = KoLM(tiny_config(mtp_heads=2))
    save_checkpoint(tmp_path / "run", 0, model, {}, {"model_config": model.config.to_dict(), "eos_id": 0,
                                                     "tokenizer": str(tokenizer_dir)})
    greedy = runner.invoke(app, ["lm", "generate", str(tmp_path / "run"), "w5 w6", "-n", "6", "--temperature", "0",
                                 "--repetition-penalty", "1", "--no-stream"])
    r = runner.invoke(app, ["lm", "generate", str(tmp_path / "run"), "w5 w6", "-n", "6", "--speculative"])
    assert r.exit_code == 0, r.output
    completion = next(line for line in greedy.output.splitlines() if "w5 w6" in line).split("│")[2].strip()
    assert r.output.splitlines()[0] == "w5 w6 " + completion
    assert "drafts accepted" in r.output
    r = runner.invoke(app, ["lm", "generate", str(tmp_path / "run"), "w5", "w6", "--speculative"])
    assert r.exit_code == 1 and "one prompt" in r.output and "Traceback" not in r.output


def test_failed_commands_write_nothing_and_overwrite_replaces_the_whole_output(tmp_path, tokenizer_dir):
    """A sample tokenizer other than the shards' one, an ONNX path taken: refused before any output; an import
    with --overwrite replaces the folder, so an old run's checkpoints in it no longer shadow the import."""
    r = runner.invoke(app, ["lm", "train", "--data", str(write_tiny_shards(tmp_path / "shards")), "--out",
                            str(tmp_path / "run"), "--tokenizer", str(tokenizer_dir), *TINY, *SHORT_RUN])
    assert r.exit_code == 1 and "not the one the shards" in r.output, r.output
    assert not (tmp_path / "run").exists()
    (tmp_path / "taken.onnx").write_text("keep")
    r = runner.invoke(app, ["lm", "train", "--data", str(shards_of(tmp_path / "shards2", tokenizer_dir)), "--out",
                            str(tmp_path / "run"), *TINY, *SHORT_RUN])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["lm", "export", str(tmp_path / "run"), str(tmp_path / "hf"), "--onnx", str(tmp_path / "taken.onnx")])
    assert r.exit_code == 1 and "taken.onnx' already exists" in r.output, r.output
    assert not (tmp_path / "hf").exists() and (tmp_path / "taken.onnx").read_text() == "keep"
    (tmp_path / "odir").mkdir()  # a folder is no ONNX path, --overwrite or not
    r = runner.invoke(app, ["lm", "export", str(tmp_path / "run"), str(tmp_path / "hf"), "--onnx", str(tmp_path / "odir"),
                            "--overwrite"])
    assert r.exit_code == 1 and "--onnx takes a file path such as" in r.output, r.output
    assert not (tmp_path / "hf").exists() and not any((tmp_path / "odir").iterdir())
    other = tmp_path / "other"
    export_model(KoLM(tiny_config(n_layers=1)), other)
    r = runner.invoke(app, ["lm", "import", str(other), str(tmp_path / "run"), "--overwrite"])
    assert r.exit_code == 0, r.output
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["step_0000000"]
    assert load_model(tmp_path / "run")[1].n_layers == 1


def test_ctrl_c_after_a_checkpoint_says_what_is_kept_and_how_to_resume(tmp_path, monkeypatch):
    import koforge.lm.train as train_mod

    real = train_mod.train_lm

    def interrupted_at_step_3(model_cfg, train_cfg, resume=False):
        def stop(step, record):
            if step == 3:
                raise KeyboardInterrupt
        return real(model_cfg, train_cfg, resume=resume, on_step=stop)
    monkeypatch.setattr(train_mod, "train_lm", interrupted_at_step_3)
    shards, out = write_tiny_shards(tmp_path / "shards"), tmp_path / "run"
    r = runner.invoke(app, ["lm", "train", "--data", str(shards), "--out", str(out), *TINY, *SHORT_RUN])
    assert r.exit_code == 130
    assert f"interrupted: checkpoints up to step_0000002 are kept in '{out}'; run the same command with --resume" \
        in " ".join(r.output.split())
    r = runner.invoke(app, ["lm", "train", "--data", str(shards), "--out", str(tmp_path / "early"), *TINY, *SHORT_RUN,
                            "train.eval_every=0", "train.ckpt_every=0"])  # nothing saved before the interruption
    assert r.exit_code == 130 and "stopped before the first checkpoint, so" in r.output and "run the same command again" in r.output


def test_export_of_a_run_without_a_tokenizer_warns_that_the_folder_holds_weights_only(tmp_path):
    shards, out = write_tiny_shards(tmp_path / "shards"), tmp_path / "run"
    assert runner.invoke(app, ["lm", "train", "--data", str(shards), "--out", str(out), *TINY, *SHORT_RUN]).exit_code == 0
    r = runner.invoke(app, ["lm", "export", str(out), str(tmp_path / "hf")])
    assert r.exit_code == 0 and "holds weights only" in " ".join(r.output.split())
    assert (tmp_path / "hf" / "config.json").exists()


def test_resume_with_init_from_is_refused_instead_of_ignoring_init_from(tmp_path):
    shards, out = write_tiny_shards(tmp_path / "shards"), tmp_path / "run"
    assert runner.invoke(app, ["lm", "train", "--data", str(shards), "--out", str(out), *TINY, *SHORT_RUN]).exit_code == 0
    export_model(KoLM(tiny_config()), tmp_path / "hf")
    before = sorted(p.name for p in (out / "checkpoints").iterdir())
    r = runner.invoke(app, ["lm", "train", "--data", str(shards), "--out", str(out), "--resume", "--init-from",
                            str(tmp_path / "hf"), "train.steps=6"])
    assert r.exit_code == 1, r.output
    assert "--init-from" in r.output and "--resume" in r.output and "Traceback" not in r.output
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == before
    # the first command repeated with --resume names the weights the run started from: that is no contradiction
    more = ["lm", "train", "--data", str(shards), "--out", str(tmp_path / "more"), "--init-from", str(out), *SHORT_RUN]
    assert runner.invoke(app, more).exit_code == 0
    r = runner.invoke(app, more + ["--resume", "train.steps=6"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "more" / "checkpoints" / "step_0000006").is_dir()


def test_a_file_where_a_folder_goes_is_named_with_the_fix(tmp_path):
    """A model.safetensors or a text file given as the model, or a file as --out: one line naming the file (was
    "cannot access '...': Not a directory" / "File exists" from the file system)."""
    export_model(KoLM(tiny_config()), tmp_path / "hf")
    shards, taken = write_tiny_shards(tmp_path / "shards"), tmp_path / "notes.txt"
    taken.write_text("keep me\n", encoding="utf-8")
    cases = [
        (["lm", "generate", str(tmp_path / "hf" / "model.safetensors"), "w1"],
         f"is a file; pass a koforge checkpoint/run folder or a Hugging Face Llama folder (the folder it is in: '{tmp_path / 'hf'}')"),
        (["lm", "import", str(taken), str(tmp_path / "imported")], "is a file; pass a koforge checkpoint/run folder"),
        (["lm", "export", str(taken), str(tmp_path / "exported")], "is a file, not a folder. Pass a step_NNNNNNN folder"),
        (["lm", "train", "--data", str(shards), "--out", str(taken), *TINY, *SHORT_RUN],
         "is a file, but this output is a folder"),
    ]
    for args, message in cases:
        r = runner.invoke(app, args)
        assert r.exit_code == 1 and message in " ".join(r.output.split()) and "Traceback" not in r.output, (args, r.output)
    assert taken.read_text(encoding="utf-8") == "keep me\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf", "notes.txt", "shards"]

"""The trainer: learning, exact resume, checkpoint safety, NaN policy, bad inputs, DDP on gloo."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from free_port import free_port
from lm_helpers import VOCAB, tiny_config, write_tiny_shards
from safetensors.torch import load_file

from koforge._utils.errors import (CheckpointError, ConfigError, DataError, KoforgeError, OutputExistsError,
                                   TrainingError)
from koforge.lm.checkpoint import list_checkpoints, load_model, prune_checkpoints, save_checkpoint, verify_checkpoint
from koforge.lm.hf import export_model
from koforge.lm.model import KoLM
from koforge.lm.train import TrainConfig, train_lm

ASSETS = Path(__file__).resolve().parents[1] / "assets"


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_tiny_shards(tmp_path_factory.mktemp("shards") / "s")


def cfg(shards, out, **kw) -> TrainConfig:
    base = dict(data_dir=str(shards), out_dir=str(out), steps=8, batch=4, seq_len=16, lr=3e-3, warmup=2,
                eval_every=4, eval_batches=2, ckpt_every=4, keep_last=2, device="cpu", log_every=1)
    base.update(kw)
    return TrainConfig(**base)


def weights(ckpt: Path) -> dict:
    return load_file(str(ckpt / "model.safetensors"))


def test_training_lowers_validation_loss_and_reports_bpb(shards, tmp_path):
    res = train_lm(tiny_config(), cfg(shards, tmp_path / "run", steps=30, eval_every=10, ckpt_every=10))
    evals = [h for h in res.history if "val_loss" in h]
    assert [h["step"] for h in evals] == [10, 20, 30]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] < 4.2
    h = evals[-1]
    assert h["val_ppl"] == pytest.approx(torch.tensor(h["val_loss"]).exp().item(), rel=1e-5)
    # bits per byte = nats/token / ln 2 * tokens/byte; the toy corpus records 3 bytes per token (EOS adds tokens).
    assert 0 < h["val_bpb"] < h["val_loss"] / 0.693 / 3 * 1.2
    # keep_last=2 plus the best (the last here) -> steps 20, 30
    assert [p.name for p in list_checkpoints(res.out_dir / "checkpoints")] == ["step_0000020", "step_0000030"]
    assert res.checkpoint_dir.name == "step_0000030"
    assert json.loads((res.out_dir / "history.json").read_text())[-1]["step"] == 30
    assert (res.out_dir / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the loss curve to look at


def test_training_curve_plots_what_the_history_has(tmp_path):
    from koforge.lm.curve import plot_training_curve

    assert plot_training_curve([{"step": 1, "lr": 0.1}], tmp_path / "none.png") is None  # nothing to plot: no file
    assert not (tmp_path / "none.png").exists()
    history = [{"step": 1, "train_loss": 3.0}, {"step": 2, "train_loss": 2.5, "val_loss": 2.7}]
    assert plot_training_curve(history, tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


# spike_factor 0.98 skips steps whose loss is not 2% under the running mean (it lags a falling loss): the mean and
# the skip counters must come back from the checkpoint, or the resumed run skips other steps.
# bf16: CPU autocast (float32 attention and the chunked loss in bf16 GEMMs) resumes exactly as well.
@pytest.mark.parametrize("spike_factor,precision", [(0.0, "fp32"), (0.98, "fp32"), (0.0, "bf16")],
                         ids=["plain", "spike_skipping", "cpu_bf16"])
def test_killed_run_resumed_equals_uninterrupted_run_bit_for_bit(shards, tmp_path, spike_factor, precision):
    run = dict(steps=12, ckpt_every=6, eval_every=6, spike_factor=spike_factor, precision=precision)
    full = train_lm(tiny_config(), cfg(shards, tmp_path / "full", **run))

    def kill_at_9(step, record):
        if step == 9:
            raise KeyboardInterrupt  # as if the process died after the step-6 checkpoint

    with pytest.raises(KeyboardInterrupt):
        train_lm(tiny_config(), cfg(shards, tmp_path / "killed", **run), on_step=kill_at_9)
    assert [p.name for p in list_checkpoints(tmp_path / "killed" / "checkpoints")] == ["step_0000006"]
    resumed = train_lm(tiny_config(), cfg(shards, tmp_path / "killed", **run), resume=True)
    a = weights(full.out_dir / "checkpoints" / "step_0000012")
    b = weights(resumed.out_dir / "checkpoints" / "step_0000012")
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k}: max diff {(a[k] - b[k]).abs().max():.3e}"
    assert [h["train_loss"] for h in full.history] == [h["train_loss"] for h in resumed.history]
    assert resumed.skipped_steps == full.skipped_steps
    if spike_factor:
        assert full.skipped_steps > 0


def _fake_clock(monkeypatch) -> dict:
    """Each timed step of a run reads 1/8 minute more than the last (exact in binary), counted from the process's start."""
    import koforge.lm.train as train_mod

    clock = {"n": 0}

    def minutes(*since, device=None):
        clock["n"] += 1
        return [clock["n"] * 0.125, 0.0]

    monkeypatch.setattr(train_mod, "rank0_minutes", minutes)
    return clock


def test_time_boxed_run_resumed_keeps_its_schedule_and_the_rest_of_its_budget(shards, tmp_path, monkeypatch):
    """max_minutes is the run's budget and its cosine clock: a resume continues both where the checkpoint left
    them (it used to restart the clock, so the learning rate jumped back up and the whole budget ran again)."""
    clock = _fake_clock(monkeypatch)
    run = dict(steps=1000, max_minutes=1.5, ckpt_every=6, eval_every=0)
    full = train_lm(tiny_config(), cfg(shards, tmp_path / "full", **run))
    assert full.final_step == 12

    def kill_at_9(step, record):
        if step == 9:
            raise KeyboardInterrupt

    clock["n"] = 0
    with pytest.raises(KeyboardInterrupt):
        train_lm(tiny_config(), cfg(shards, tmp_path / "killed", **run), on_step=kill_at_9)
    clock["n"] = 0  # a new process: its own clock starts again
    resumed = train_lm(tiny_config(), cfg(shards, tmp_path / "killed", **run), resume=True)
    assert resumed.final_step == 12
    assert [h["lr"] for h in resumed.history] == [h["lr"] for h in full.history]
    a = weights(full.out_dir / "checkpoints" / "step_0000012")
    b = weights(resumed.out_dir / "checkpoints" / "step_0000012")
    assert all(torch.equal(a[k], b[k]) for k in a)
    clock["n"] = 0
    with pytest.raises(CheckpointError, match="1.5 of its max_minutes=1.5.*Raise max_minutes"):
        train_lm(tiny_config(), cfg(shards, tmp_path / "killed", **run), resume=True)


def test_existing_run_needs_resume_or_overwrite(shards, tmp_path):
    train_lm(tiny_config(), cfg(shards, tmp_path / "run", steps=4))
    with pytest.raises(OutputExistsError, match="--resume"):
        train_lm(tiny_config(), cfg(shards, tmp_path / "run", steps=4))
    with pytest.raises(CheckpointError, match="another model config.*d_model"):
        train_lm(tiny_config(d_model=48), cfg(shards, tmp_path / "run", steps=8), resume=True)
    with pytest.raises(CheckpointError, match="batch"):
        train_lm(tiny_config(), cfg(shards, tmp_path / "run", steps=8, batch=8), resume=True)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train_lm(tiny_config(), cfg(shards, tmp_path / "empty"), resume=True)


def test_resume_on_another_world_size_warns_and_continues(shards, tmp_path, caplog):
    import logging

    run = tmp_path / "run"
    train_lm(tiny_config(), cfg(shards, run, steps=4))
    meta_path = list_checkpoints(run / "checkpoints")[-1] / "meta.json"
    meta = json.loads(meta_path.read_text())
    assert meta["world_size"] == 1
    meta_path.write_text(json.dumps({**meta, "world_size": 2}))  # as if trained under torchrun --nproc_per_node 2
    with caplog.at_level(logging.WARNING, logger="koforge"):
        res = train_lm(tiny_config(), cfg(shards, run, steps=8), resume=True)
    assert "trained on 2 process(es) with 1" in caplog.text and res.history[-1]["step"] == 8
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="koforge"):
        train_lm(tiny_config(), cfg(shards, run, steps=12), resume=True)
    assert "process(es)" not in caplog.text  # the same world size: silent


def test_resume_on_other_shards_warns_that_the_batches_differ(shards, tmp_path, caplog):
    """The data position is a generator over the window starts: on re-packed shards it draws other windows."""
    import logging

    run = tmp_path / "run"
    train_lm(tiny_config(), cfg(shards, run, steps=4))
    with caplog.at_level(logging.WARNING, logger="koforge"):
        train_lm(tiny_config(), cfg(shards, run, steps=6), resume=True)
    assert "training data differs" not in caplog.text
    other = write_tiny_shards(tmp_path / "other", n_docs=120, seed=1)
    with caplog.at_level(logging.WARNING, logger="koforge"):
        res = train_lm(tiny_config(), cfg(other, run, steps=8), resume=True)
    assert "training data differs from the checkpoint's" in caplog.text and res.final_step == 8


def test_a_model_vocabulary_far_above_the_shards_is_warned_of(shards, tmp_path, caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="koforge"):
        train_lm(tiny_config(vocab_size=128), cfg(shards, tmp_path / "padded", steps=1))
    assert "never see a token" not in caplog.text  # the 64 ids rounded up to a multiple of 128: fine
    with caplog.at_level(logging.WARNING, logger="koforge"):
        train_lm(tiny_config(vocab_size=1000), cfg(shards, tmp_path / "wide", steps=1))
    assert "model.vocab_size=1000 but the shards use 64 ids: 936 embedding and output rows will never see a token" \
           in caplog.text and "Set model.vocab_size=64 (or up to 128" in caplog.text


@pytest.mark.parametrize("damage", ["truncate", "flip", "no_meta"])
def test_corrupted_checkpoint_is_refused_and_good_ones_kept(shards, tmp_path, damage):
    run = tmp_path / "run"
    train_lm(tiny_config(), cfg(shards, run, steps=8, keep_last=3))
    good, bad = list_checkpoints(run / "checkpoints")
    f = bad / "model.safetensors"
    data = f.read_bytes()
    if damage == "truncate":
        f.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        f.write_bytes(data[:-5] + bytes([data[-5] ^ 0xFF]) + data[-4:])
    else:
        (bad / "meta.json").unlink()
    with pytest.raises(CheckpointError, match="truncated|corrupted|incomplete"):
        train_lm(tiny_config(), cfg(shards, run, steps=12, keep_last=3), resume=True)
    with pytest.raises(CheckpointError):
        load_model(bad)
    verify_checkpoint(good)  # untouched
    res = train_lm(tiny_config(), cfg(shards, run, steps=12, keep_last=3, resume_from=str(good)), resume=True)
    assert res.final_step == 12 and good.exists()


def _nan_at(monkeypatch, call_numbers):
    original = KoLM.compute_loss
    calls = {"n": 0}

    def patched(self, x, y):
        out = original(self, x, y)
        calls["n"] += 1
        if self.training and calls["n"] in call_numbers:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(KoLM, "compute_loss", patched)


def test_nan_loss_is_skipped_and_never_checkpointed(shards, tmp_path, monkeypatch):
    _nan_at(monkeypatch, {3})
    res = train_lm(tiny_config(), cfg(shards, tmp_path / "run", eval_every=0))
    assert res.skipped_steps == 1 and res.final_step == 8
    for ckpt in list_checkpoints(res.out_dir / "checkpoints"):
        assert all(torch.isfinite(t).all() for t in weights(ckpt).values())


def test_nan_policy_stop_raises_and_keeps_last_good(shards, tmp_path, monkeypatch):
    _nan_at(monkeypatch, {6})
    with pytest.raises(TrainingError, match="non-finite.*step 6"):
        train_lm(tiny_config(), cfg(shards, tmp_path / "run", eval_every=0, nan_policy="stop"))
    assert [p.name for p in list_checkpoints(tmp_path / "run" / "checkpoints")] == ["step_0000004"]


@pytest.mark.filterwarnings("error::UserWarning")  # torch's scheduler-before-optimizer warning is expected here, and hidden
def test_fp16_loss_scale_overflow_is_skipped_not_stopped_on(shards, tmp_path, monkeypatch):
    """fp16's GradScaler starts high and halves its scale on each overflow (inf gradients of a finite loss): a
    normal skipped step, which nan_policy=stop used to take for a diverged run and stop on, at step 1."""
    import functools

    monkeypatch.setattr(torch.amp, "GradScaler", functools.partial(torch.amp.GradScaler, init_scale=2.0 ** 24))
    res = train_lm(tiny_config(), cfg(shards, tmp_path / "run", eval_every=0, precision="fp16", nan_policy="stop"))
    assert res.final_step == 8 and 0 < res.skipped_steps < 8
    assert all(math.isfinite(h["train_loss"]) for h in res.history)


def test_non_finite_weights_are_never_written(shards, tmp_path):
    def poison(step, record):
        if step == 7:
            with torch.no_grad():
                poison.model.lm_head.weight[0, 0] = float("inf")

    import koforge.lm.train as train_mod

    original = train_mod.KoLM

    class Spy(original):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            poison.model = self

    train_mod.KoLM = Spy
    try:
        with pytest.raises(TrainingError, match="no checkpoint was written"):
            train_lm(tiny_config(), cfg(shards, tmp_path / "run", eval_every=0), on_step=poison)
    finally:
        train_mod.KoLM = original
    assert [p.name for p in list_checkpoints(tmp_path / "run" / "checkpoints")] == ["step_0000004"]


def test_empty_or_missing_shard_folder_is_one_clear_error(tmp_path, shards):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="manifest.json"):
        train_lm(tiny_config(), cfg(tmp_path / "empty", tmp_path / "run"))
    with pytest.raises(ConfigError, match="vocab_size"):
        train_lm(tiny_config(vocab_size=32), cfg(shards, tmp_path / "run2"))
    with pytest.raises(DataError, match="seq_len"):
        train_lm(tiny_config(max_seq_len=8192), cfg(shards, tmp_path / "run3", seq_len=5000))
    with pytest.raises(ConfigError, match="data_dir"):
        TrainConfig(data_dir="")
    with pytest.raises(ConfigError, match="max_minutes must be > 0 \\(or null for no limit\\), got 0"):
        TrainConfig(data_dir="x", max_minutes=0)


def test_validation_split_of_a_data_split_folder_is_found(tmp_path):
    # `koforge data split` names it "validation"; a SPLIT=PATH pack usually "val": the trainer takes either.
    folder = write_tiny_shards(tmp_path / "v", n_docs=60, val_split="validation")
    res = train_lm(tiny_config(), cfg(folder, tmp_path / "run", steps=2, eval_every=2, ckpt_every=2))
    assert "val_bpb" in res.history[-1]
    with pytest.raises(DataError, match="has no validation split \\(looked for val or validation; splits: train\\)"):
        train_lm(tiny_config(), cfg(write_tiny_shards(tmp_path / "t", n_docs=60, val_split=None), tmp_path / "run2"))
    assert not (tmp_path / "run2").exists()


def test_moe_mtp_model_trains_with_bias_balancing(shards, tmp_path):
    mc = tiny_config(moe_experts=4, moe_top_k=2, moe_balancing="bias", mtp_heads=1)
    res = train_lm(mc, cfg(shards, tmp_path / "run", steps=4, eval_every=0, gradient_checkpointing=True))
    last = res.history[-1]
    assert last["train_loss"] == pytest.approx(last["train_lm_loss"] + mc.mtp_weight * last["mtp_loss"], rel=1e-5)
    # With accumulation the parts are averaged over the micro-batches like the loss (not the last one's).
    two = train_lm(mc, cfg(shards, tmp_path / "accum", steps=2, batch=2, grad_accum=2, eval_every=0)).history[-1]
    assert two["train_loss"] == pytest.approx(two["train_lm_loss"] + mc.mtp_weight * two["mtp_loss"], rel=1e-5)
    model, _, _ = load_model(res.checkpoint_dir)
    assert model.moe_layers()[0].expert_bias.abs().sum() > 0  # saved with the checkpoint
    assert model.mtp[0].block.mlp.expert_bias.abs().sum() > 0  # the MTP head's experts balance too
    # Expert usage at the validation: each expert's share per MoE layer (2 blocks, then the MTP head's).
    usage = res.history[-1]["expert_usage"]
    assert len(usage) == 3 and all(len(row) == 4 and sum(row) == pytest.approx(1.0, abs=1e-3) for row in usage)
    assert res.history[-1]["moe_max_load"] == pytest.approx(4 * max(max(row) for row in usage), abs=1e-3)


def test_seq_len_beyond_the_context_is_refused_up_front(shards, tmp_path):
    with pytest.raises(ConfigError, match=r"seq_len=32 exceeds LMConfig.max_seq_len=16.*<= 16.*>= 32"):
        train_lm(tiny_config(max_seq_len=16), cfg(shards, tmp_path / "run", seq_len=32))
    # MTP head k predicts k + 2 tokens ahead: windows of mtp_heads tokens or fewer leave a head without targets
    with pytest.raises(ConfigError, match=r"mtp_heads=4 needs training windows of more than 4 tokens"):
        train_lm(tiny_config(mtp_heads=4), cfg(shards, tmp_path / "run", seq_len=4))
    assert not (tmp_path / "run").exists()


def test_overwrite_checks_the_inputs_before_deleting_checkpoints(shards, tmp_path):
    run = tmp_path / "run"
    train_lm(tiny_config(), cfg(shards, run, steps=4))
    kept = list_checkpoints(run / "checkpoints")
    bad_inputs = [(tiny_config(), dict(data_dir=str(tmp_path / "no_shards"))), (tiny_config(max_seq_len=8), {}),
                  (tiny_config(vocab_size=32), {}), (tiny_config(), dict(tokenizer=str(tmp_path / "no_tokenizer"))),
                  (tiny_config(), dict(init_from=str(tmp_path / "no_model")))]
    for model_config, bad in bad_inputs:
        with pytest.raises(KoforgeError):
            train_lm(model_config, cfg(shards, run, steps=2, overwrite=True, **bad))
        assert list_checkpoints(run / "checkpoints") == kept, bad
    for ckpt in kept:
        verify_checkpoint(ckpt)
    train_lm(tiny_config(), cfg(shards, run, steps=2, overwrite=True))
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["step_0000002"]


def test_resume_from_implies_resume_and_contradicts_overwrite(shards, tmp_path):
    run = tmp_path / "run"
    train_lm(tiny_config(), cfg(shards, run, steps=4))
    ckpt = run / "checkpoints" / "step_0000004"
    res = train_lm(tiny_config(), cfg(shards, run, steps=6, resume_from=str(ckpt)))  # no resume=True
    assert res.final_step == 6 and [h["step"] for h in res.history][:2] == [1, 2]  # history of steps 1-4 kept
    with pytest.raises(ConfigError, match="contradicts"):
        train_lm(tiny_config(), cfg(shards, run, steps=8, resume_from=str(ckpt), overwrite=True))
    assert ckpt.exists()
    imported = save_checkpoint(tmp_path / "imported", 0, KoLM(tiny_config()), {},  # as `koforge lm import` writes it
                               {"model_config": tiny_config().to_dict(), "val_loss": None})
    with pytest.raises(CheckpointError, match=f"holds weights only.*--init-from {imported}"):
        train_lm(tiny_config(), cfg(shards, tmp_path / "run2", resume_from=str(imported)))


def test_pruning_clears_the_temporary_folders_of_a_killed_write(tmp_path):
    root = tmp_path / "checkpoints"
    for step in (2, 4):
        save_checkpoint(root, step, KoLM(tiny_config()), {}, {"val_loss": None})
    (root / ".step_0000006.tmp-x1y2").mkdir()  # a process killed while writing step 6 (atomic_dir's temp folder)
    (root / ".step_0000006.tmp-x1y2" / "model.safetensors").write_bytes(b"half")
    removed = prune_checkpoints(root, keep_last=1)
    assert sorted(p.name for p in removed) == [".step_0000006.tmp-x1y2", "step_0000002"]
    assert [p.name for p in root.iterdir()] == ["step_0000004"]


def test_init_from_an_exported_model_loads_weights_with_a_fresh_run(shards, tmp_path):
    torch.manual_seed(1)
    source = KoLM(tiny_config())
    export_model(source, tmp_path / "hf")
    # A learning rate too small to move the weights visibly: the run starts from the source's weights.
    res = train_lm(tiny_config(mtp_heads=1), cfg(shards, tmp_path / "run", steps=2, lr=1e-8,
                                                 init_from=str(tmp_path / "hf")))
    assert [h["step"] for h in res.history] == [1, 2]  # fresh schedule and data position
    got = weights(res.checkpoint_dir)
    want = source.state_dict()
    for k, v in want.items():
        assert (got[k] - v).abs().max() < 1e-5, k
    assert any(k.startswith("mtp.0.") for k in got)  # an MTP head the source lacks starts from the init
    # Continuing from that run's checkpoint (a koforge folder) works the same way.
    train_lm(tiny_config(), cfg(shards, tmp_path / "more", steps=1, init_from=str(tmp_path / "run")))
    with pytest.raises(ConfigError, match=r"another architecture \(d_model: 32 there vs 48 here.*model.d_model=32"):
        train_lm(tiny_config(d_model=48), cfg(shards, tmp_path / "run2", init_from=str(tmp_path / "hf")))
    # shards packed with a bigger tokenizer than the source's: the advice is to repack, not to raise vocab_size
    # (which init_from's architecture check would then refuse)
    small = KoLM(tiny_config(vocab_size=VOCAB // 2))
    export_model(small, tmp_path / "hf_small")
    with pytest.raises(ConfigError, match=rf"use a vocabulary of {VOCAB} ids, more than the {VOCAB // 2} of the model "
                                          r"to start from .*Pack the data with that model's tokenizer"):
        train_lm(tiny_config(vocab_size=VOCAB // 2), cfg(shards, tmp_path / "run3", init_from=str(tmp_path / "hf_small")))
    assert not (tmp_path / "run3").exists()


def _ddp_cfg(shards, out, steps, seq_len=16) -> TrainConfig:
    return TrainConfig(data_dir=str(shards), out_dir=str(out), steps=steps, batch=8, seq_len=seq_len, lr=3e-3, warmup=2,
                       eval_every=0, ckpt_every=0, device="cpu", log_every=1)


# 16 tokens per rank over 8 top-1 experts: some experts get no token on a rank (DDP must find them unused), and
# biases moved by one rank's load alone would route differently from the 1-process run.
MOE_DDP = dict(moe_experts=16, moe_top_k=2, moe_balancing="bias", moe_bias_rate=0.05)


def assert_same_run(single, two_history: list[dict], tmp_path, steps: int) -> None:
    """The 2-process run (under tmp_path/two) has the 1-process run's losses, validation and final weights."""
    one, two = [h["train_loss"] for h in single.history], [h["train_loss"] for h in two_history]
    assert len(one) == len(two) == steps
    assert max(abs(a - b) for a, b in zip(one, two)) < 1e-5, (one, two)
    if "val_loss" in two_history[-1]:  # the same validation windows (the torchrun script reports losses only)
        assert abs(single.history[-1]["val_loss"] - two_history[-1]["val_loss"]) < 1e-6
    a = weights(tmp_path / "one" / "checkpoints" / f"step_{steps:07d}")
    b = weights(tmp_path / "two" / "checkpoints" / f"step_{steps:07d}")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


def _ddp_child(rank: int, port: int, shards, out, steps, queue, model_kw: dict, seq_len: int) -> None:
    # The same env:// rendezvous torchrun sets up, without re-importing torch in fresh interpreters.
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    result = train_lm(tiny_config(**model_kw), _ddp_cfg(shards, out, steps, seq_len))
    if rank == 0:
        queue.put(result.history)
    torch.distributed.destroy_process_group()


@pytest.mark.parametrize("model_kw,seq_len", [({}, 16), (dict(mtp_heads=2), 16), (MOE_DDP, 4)],
                         ids=["dense", "dense_mtp", "moe_bias_balancing"])
def test_ddp_two_gloo_processes_match_one_process(shards, tmp_path, model_kw, seq_len):
    """2 forked ranks on gloo (env:// like torchrun) vs 1 process on the same global batch (weights include
    the MoE router biases, updated from the expert load summed over ranks)."""
    import multiprocessing as mp

    steps = 4
    single = train_lm(tiny_config(**model_kw), _ddp_cfg(shards, tmp_path / "one", steps, seq_len))
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_ddp_child, args=(r, port, shards, tmp_path / "two", steps, queue, model_kw, seq_len))
             for r in range(2)]
    for p in procs:
        p.start()
    two = queue.get(timeout=120)
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert_same_run(single, two, tmp_path, steps)


def _skewed_clock_child(rank: int, port: int, shards, out, queue) -> None:
    import time as time_mod

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if rank == 1:  # this rank's clock runs 100,000x fast: by its own clock the 60-minute budget ends at step 1
        real, t0 = time_mod.monotonic, time_mod.monotonic()
        time_mod.monotonic = lambda: real() + (real() - t0) * 1e5
    cfg = _ddp_cfg(shards, out, 4)
    cfg.max_minutes, cfg.eval_every_minutes = 60.0, 30.0
    history = train_lm(tiny_config(), cfg).history
    queue.put((rank, [h["step"] for h in history], [h["step"] for h in history if "val_loss" in h]))
    torch.distributed.destroy_process_group()


def test_ddp_time_budget_and_timed_validation_follow_rank_0s_clock(shards, tmp_path):
    """Each rank deciding from its own clock let one stop or validate alone, and the other hung in its collective."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    queue, port = ctx.Queue(), free_port()
    procs = [ctx.Process(target=_skewed_clock_child, args=(r, port, shards, tmp_path / "two", queue)) for r in range(2)]
    for p in procs:
        p.start()
    try:
        results = sorted(queue.get(timeout=120) for _ in procs)
    finally:
        for p in procs:
            p.join(30)
            p.kill() if p.is_alive() else None
    assert results == [(0, [1, 2, 3, 4], [4]), (1, [1, 2, 3, 4], [4])]
    assert [p.exitcode for p in procs] == [0, 0]


def test_ddp_through_torchrun_matches_one_process(shards, tmp_path):
    """The real launcher: `torchrun --nproc_per_node=2` (slow: three fresh interpreters import torch)."""
    steps = 4
    single = train_lm(tiny_config(), TrainConfig(data_dir=str(shards), out_dir=str(tmp_path / "one"), steps=steps,
                                                 batch=8, seq_len=16, lr=3e-3, warmup=2, eval_every=0, ckpt_every=0,
                                                 device="cpu", log_every=1))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KOFORGE_MLFLOW": "off"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
           str(ASSETS / "lm_ddp_train.py"), str(shards), str(tmp_path / "two"), str(steps)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "losses.json").read_text())
    assert_same_run(single, [{"train_loss": x} for x in two], tmp_path, steps)


def test_early_stopping_on_validation_loss(shards, tmp_path, monkeypatch):
    import koforge.lm.train as train_mod

    losses = iter([3.0, 2.5, 2.6, 2.7, 2.8, 2.9])
    monkeypatch.setattr(train_mod, "evaluate", lambda *a, **k: {"val_loss": next(losses), "val_ppl": 1.0, "val_bpb": 1.0})
    res = train_lm(tiny_config(), cfg(shards, tmp_path / "run", steps=12, eval_every=2, ckpt_every=0, early_stop_patience=2))
    assert res.stopped_early and res.final_step == 8  # best at step 4, no better at 6 and 8
    # Each new best is checkpointed though ckpt_every=0 (steps 2 and 4; keep_last=2 then pruned step 2), so the
    # run hands back the best model, not the last.
    assert [p.name for p in list_checkpoints(tmp_path / "run" / "checkpoints")] == ["step_0000004", "step_0000008"]
    assert res.checkpoint_dir.name == "step_0000004"
    assert json.loads((res.checkpoint_dir / "meta.json").read_text())["val_loss"] == 2.5


def test_bits_per_byte_leaves_out_the_eos_targets(shards):
    """val_loss counts every target; val_bpb only text targets, over text bytes (the toy corpus: 3 per token)."""
    from lm_helpers import EOS

    from koforge.lm.data import TokenWindows, tokens_per_byte
    from koforge.lm.validation import evaluate

    torch.manual_seed(0)
    model = KoLM(tiny_config()).eval()
    val = TokenWindows(str(shards), "val", 16, 0)
    batches = val.fixed_batches(3, 4)
    assert tokens_per_byte(val.manifest, "val") == pytest.approx(1 / 3)
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    assert (y == EOS).any() and (y != EOS).any()
    with torch.no_grad():
        nll = torch.nn.functional.cross_entropy(model(x).double().flatten(0, 1), y.flatten(), reduction="none")
    text = (y != EOS).flatten()
    got = evaluate(model, batches, torch.device("cpu"), None, 1 / 3, EOS)
    assert got["val_loss"] == pytest.approx(nll.mean().item(), rel=1e-5)
    assert got["val_bpb"] == pytest.approx(nll[text].mean().item() / torch.log(torch.tensor(2.0)).item() / 3, rel=1e-5)
    assert got["val_bpb"] < nll.mean().item() / 0.6931 / 3  # EOS is the hardest target of this toy corpus


def test_a_damaged_best_checkpoint_of_a_run_names_the_good_ones_beside_it(shards, tmp_path):
    from koforge.lm.load import open_model, read_model_config

    res = train_lm(tiny_config(), cfg(shards, tmp_path / "run", steps=8, eval_every=4, ckpt_every=4, keep_last=2))
    ckpts = list_checkpoints(res.out_dir / "checkpoints")
    assert [p.name for p in ckpts] == ["step_0000004", "step_0000008"]
    best = res.out_dir / "checkpoints" / "step_0000008"  # the loss falls: the last is the best
    weights = best / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)  # same size, other bytes
    for load in (open_model, read_model_config):
        with pytest.raises(CheckpointError, match="step_0000008.*corrupted.*Complete checkpoints beside it: "
                                                  "step_0000004; pass one"):
            load(res.out_dir)
    with pytest.raises(CheckpointError, match="corrupted") as err:  # named explicitly: the plain message
        open_model(best)
    assert "beside it" not in str(err.value)
    model, _, _ = open_model(ckpts[0])  # the good one still opens
    (ckpts[0] / "meta.json").unlink()
    with pytest.raises(CheckpointError, match="No other complete checkpoint"):
        open_model(res.out_dir)


def test_a_state_file_torch_cannot_read_is_one_checkpoint_error(tmp_path):
    """A state.pt whose checksum matches but which torch refuses (written so, or by a torch that reads it
    otherwise) ended `lm train --resume` in PytorchStreamReader's RuntimeError."""
    from koforge.lm.checkpoint import read_state

    ckpt = tmp_path / "step_0000004"
    ckpt.mkdir()
    (ckpt / "state.pt").write_bytes(b"not a zip archive")
    with pytest.raises(CheckpointError, match=r"state.pt cannot be read.*train.resume_from"):
        read_state(ckpt)


def test_a_checkpoint_with_an_unreadable_meta_is_warned_of_when_picking_the_best(tmp_path, caplog):
    import logging

    from koforge.lm.checkpoint import resolve_checkpoint

    root = tmp_path / "run" / "checkpoints"
    for step, meta in ((2, '{"val_loss": 3.0}'), (4, "{broken")):
        (root / f"step_{step:07d}").mkdir(parents=True)
        (root / f"step_{step:07d}" / "meta.json").write_text(meta, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="koforge"):
        picked = resolve_checkpoint(tmp_path / "run")
    assert picked.name == "step_0000002" and "step_0000004" in caplog.text and "no readable meta.json" in caplog.text

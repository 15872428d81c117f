"""koforge demo: step selection, presets, and a step whose area is missing being skipped, not fatal."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from koforge._utils.errors import ConfigError
from koforge.demo import STEPS, demo_config, run_demo
from koforge.demo.config import QUICK
from koforge.demo.pipeline import StepResult, StepUnavailable, require_area


def test_step_selection_keeps_pipeline_order_and_refuses_unknown_names():
    assert demo_config().steps == list(STEPS)
    assert demo_config(steps=["compress", "tokenizer"]).steps == ["tokenizer", "compress"]
    assert demo_config(skip=["embed", "expand"]).steps == ["tokenizer", "lm", "compress"]
    q = demo_config(quick=True, lm_minutes=0.1)
    assert q.vocab_size == QUICK["vocab_size"] and q.lm_minutes == 0.1
    with pytest.raises(ConfigError, match="unknown demo step 'embedding'"):
        demo_config(steps=["embedding"])
    with pytest.raises(ConfigError, match="no demo step left"):
        demo_config(steps=["lm"], skip=["lm"])
    with pytest.raises(ConfigError, match="unknown demo setting"):
        demo_config(lm_hours=3)
    with pytest.raises(ConfigError, match="20,000 reviews"):
        demo_config(tokenizer_docs=19900, heldout_docs=500)
    with pytest.raises(ConfigError, match="lm_minutes must be > 0, got -1"):  # ran one step and said ok
        demo_config(lm_minutes=-1)
    with pytest.raises(ConfigError, match="embed_minutes must be > 0, got 0"):
        demo_config(embed_minutes=0)
    for name in ("korsts_eval_pairs", "sts_pairs", "max_new_tokens"):  # -1 kept only the header of the KorSTS file
        with pytest.raises(ConfigError, match=f"{name} must be >= 1 or null"):
            demo_config(**{name: -1})
        with pytest.raises(ConfigError, match=f"{name} must be >= 1 or null"):
            demo_config(**{name: 0})
        assert getattr(demo_config(**{name: None}), name) is None


def test_missing_area_is_skipped_and_others_still_run(tmp_path, monkeypatch):
    import koforge.demo.tokenizer_step as tok_step

    with pytest.raises(StepUnavailable, match="not available"):
        require_area("koforge.no_such_area")

    def fake_run(ctx):
        raise StepUnavailable("not available (koforge.tokenizers is not part of this installation)")

    monkeypatch.setattr(tok_step, "run", fake_run)
    import koforge.demo.lm_step as lm_step

    monkeypatch.setattr(lm_step, "run", lambda ctx: StepResult(name="lm", headline="fake", metrics={"perplexity": 9.5}))
    seen = []
    demo = run_demo(demo_config(steps=["tokenizer", "lm"]), tmp_path / "demo", report=True, on_step=seen.append)
    assert [s.status for s in demo.steps] == ["skipped: not available (koforge.tokenizers is not part of this installation)", "ok"]
    assert [s.name for s in seen] == ["tokenizer", "lm"]
    summary = (tmp_path / "demo" / "demo_summary.json").read_text(encoding="utf-8")
    assert "skipped: not available" in summary
    assert "skipped: not available" in demo.report.read_text(encoding="utf-8")


def test_demo_cli_bad_step():
    from koforge.cli.main import app

    res = CliRunner().invoke(app, ["demo", "--steps", "tokenizer,lmm"])
    assert res.exit_code == 1 and "unknown demo step 'lmm'" in res.output and "Traceback" not in res.output
    for empty in ("", ","):  # named no step: refused, not read as "all of them"
        res = CliRunner().invoke(app, ["demo", "--steps", empty])
        assert res.exit_code == 1 and "--steps names no step" in res.output and "Traceback" not in res.output


def _fake_steps(monkeypatch, lm_run):
    """The tokenizer step writes a marker into its folder; the LM step is `lm_run`."""
    import koforge.demo.lm_step as lm_step
    import koforge.demo.tokenizer_step as tok_step

    def tok_run(ctx):
        (ctx.folder("tokenizer") / "made.txt").write_text(str(ctx.config.vocab_size))
        return StepResult(name="tokenizer", headline="fake")

    monkeypatch.setattr(tok_step, "run", tok_run)
    monkeypatch.setattr(lm_step, "run", lm_run)


def test_rerun_replaces_step_folders_and_never_reports_stale_results(tmp_path, monkeypatch):
    def lm_ok(ctx):
        (ctx.folder("lm") / "result.txt").write_text("old")
        return StepResult(name="lm", headline="fake")

    def lm_fails(ctx):
        (ctx.folder("lm") / "half.txt").write_text("half")
        raise ConfigError("broken")

    out = tmp_path / "demo"
    _fake_steps(monkeypatch, lm_ok)
    run_demo(demo_config(steps=["tokenizer", "lm"], vocab_size=1024), out, report=False)
    _fake_steps(monkeypatch, lm_fails)
    demo = run_demo(demo_config(steps=["lm"], vocab_size=1024), out, report=False)
    assert demo.steps[0].status == "failed: broken"
    assert not (out / "lm").exists()  # neither the old result nor the failed run's half output
    assert (out / "tokenizer" / "made.txt").read_text() == "1024"  # same settings: other steps' outputs kept
    events = []
    run_demo(demo_config(steps=["lm"], vocab_size=2048), out, report=False, on_event=events.append)
    assert any("settings changed" in e and "vocab_size" in e for e in events)
    assert not (out / "tokenizer").exists()  # made with other settings: not reused


def test_demo_refuses_a_foreign_folder_and_bad_head_counts(tmp_path):
    (tmp_path / "proj" / "report").mkdir(parents=True)
    (tmp_path / "proj" / "report" / "notes.md").write_text("mine")
    with pytest.raises(ConfigError, match="holds no demo"):
        run_demo(demo_config(steps=["tokenizer"]), tmp_path / "proj")
    assert (tmp_path / "proj" / "report" / "notes.md").read_text() == "mine"
    with pytest.raises(ConfigError, match="lm_d_model must divide by lm_heads"):
        demo_config(lm_heads=5)


def test_ctrl_c_keeps_finished_steps_and_removes_the_interrupted_one(tmp_path, monkeypatch):
    from koforge.demo.pipeline import DemoInterrupted

    def lm_interrupted(ctx):
        (ctx.folder("lm") / "half.txt").write_text("half")
        raise KeyboardInterrupt

    def lm_ok(ctx):
        (ctx.folder("lm") / "eval_result.json").write_text('{"perplexity": 123.0}')
        return StepResult(name="lm", headline="perplexity 123.0")

    _fake_steps(monkeypatch, lm_ok)
    run_demo(demo_config(steps=["tokenizer", "lm"]), tmp_path / "demo")
    assert "123.0" in (tmp_path / "demo" / "report" / "report.md").read_text(encoding="utf-8")
    _fake_steps(monkeypatch, lm_interrupted)
    with pytest.raises(DemoInterrupted) as caught:
        run_demo(demo_config(steps=["tokenizer", "lm"]), tmp_path / "demo")
    assert (caught.value.step, caught.value.finished) == ("lm", ["tokenizer"])
    assert (tmp_path / "demo" / "tokenizer" / "made.txt").exists() and not (tmp_path / "demo" / "lm").exists()
    # the last report and summary showed the removed LM's results
    assert not (tmp_path / "demo" / "report").exists() and not (tmp_path / "demo" / "demo_summary.json").exists()


def test_tokenizer_report_figure_is_the_one_the_step_prints(tmp_path):
    """The report's summary row showed the mean of two text sets' chars/token (1.44) under the headline's 1.51."""
    from koforge.eval.schema import read_result

    demo = run_demo(demo_config(quick=True, steps=["tokenizer"]), tmp_path / "demo", report=False)
    assert demo.steps[0].status == "ok", demo.steps[0].status
    result = read_result(tmp_path / "demo" / "tokenizer" / "eval_tokenizer.json")
    shown = f"{result.metrics[result.primary_metric]:.2f} chars/token on held-out reviews"
    assert shown in demo.steps[0].headline, (shown, demo.steps[0].headline)

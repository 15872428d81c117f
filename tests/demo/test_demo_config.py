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

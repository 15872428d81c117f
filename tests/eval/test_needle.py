"""Needle in a haystack: prompts of exact length with the needle where asked; scoring; the task end to end."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "compress"))
from compress_models import make_model, tokenizer  # noqa: E402

from koforge._utils.errors import ConfigError, DataError
from koforge.eval.needle import NEEDLE, Haystack, evaluate_needle, found
from koforge.eval.runner import EvalConfig, run_eval

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def haystack(assets):
    return Haystack(tokenizer(), (assets / "compress_ko.txt").read_text(encoding="utf-8").splitlines())


def _number(tok, prompt) -> str:
    """What a model that reads perfectly would answer: the number of the needle sentence in the prompt."""
    return re.search(r"숫자는 (\d{7})입니다", tok.decode(prompt.input_ids)).group(1)


def test_prompts_have_the_exact_length_and_the_needle_at_the_depth_asked(haystack):
    tok = haystack.tokenizer
    needle = tok(NEEDLE.format(number="1234567"), add_special_tokens=False)["input_ids"]
    longest = max(len(s) for s in haystack.sentences)
    for length in (200, 301, 480):
        budget = length - haystack.overhead("1234567")
        for depth in (0.0, 0.5, 1.0):
            prompt = haystack.prompt(length, depth, "1234567", first_sentence=7)
            ids = prompt.input_ids
            assert len(ids) == length and ids[:len(haystack.head)] == haystack.head
            assert ids[prompt.needle_start:prompt.needle_start + len(needle)] == needle
            assert ids[-len(haystack.question):] == haystack.question
            assert tok.decode(ids).count("1234567") == 1
            offset = prompt.needle_start - len(haystack.head)  # haystack tokens before the needle
            assert abs(offset - depth * budget) <= longest / 2 + 1
        assert haystack.prompt(length, 0.0, "1234567", 7).needle_start == len(haystack.head)
        end = haystack.prompt(length, 1.0, "1234567", 7)
        assert end.needle_start + len(needle) + len(haystack.question) == length


def test_scores_follow_what_the_model_answers(haystack, assets):
    tok = haystack.tokenizer
    kw = dict(lengths=[220, 300], depths=[0.0, 0.5, 1.0], trials=3, seed=4)
    seen = []

    def perfect(prompt):
        seen.append(prompt.input_ids)
        return f"{_number(tok, prompt)}입니다."

    texts = (assets / "compress_ko.txt").read_text(encoding="utf-8").splitlines()
    res = evaluate_needle(None, tok, texts, generate=perfect, **kw)
    assert res["accuracy"] == 1.0 and len(res["cells"]) == 6 and all(c["found"] == 3 for c in res["cells"])
    first = list(seen)
    seen.clear()
    evaluate_needle(None, tok, texts, generate=perfect, **kw)
    assert seen == first  # seeded: the same call builds the same prompts
    assert evaluate_needle(None, tok, texts, generate=lambda p: "모르겠습니다", **kw)["accuracy"] == 0.0

    def reads_the_first_half(prompt):  # finds the needle only in the first half of the prompt
        return _number(tok, prompt) if prompt.needle_start < len(prompt.input_ids) / 2 else "1"

    half = evaluate_needle(None, tok, texts, generate=reads_the_first_half, **kw)
    assert half["accuracy@depth0"] == 1.0 and half["accuracy@depth1"] == 0.0
    for length, cells in ((220, half["cells"][:3]), (300, half["cells"][3:])):
        assert [c["length"] for c in cells] == [length] * 3
        assert half[f"accuracy@{length}"] == pytest.approx(sum(c["found"] for c in cells) / 9)
    assert half["accuracy"] == pytest.approx(sum(c["found"] for c in half["cells"]) / 18)
    assert found("1234567", "1,234,567 입니다") and found("1234567", "12345 67") and not found("1234567", "123456")


def test_needle_task_writes_a_result_and_a_heatmap(tmp_path):
    folder = make_model("llama", tmp_path / "llama", layers=2)
    cfg = EvalConfig(task="needle", model=str(folder), lengths=[200, 260], depths=[0.0, 1.0], trials=1, new_tokens=3,
                     device="cpu")
    result, path = run_eval(cfg, tmp_path / "out")
    assert result.primary_metric == "accuracy" and 0.0 <= result.metrics["accuracy"] <= 1.0
    assert set(result.metrics) == {"accuracy", "accuracy@200", "accuracy@260", "accuracy@depth0", "accuracy@depth1"}
    assert result.settings["trials"] == 1 and result.settings["new_tokens"] == 3 and result.settings["lengths"] == [200, 260]
    assert [(c["length"], c["depth"]) for c in result.tables["cells"]] == [(200, 0.0), (200, 1.0), (260, 0.0), (260, 1.0)]
    assert result.plots == ["needle.png"] and (tmp_path / "out" / "needle.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads(path.read_text())["task"] == "needle"


def test_needle_bad_inputs_are_clear_errors(tmp_path, haystack, assets):
    tok = haystack.tokenizer
    with pytest.raises(ConfigError, match=r"needle length 150 leaves -17 haystack tokens .* use lengths >= 183"):
        haystack.prompt(150, 0.5, "1234567", 0)
    with pytest.raises(DataError, match="no haystack text"):
        Haystack(tok, ["  ", ""])
    with pytest.raises(ConfigError, match=r"depths must be fractions in \[0, 1\]"):
        EvalConfig(task="needle", model="m", depths=[1.5])
    folder = make_model("llama", tmp_path / "llama", layers=1)  # max_position_embeddings 512
    with pytest.raises(ConfigError, match=r"needle length 1024 plus 12 answer tokens exceeds the model's context of 512 "
                                          r"tokens; use lengths <= 500"):
        run_eval(EvalConfig(task="needle", model=str(folder), lengths=[1024], device="cpu"))
    # A length too short for the prompt's fixed parts: refused before the grid's first cell is generated.
    from koforge.eval.needle import evaluate_needle

    calls = []
    with pytest.raises(ConfigError, match=r"needle length 150 is too short for this tokenizer: .* use lengths >= 183"):
        evaluate_needle(None, tok, (assets / "compress_ko.txt").read_text(encoding="utf-8").splitlines(),
                        lengths=[150, 400], generate=lambda p: calls.append(p) or "")
    assert calls == []


def test_needle_cli(tmp_path):
    from typer.testing import CliRunner

    from koforge.cli.main import app

    folder = make_model("llama", tmp_path / "llama", layers=1)
    res = CliRunner().invoke(app, ["eval", "needle", str(folder), "--length", "200", "--depth", "0.5", "--trials", "1",
                                   "--new-tokens", "2", "--device", "cpu", "-o", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out" / "eval_needle.json").exists() and (tmp_path / "out" / "needle.png").exists()

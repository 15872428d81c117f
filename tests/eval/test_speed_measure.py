"""Speed measurement: cached greedy decoding equals recomputation; the figures are consistent."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "compress"))
from compress_models import make_model  # noqa: E402

from koforge._utils.errors import DataError
from koforge.compress.layout import load_model
from koforge.eval.speed import greedy_decode, measure_speed


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def exaone(tmp_path_factory):
    return load_model(make_model("exaone4", tmp_path_factory.mktemp("spd") / "m", seed=1, layers=2))


def test_cached_greedy_equals_recompute_past_the_sliding_window(exaone):
    model, tok = exaone  # sliding_window=16: 30 tokens cross it
    ids = tok("대한민국의 수도는", return_tensors="pt")["input_ids"]
    cached, first, total = greedy_decode(model, ids, 30)
    seq = ids
    with torch.inference_mode():
        for _ in range(30):
            seq = torch.cat([seq, model(input_ids=seq).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(cached, seq[:, ids.shape[1]:])
    assert 0 < first <= total


def test_measure_speed_reports_medians_of_repeats(exaone):
    model, tok = exaone
    res = measure_speed(model, tok, ["안녕하세요", "오늘은"], new_tokens=5, warmup=0, repeats=3, threads=1)
    assert len(res["time_per_token_ms_runs"]) == 3
    assert res["time_per_token_ms"] == sorted(res["time_per_token_ms_runs"])[1]
    assert res["tokens_per_sec"] > 0 and res["time_to_first_token_ms"] > 0
    assert (res["new_tokens"], res["prompts"], res["threads"]) == (5, 2, 1)
    assert torch.get_num_threads() != 0


def test_bad_arguments_are_clear(exaone):
    model, tok = exaone
    with pytest.raises(DataError, match="no prompts"):
        measure_speed(model, tok, [], new_tokens=4)
    with pytest.raises(DataError, match="new_tokens >= 2"):
        measure_speed(model, tok, ["가"], new_tokens=1)


def test_timing_waits_for_an_mps_device(monkeypatch):
    """On Apple GPUs (`device=auto` picks mps) kernels run asynchronously like on CUDA: without a synchronize
    the clock stopped when the work was queued, not done."""
    from koforge.eval import speed

    calls = []
    monkeypatch.setattr(torch.mps, "synchronize", lambda: calls.append("mps"))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(f"cuda:{device}"))
    speed._sync(torch.device("mps"))
    speed._sync(torch.device("cuda", 1))
    speed._sync(torch.device("cpu"))
    assert calls == ["mps", "cuda:cuda:1"]

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


def test_a_prompt_and_new_tokens_past_the_position_table_is_one_message(exaone):
    """GPT-2's learned position table has no row past n_positions: decoding there ended in torch's bare
    `IndexError: index out of range in self`, after loading the model and warming it up."""
    from transformers import GPT2Config, GPT2LMHeadModel

    _, tok = exaone
    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=16, n_embd=32, n_layer=1, n_head=2,
                                      bos_token_id=0, eos_token_id=0)).eval()
    prompt = "대한민국의 수도는"
    n = len(tok(prompt, add_special_tokens=True)["input_ids"])
    with pytest.raises(DataError, match=rf"{n} tokens.*new_tokens={16 - n + 2}.*16 positions"):
        measure_speed(gpt2, tok, [prompt], new_tokens=16 - n + 2, warmup=0, repeats=1)
    res = measure_speed(gpt2, tok, [prompt], new_tokens=16 - n, warmup=0, repeats=1)  # exactly fills the table
    assert res["new_tokens"] == 16 - n

"""Self-speculative decoding with MTP heads: the main model's greedy tokens, fewer main-model passes."""
from __future__ import annotations

import pytest
import torch
from lm_helpers import VOCAB, tiny_config

from koforge._utils.errors import ConfigError
from koforge.lm.engine import GenerationConfig, GenerationEngine
from koforge.lm.model import KoLM
from koforge.lm.speculative import speculative_generate

PROMPTS = [[5, 6, 7], [40, 41, 42, 43, 44, 45], [12]]


def _greedy(model, prompt, n, **kw):
    return GenerationEngine(model, max_batch=1, decoding_kernels=False).generate([prompt], GenerationConfig(max_new_tokens=n, **kw))[0]


@pytest.fixture(scope="module")
def counting_model():
    """Two MTP heads trained on counting sequences (token t+1 = token t + 1): drafts should land."""
    torch.manual_seed(0)
    model = KoLM(tiny_config(mtp_heads=2, mtp_weight=1.0))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        start = torch.randint(1, VOCAB, (16, 1), generator=g)
        seq = 1 + (start + torch.arange(33)) % (VOCAB - 1)
        loss = model.compute_loss(seq[:, :-1], seq[:, 1:]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_trained_heads_draft_the_greedy_tokens_in_fewer_passes(counting_model):
    for prompt in PROMPTS:
        ref = _greedy(counting_model, prompt, 24)
        got = speculative_generate(counting_model, prompt, 24)
        assert got.tokens == ref.tokens and got.finish_reason == ref.finish_reason == "length"
        assert got.acceptance > 0.9 and got.rounds <= 9, (got.acceptance, got.rounds)  # ~3 tokens per pass, not 1


@pytest.mark.parametrize("seed", [0, 1])
def test_untrained_heads_still_give_exactly_the_greedy_tokens(seed):
    torch.manual_seed(seed)
    model = KoLM(tiny_config(mtp_heads=3, n_kv_heads=1)).eval()
    for prompt in PROMPTS:
        ref = _greedy(model, prompt, 30)
        got = speculative_generate(model, prompt, 30)
        assert got.tokens == ref.tokens and got.finish_reason == ref.finish_reason
        assert got.rounds + 1 >= len(got.tokens) - got.accepted  # every token came from a pass or a kept draft


def test_stops_and_context_end_as_greedy_does(counting_model):
    free = _greedy(counting_model, PROMPTS[0], 20).tokens
    stop = free[6]
    ref = _greedy(counting_model, PROMPTS[0], 20, stop_tokens=[stop])
    got = speculative_generate(counting_model, PROMPTS[0], 20, stop_tokens=[stop])
    assert got.tokens == ref.tokens == free[:6] and got.finish_reason == "stop"
    long_prompt = list(range(1, 58))  # 57 of the 64 positions: the context ends the run
    ref = _greedy(counting_model, long_prompt, 20)
    got = speculative_generate(counting_model, long_prompt, 20)
    assert got.tokens == ref.tokens and got.finish_reason == ref.finish_reason == "context"


def test_a_model_without_heads_or_with_a_bad_prompt_is_a_clear_error():
    with pytest.raises(ConfigError, match="mtp_heads=0"):
        speculative_generate(KoLM(tiny_config()), [1, 2], 4)
    model = KoLM(tiny_config(mtp_heads=1))
    with pytest.raises(ConfigError, match="prompt 0 has 64 tokens but the context holds 64.*truncate"):
        speculative_generate(model, list(range(1, 65)), 4)
    with pytest.raises(ConfigError, match="prompt is empty"):
        speculative_generate(model, [], 4)
    for bad in ([VOCAB], [-1], [1.5]):  # were a bare IndexError / dtype error from the embedding
        with pytest.raises(ConfigError, match=r"not token ids in \[0, 64\)"):
            speculative_generate(model, bad, 4)


def test_a_long_prompt_is_cut_from_the_left_as_the_engine_cuts_it(counting_model):
    long_prompt = [1 + i % 63 for i in range(80)]
    got = speculative_generate(counting_model, long_prompt, 10, truncate="left")
    assert got.tokens == _greedy(counting_model, long_prompt[-54:], 10).tokens  # 64 - 10 kept

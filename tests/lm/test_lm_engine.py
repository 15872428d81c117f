"""The KV-cache engine against the model's naive generate; sampling, stops, context; int8; ONNX."""
from __future__ import annotations

import pytest
import torch
from lm_helpers import tiny_config

from koforge._utils.errors import ConfigError
from koforge.lm.deploy import check_onnx, export_onnx, quantize_int8
from koforge.lm.engine import GenerationConfig, GenerationEngine
from koforge.lm.model import KoLM
from koforge.lm.sampling import SamplingConfig, filter_logits


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return KoLM(tiny_config()).eval()


@pytest.fixture(scope="module")
def prompts():
    g = torch.Generator().manual_seed(1)
    return [torch.randint(1, 64, (n,), generator=g).tolist() for n in (5, 11, 3)]


SAMPLINGS = [dict(), dict(temperature=0.9, top_k=20, top_p=0.9, repetition_penalty=1.3)]


@pytest.mark.parametrize("sampling", SAMPLINGS, ids=["greedy", "sampled"])
def test_engine_matches_naive_recompute_token_for_token(model, prompts, sampling):
    engine = GenerationEngine(model, max_batch=4)
    cfg = GenerationConfig(max_new_tokens=20, seed=7, **sampling)
    for p in prompts:
        naive = model.generate(torch.tensor([p]), 20, SamplingConfig(**sampling), seed=7)[0, len(p):].tolist()
        got = engine.generate([p], cfg)[0]
        assert got.tokens == naive, f"first mismatch at {next(i for i, (a, b) in enumerate(zip(got.tokens, naive)) if a != b)}"
        assert got.finish_reason == "length"


def test_left_padded_batch_equals_each_prompt_alone(model, prompts):
    engine = GenerationEngine(model, max_batch=4)
    cfg = GenerationConfig(max_new_tokens=16)
    batched = engine.generate(prompts, cfg)
    for p, b in zip(prompts, batched):
        assert b.tokens == engine.generate([p], cfg)[0].tokens


def _near_context_prompts() -> list[list[int]]:
    """Prompts for the 64-token context: a short one batched with ones 4, 12 and 24 tokens short of the end."""
    g = torch.Generator().manual_seed(3)
    prompts = [torch.randint(1, 64, (n,), generator=g).tolist() for n in (5, 60, 40, 52)]
    prompts[0][1] = 0  # a real id 0, the id the batch pads with (the repetition penalty must see it)
    return prompts


@pytest.mark.parametrize("penalty", [1.0, 1.5])
def test_each_row_of_a_batch_gets_its_own_length_and_finish_reason(model, penalty):
    """Rows share the cache's time axis; a short prompt beside a long one is not cut short by the long one's context."""
    engine = GenerationEngine(model, max_batch=4)
    cfg = GenerationConfig(max_new_tokens=20, repetition_penalty=penalty)
    prompts = _near_context_prompts()
    alone = [engine.generate([p], cfg)[0] for p in prompts]
    assert [(len(a.tokens), a.finish_reason) for a in alone] == [(20, "length"), (4, "context"), (20, "length"),
                                                                  (12, "context")]
    batched = engine.generate(prompts, cfg)
    for i, (b, a) in enumerate(zip(batched, alone)):
        assert (b.tokens, b.finish_reason) == (a.tokens, a.finish_reason), f"row {i}"


def test_streaming_yields_the_generated_tokens(model, prompts):
    engine = GenerationEngine(model, max_batch=2)
    steps = list(engine.stream(prompts[:2], GenerationConfig(max_new_tokens=6)))
    assert len(steps) == 6
    assert [s[0] for s in steps] == engine.results[0].tokens


def test_stop_tokens_sequences_and_callback(model, prompts):
    engine = GenerationEngine(model, max_batch=2)
    free = engine.generate([prompts[0]], GenerationConfig(max_new_tokens=12))[0].tokens
    stop_tok = engine.generate([prompts[0]], GenerationConfig(max_new_tokens=12, stop_tokens=[free[3]]))[0]
    assert stop_tok.tokens == free[:free.index(free[3])] and stop_tok.finish_reason == "stop"
    seq = engine.generate([prompts[0]], GenerationConfig(max_new_tokens=12, stop_sequences=[free[4:6]]))[0]
    assert seq.tokens == free[:4] and seq.finish_reason == "stop"
    cb = engine.generate([prompts[0]], GenerationConfig(max_new_tokens=12), should_stop=lambda row, ids: len(ids) == 2)[0]
    assert cb.tokens == free[:2]


def test_settings_as_keywords_and_prompts_of_the_wrong_shape(model, prompts):
    """generate(max_new_tokens=...) as in HF; a tensor of ids is taken; text, one flat list or strings are one
    message each (they used to be torch/int() errors, or a misleading max_batch one)."""
    engine = GenerationEngine(model, max_batch=2)
    by_config = engine.generate([prompts[0]], GenerationConfig(max_new_tokens=4))[0].tokens
    assert engine.generate([prompts[0]], max_new_tokens=4)[0].tokens == by_config
    assert engine.generate(torch.tensor([prompts[0]]), max_new_tokens=4)[0].tokens == by_config
    with pytest.raises(ConfigError, match="'max_tokens' is not a generation setting; use one of .*max_new_tokens"):
        engine.generate([prompts[0]], max_tokens=4)
    for bad in ("안녕", prompts[0], [prompts[0], 5]):
        with pytest.raises(ConfigError, match=r"a list of token-id lists, one per prompt \(e.g. \[\[5, 6, 7\]\]\)"):
            engine.generate(bad)
    with pytest.raises(ConfigError, match="prompt 0 holds strs, not token ids"):
        engine.generate([["안", "녕"]])


def test_same_seed_same_output_other_seed_differs(model, prompts):
    engine = GenerationEngine(model, max_batch=1)
    run = lambda seed: engine.generate([prompts[1]], GenerationConfig(max_new_tokens=24, temperature=1.5, seed=seed))[0].tokens
    assert run(3) == run(3)
    assert run(3) != run(4)


def test_prompt_longer_than_context_errors_or_truncates(prompts):
    small = KoLM(tiny_config(max_seq_len=16)).eval()
    engine = GenerationEngine(small, max_batch=1)
    long = list(range(1, 21))
    with pytest.raises(ConfigError, match="truncate"):
        engine.generate([long], GenerationConfig(max_new_tokens=4))
    with pytest.raises(ConfigError, match="truncate"):  # when stream is called, before any step is asked for
        engine.stream([long], GenerationConfig(max_new_tokens=4))
    engine.stream([long], GenerationConfig(max_new_tokens=4, truncate="left"))
    assert engine.prompts == [long[-12:]]  # what the CLI echoes
    out = engine.generate([long], GenerationConfig(max_new_tokens=4, truncate="left"))[0]
    assert len(out.tokens) == 4
    assert out.tokens == engine.generate([long[-12:]], GenerationConfig(max_new_tokens=4))[0].tokens
    near = engine.generate([list(range(1, 14))], GenerationConfig(max_new_tokens=10))[0]
    assert len(near.tokens) == 3 and near.finish_reason == "context"
    # Many new tokens asked for: the cut prompt still keeps half the context (not 16 - 15 = 1 token).
    for n, kept in ((15, 8), (100, 8), (6, 10)):
        engine.stream([long], GenerationConfig(max_new_tokens=n, truncate="left"))
        assert engine.prompts == [long[-kept:]], n
    out = engine.generate([long], GenerationConfig(max_new_tokens=100, truncate="left"))[0]
    assert len(out.tokens) == 8 and out.finish_reason == "context"


def test_bad_generation_inputs(model):
    engine = GenerationEngine(model, max_batch=1)
    with pytest.raises(ConfigError, match="empty"):
        engine.generate([[]])
    with pytest.raises(ConfigError, match="max_batch"):
        engine.generate([[1], [2]])
    with pytest.raises(ConfigError, match="outside"):
        engine.generate([[999]])
    with pytest.raises(ConfigError, match="top_p"):
        GenerationConfig(top_p=0.0)


def test_top_k_top_p_filtering():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0]])
    assert torch.isinf(filter_logits(logits, 2, 1.0)[0, 2:]).all()
    kept = ~torch.isinf(filter_logits(logits, 0, 0.7))
    assert kept.tolist() == [[True, True, False, False]]


def test_int8_quantized_model_is_close_and_generates(model, prompts):
    q = quantize_int8(model)
    ids = torch.tensor([prompts[1]])
    with torch.no_grad():
        ref, got = model(ids), q(ids)
    rel = (got - ref).norm() / ref.norm()
    assert rel < 0.1, f"relative error {rel:.3f}"
    out = GenerationEngine(q, max_batch=1).generate([prompts[1]], GenerationConfig(max_new_tokens=5))[0]
    assert len(out.tokens) == 5


def test_onnx_export_matches_onnxruntime(model, tmp_path):
    path = export_onnx(model, tmp_path / "m.onnx")
    ids = torch.randint(0, 64, (3, 13), generator=torch.Generator().manual_seed(2))  # other shape than traced
    assert check_onnx(model, path, ids) < 1e-4


def test_onnx_export_of_a_bf16_model_leaves_it_bf16(model, tmp_path):
    half = KoLM(tiny_config()).to(torch.bfloat16).eval()
    export_onnx(half, tmp_path / "h.onnx")
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}  # used to come back cast to float32
    ids = torch.randint(0, 64, (2, 7), generator=torch.Generator().manual_seed(2))
    assert check_onnx(half.float(), tmp_path / "h.onnx", ids) < 1e-4


def test_compiled_decode_step_gives_the_eager_greedy_tokens_and_compiles_once(model, prompts):
    eager = GenerationEngine(model, max_batch=4)
    compiled = GenerationEngine(model, max_batch=4, compile=True)
    cfg = GenerationConfig(max_new_tokens=12)
    want = [g.tokens for g in eager.generate(prompts, cfg)]  # left-padded batch of 3
    assert [g.tokens for g in compiled.generate(prompts, cfg)] == want
    # Another request of the same batch size, other prompt lengths: same graph, no recompilation.
    shifted = [p[1:] + [7] for p in prompts]
    with torch._dynamo.config.patch(error_on_recompile=True):
        got = [g.tokens for g in compiled.generate(shifted, cfg)]
        # Rows near the end of the context: the cache drops common padding between steps, same graph.
        near = _near_context_prompts()[:3]
        got_near = [(g.tokens, g.finish_reason) for g in compiled.generate(near, GenerationConfig(max_new_tokens=20))]
    assert got == [g.tokens for g in eager.generate(shifted, cfg)]
    assert got_near == [(g.tokens, g.finish_reason) for g in eager.generate(near, GenerationConfig(max_new_tokens=20))]


def test_compiled_decode_step_sees_weights_changed_in_place(prompts):
    torch.manual_seed(1)
    model = KoLM(tiny_config()).eval()
    eager = GenerationEngine(model, max_batch=4)
    compiled = GenerationEngine(model, max_batch=4, compile=True)
    cfg = GenerationConfig(max_new_tokens=8)
    before = [g.tokens for g in compiled.generate(prompts, cfg)]
    with torch.no_grad():  # a training step's in-place update, after the graph was made
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    want = [g.tokens for g in eager.generate(prompts, cfg)]
    assert want != before and [g.tokens for g in compiled.generate(prompts, cfg)] == want


def test_compile_refuses_an_int8_model(model):
    with pytest.raises(ConfigError, match="int8"):
        GenerationEngine(quantize_int8(model), compile=True)


def test_compile_refuses_a_moe_model_up_front():
    """The expert dispatch (torch.where per expert) cannot be one graph: the first step used to fail inside dynamo."""
    moe = KoLM(tiny_config(moe_experts=4)).eval()
    with pytest.raises(ConfigError, match="mixture-of-experts.*without compile"):
        GenerationEngine(moe, compile=True)
    assert len(GenerationEngine(moe, max_batch=1).generate([[1, 2, 3]], max_new_tokens=3)[0].tokens) == 3

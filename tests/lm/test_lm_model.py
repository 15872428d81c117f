"""KoLM against transformers' LlamaForCausalLM on copied weights; config validation; MoE and MTP."""
from __future__ import annotations

import json
import logging
import math

import pytest
import torch
from lm_helpers import tiny_config

from koforge._utils.errors import ConfigError, ModelLoadError
from koforge.lm.config import LMConfig, count_parameters
from koforge.lm.hf import export_model, import_from_hf
from koforge.lm.deploy import DecodingLinear, use_cpu_decoding_kernels
from koforge.lm.model import KoLM, fuse_llama_tensors, split_fused_tensors


@pytest.fixture(scope="module")
def llama_cls():
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM


@pytest.mark.parametrize("scaling,tie", [("none", False), ("linear", True), ("ntk", False), ("yarn", True)])
def test_logits_and_greedy_match_transformers_llama(tmp_path, llama_cls, scaling, tie):
    torch.manual_seed(0)
    cfg = tiny_config(rope_scaling=scaling, rope_factor=1.0 if scaling == "none" else 4.0, tie_embeddings=tie,
                      rope_theta=5000.0)
    model = KoLM(cfg).eval()
    export_model(model, tmp_path / "hf")
    ref = llama_cls.from_pretrained(tmp_path / "hf").eval()
    ids = torch.randint(0, cfg.vocab_size, (2, 40))
    with torch.no_grad():
        diff = (model(ids) - ref(ids).logits).abs()
    assert diff.max() < 1e-4, f"max {diff.max():.2e} mean {diff.mean():.2e}"
    ours = model.generate(ids[:1, :6], 16)
    theirs = ref.generate(ids[:1, :6], max_new_tokens=16, min_new_tokens=16, do_sample=False)
    assert torch.equal(ours, theirs), f"first mismatch at {(ours != theirs).nonzero()[0].tolist()}"


YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16}


@pytest.mark.parametrize("rope,supported", [
    (YARN, True),
    ({**YARN, "attention_factor": 0.1 * math.log(4.0) + 1.0}, True),  # the default, written out
    ({**YARN, "mscale": 1.0}, True),  # mscale alone is ignored by transformers
    ({"rope_type": "yarn", "factor": 4.0}, True),  # original context: transformers' default
    ({**YARN, "attention_factor": 1.0}, False),
    ({**YARN, "mscale": 2.0, "mscale_all_dim": 1.0}, False),
    ({**YARN, "mscale": 1.0, "mscale_all_dim": 1.0}, False),
    ({**YARN, "beta_fast": 8.0, "beta_slow": 2.0}, False),
], ids=["defaults", "attention_factor_default", "mscale_alone", "no_original", "attention_factor", "mscale_ratio",
        "mscale_equal", "betas"])
def test_yarn_import_matches_transformers_or_is_refused(tmp_path, llama_cls, rope, supported):
    from transformers import LlamaConfig

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=64, initializer_range=0.2, rope_scaling=rope)
    ref = llama_cls(config).eval()
    ref.save_pretrained(tmp_path / "hf")
    if not supported:
        with pytest.raises(ModelLoadError, match="YaRN RoPE with .* is not supported"):
            import_from_hf(tmp_path / "hf")
        return
    model, _ = import_from_hf(tmp_path / "hf")
    ids = torch.randint(0, 64, (1, 64))
    with torch.no_grad():
        diff = (model(ids) - ref(ids).logits).abs()
    assert diff.max() < 1e-4, f"max {diff.max():.2e} mean {diff.mean():.2e}"


def test_import_round_trip_is_exact(tmp_path):
    model = KoLM(tiny_config(tie_embeddings=True))
    export_model(model, tmp_path / "hf")
    back, cfg = import_from_hf(tmp_path / "hf")
    assert cfg == model.config
    for (k, a), (_, b) in zip(model.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k


def test_fused_projections_split_to_llama_names_and_back_exactly():
    torch.manual_seed(0)
    model = KoLM(tiny_config(moe_experts=2, moe_shared_experts=1))
    state = model.state_dict()
    llama = split_fused_tensors(state, model.config)
    assert "model.layers.0.self_attn.k_proj.weight" in llama and "model.layers.1.mlp.experts.1.up_proj.weight" in llama
    assert not any("qkv_proj" in k or "gate_up_proj" in k for k in llama)
    cfg = model.config
    assert llama["model.layers.0.self_attn.k_proj.weight"].shape == (cfg.n_kv_heads * cfg.head_dim, cfg.d_model)
    back = fuse_llama_tensors(llama)
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)
    # A checkpoint written before the fusion (Llama names) loads through load_state_dict as it is.
    fresh = KoLM(model.config)
    fresh.load_state_dict(llama)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), state.values()))


def test_cpu_decoding_kernels_keep_weights_and_logits():
    torch.manual_seed(0)
    model = KoLM(tiny_config(tie_embeddings=True, d_model=16)).eval()  # LM head 64 x 16: wide
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ids = torch.randint(0, 64, (3, 9))
    with torch.no_grad():
        ref_full, ref_last = model(ids), model(ids, last_only=True)
    use_cpu_decoding_kernels(model)
    assert isinstance(model.lm_head, DecodingLinear) and model.lm_head.weight is model.model.embed_tokens.weight
    assert model.model.layers[0].self_attn.qkv_proj.weight.t().is_contiguous()  # transposed in memory
    assert model.lm_head._pack_skinny and not model.model.layers[0].self_attn.o_proj._pack_skinny
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with torch.no_grad():
        assert (model(ids) - ref_full).abs().max() < 1e-5
    with torch.inference_mode():  # 3 rows at the lm_head: the packed oneDNN path
        assert (model(ids, last_only=True) - ref_last).abs().max() < 1e-4
    with torch.no_grad():  # a changed weight is repacked, never served stale
        model.lm_head.weight.mul_(2.0)
        changed = model(ids, last_only=True)
    with torch.inference_mode():
        assert (model(ids, last_only=True) - changed).abs().max() < 1e-4


def test_import_refuses_non_llama_and_missing_weights(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ModelLoadError, match="model_type"):
        import_from_hf(tmp_path / "x")
    export_model(KoLM(tiny_config()), tmp_path / "gelu")  # transformers would run a GELU MLP: other logits
    raw = json.loads((tmp_path / "gelu" / "config.json").read_text())
    (tmp_path / "gelu" / "config.json").write_text(json.dumps({**raw, "hidden_act": "gelu"}))
    with pytest.raises(ModelLoadError, match="hidden_act='gelu' is not supported"):
        import_from_hf(tmp_path / "gelu")
    export_model(KoLM(tiny_config()), tmp_path / "hf")
    (tmp_path / "hf" / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="safetensors"):
        import_from_hf(tmp_path / "hf")


def test_import_refuses_damaged_folders_with_one_message_each(tmp_path):
    """Truncated weights, broken config.json, a missing field and a tensor of the wrong width: ModelLoadError
    (the CLI's one-line message), never a safetensors / json / torch traceback."""
    from safetensors.torch import load_file, save_file

    from koforge.lm.load import open_model, read_model_config

    def copy(name):
        export_model(KoLM(tiny_config()), tmp_path / name)
        return tmp_path / name

    truncated = copy("truncated")
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    with pytest.raises(ModelLoadError, match="model.safetensors' is not a readable safetensors file"):
        open_model(truncated)
    garbled = copy("garbled")
    (garbled / "config.json").write_text('{"model_type": "llama",')
    for load in (open_model, read_model_config):
        with pytest.raises(Exception, match="is not valid JSON") as err:
            load(garbled)
        assert err.type.__module__.startswith("koforge")
    no_field = copy("no_field")
    raw = json.loads((no_field / "config.json").read_text())
    del raw["num_attention_heads"]
    (no_field / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ModelLoadError, match="lacks or garbles a Llama field.*num_attention_heads"):
        open_model(no_field)
    (no_field / "config.json").write_text(json.dumps({**raw, "num_attention_heads": 0}))
    with pytest.raises(ModelLoadError, match="lacks or garbles a Llama field.*ZeroDivisionError"):
        open_model(no_field)
    narrow = copy("narrow")
    state = load_file(str(narrow / "model.safetensors"))
    state["model.layers.0.self_attn.q_proj.weight"] = state["model.layers.0.self_attn.q_proj.weight"][:-4].clone()
    save_file(state, str(narrow / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match=r"layers.0.self_attn.q_proj.weight is \[28, 32\], the config implies \[32, 32\]"):
        open_model(narrow)
    wide = copy("wide")
    state = load_file(str(wide / "model.safetensors"))
    state["model.norm.weight"] = torch.ones(3)
    save_file(state, str(wide / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match=r"model.norm.weight is \[3\], the config implies"):
        open_model(wide)


def test_export_writes_the_source_tokenizer_in_the_form_transformers_4_and_5_load(tmp_path, assets):
    """Specials and chat template of the source folder survive; a bare tokenizer.json gets the model's EOS."""
    from tokenizers import Tokenizer
    from tokenizer_folders import assert_portable, assert_same_tokenizer

    from koforge.tokenizers.train import TokenizerTrainConfig, train_tokenizer

    texts = (assets / "tok_nsmc_400.txt").read_text(encoding="utf-8").splitlines()
    source = train_tokenizer(texts, TokenizerTrainConfig(vocab_size=300, chat_roles=["user", "assistant"]), tmp_path / "tok").path
    # A tokenizer larger than the model's embedding table belongs to another model: refused, nothing written.
    with pytest.raises(ConfigError, match=r"has 300 tokens but the model only 64 embedding rows"):
        export_model(KoLM(tiny_config()), tmp_path / "hf", tokenizer=source, eos_id=2)
    assert not (tmp_path / "hf").exists()
    export_model(KoLM(tiny_config(vocab_size=320)), tmp_path / "hf", tokenizer=source, eos_id=2)
    assert_portable(tmp_path / "hf")
    assert_same_tokenizer(source, tmp_path / "hf")
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "tokenizer.json").write_bytes((source / "tokenizer.json").read_bytes())
    export_model(KoLM(tiny_config(vocab_size=320)), tmp_path / "hf2", tokenizer=tmp_path / "bare" / "tokenizer.json", eos_id=2)
    assert_portable(tmp_path / "hf2")
    from transformers import AutoTokenizer

    exported = AutoTokenizer.from_pretrained(str(tmp_path / "hf2"))
    assert exported.eos_token == "</s>" and exported.eos_token_id == 2
    text = "안녕하세요 반갑습니다 2024년"
    assert exported.encode(text) == Tokenizer.from_file(str(source / "tokenizer.json")).encode(text).ids


def test_export_refuses_moe_and_says_it_drops_mtp_heads(tmp_path, caplog):
    with pytest.raises(ModelLoadError, match="mixture-of-experts"):
        export_model(KoLM(tiny_config(moe_experts=4)), tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
    with caplog.at_level(logging.WARNING, logger="koforge"):
        export_model(KoLM(tiny_config(mtp_heads=2)), tmp_path / "hf")
    assert "the 2 multi-token-prediction head(s), so they are dropped" in caplog.text


@pytest.mark.parametrize("bad,match", [
    (dict(n_heads=4, n_kv_heads=3), "does not divide by n_kv_heads"),
    (dict(d_model=30, n_heads=4), "does not divide by n_heads"),
    (dict(rope_scaling="ropey"), "rope_scaling"),
    (dict(moe_experts=2, moe_top_k=3), "moe_top_k"),
    (dict(vocab_size=0), "vocab_size"),
])
def test_bad_configs_are_refused(bad, match):
    with pytest.raises(ConfigError, match=match):
        tiny_config(**bad)


def test_parameter_count_formula_matches_model():
    for cfg in (tiny_config(), tiny_config(tie_embeddings=True), tiny_config(moe_experts=4, moe_shared_experts=1),
                tiny_config(mtp_heads=2)):
        assert count_parameters(cfg) == KoLM(cfg).num_parameters(), cfg


@pytest.mark.parametrize("balancing", ["aux_loss", "bias"])
def test_moe_and_mtp_forward_backward(balancing):
    torch.manual_seed(0)
    cfg = tiny_config(moe_experts=4, moe_top_k=2, moe_shared_experts=1, moe_balancing=balancing, mtp_heads=2)
    model = KoLM(cfg)
    ids = torch.randint(0, cfg.vocab_size, (2, 16))
    out = model.compute_loss(ids[:, :-1], ids[:, 1:])
    assert out.mtp_loss is not None and torch.isfinite(out.loss)
    assert (out.aux_loss is not None) == (balancing == "aux_loss")
    out.loss.backward()
    assert model.mtp[1].proj.weight.grad.abs().sum() > 0
    assert model.model.layers[0].mlp.gate.weight.grad.abs().sum() > 0
    usage = model.expert_usage()
    assert usage.shape == (2, 4) and int(usage[0].sum()) == 2 * 15 * 2  # tokens x top_k per layer
    before = model.moe_layers()[0].expert_bias.clone()
    for m in model.moe_layers():
        m.update_bias()
    changed = not torch.equal(before, model.moe_layers()[0].expert_bias)
    assert changed == (balancing == "bias")
    assert model(ids).shape == (2, 16, cfg.vocab_size)


def test_every_parameter_of_a_dense_mtp_model_gets_a_gradient():
    """DDP (no unused-parameter search for dense models) needs it; each head's output norm feeds the lm_head."""
    torch.manual_seed(0)
    model = KoLM(tiny_config(mtp_heads=2))
    ids = torch.randint(0, 64, (2, 12))
    model.compute_loss(ids[:, :-1], ids[:, 1:]).loss.backward()
    assert [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()] == []
    with torch.no_grad():  # the MTP loss reads the heads through norm_out: scaling its weight changes the loss
        before = model.compute_loss(ids[:, :-1], ids[:, 1:]).mtp_loss
        model.mtp[0].norm_out.weight.mul_(2.0)
        assert model.compute_loss(ids[:, :-1], ids[:, 1:]).mtp_loss != before


def test_mtp_heads_moe_layers_join_the_balancing_loss():
    torch.manual_seed(0)
    model = KoLM(tiny_config(moe_experts=4, moe_top_k=1, mtp_heads=2, mtp_weight=0.0))
    ids = torch.randint(0, 64, (2, 12))
    out = model.compute_loss(ids[:, :-1], ids[:, 1:])
    layers = [b.mlp for b in model.model.layers] + [h.block.mlp for h in model.mtp]
    assert torch.equal(out.aux_loss, torch.stack([m.last_aux_loss for m in layers]).mean().detach())
    out.loss.backward()  # with mtp_weight 0 only the balancing loss reaches the heads' routers
    assert all(h.block.mlp.gate.weight.grad.abs().sum() > 0 for h in model.mtp)


@pytest.mark.parametrize("balancing", ["bias", "aux_loss"])
def test_a_top_1_router_learns_from_the_next_token_loss(balancing):
    """Top-1 routing weights the expert by its router probability (Switch Transformer): renormalised over the one
    chosen expert the weight was always 1, so the LM loss gave the router no gradient (bias balancing: none at all)."""
    torch.manual_seed(0)
    model = KoLM(tiny_config(moe_experts=4, moe_top_k=1, moe_balancing=balancing, moe_aux_weight=0.0))
    ids = torch.randint(0, 64, (2, 12))
    model.compute_loss(ids[:, :-1], ids[:, 1:]).loss.backward()
    grads = [float(m.gate.weight.grad.abs().max()) for m in model.moe_layers()]
    assert all(g > 1e-6 for g in grads), grads


def test_mtp_heads_do_not_change_next_token_logits():
    torch.manual_seed(0)
    base = KoLM(tiny_config())
    torch.manual_seed(0)
    with_mtp = KoLM(tiny_config(mtp_heads=1))
    with_mtp.load_state_dict(base.state_dict(), strict=False)
    ids = torch.randint(0, 64, (1, 10))
    assert torch.equal(base(ids), with_mtp(ids))


def test_expert_usage_counts_each_token_once_under_gradient_checkpointing():
    torch.manual_seed(0)
    model = KoLM(tiny_config(moe_experts=4, moe_top_k=2))
    model.gradient_checkpointing = True  # backward runs every block's forward a second time
    ids = torch.randint(0, 64, (2, 16))
    model.train().compute_loss(ids[:, :-1], ids[:, 1:]).loss.backward()
    routed = 2 * 15 * 2  # tokens x top_k per layer
    assert model.expert_usage().sum(1).tolist() == [routed, routed]
    assert [int(m.take_step_load().sum()) for m in model.moe_layers()] == [routed, routed]
    with torch.no_grad():
        model.eval()(ids)  # inference counts usage too, but is no training step's load
    assert model.expert_usage().sum(1).tolist() == [routed + 2 * 16 * 2] * 2
    assert int(model.moe_layers()[0].take_step_load().sum()) == 0


def test_gradient_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    cfg = tiny_config()
    a, b = KoLM(cfg), KoLM(cfg)
    b.load_state_dict(a.state_dict())
    b.gradient_checkpointing = True
    ids = torch.randint(0, 64, (2, 12))
    for m in (a, b):
        m.train().compute_loss(ids, ids).loss.backward()
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=n)


def test_context_overflow_is_refused():
    model = KoLM(tiny_config(max_seq_len=16))
    with pytest.raises(ValueError, match="max_seq_len"):
        model(torch.zeros(1, 17, dtype=torch.long))
    assert isinstance(LMConfig(), LMConfig)


def test_cpu_bf16_autocast_attends_in_float32_and_trains_like_float32(monkeypatch):
    # The CPU flash kernel is slower in bf16 than in float32, so bf16/fp16 q, k, v are upcast for it (not
    # for one-token decode steps); the step's loss and gradients stay those of float32 within bf16 rounding.
    torch.manual_seed(0)
    model = KoLM(tiny_config()).train()
    ids = torch.randint(0, 64, (2, 24))
    ref = model.compute_loss(ids[:, :-1], ids[:, 1:]).loss
    ref_grads = torch.autograd.grad(ref, list(model.parameters()))
    seen = []
    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda q, k, v, **kw: seen.append((q.dtype, k.dtype, v.dtype)) or sdpa(q, k, v, **kw))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = model.compute_loss(ids[:, :-1], ids[:, 1:]).loss
    grads = torch.autograd.grad(got, list(model.parameters()))
    assert seen == [(torch.float32,) * 3] * 2
    assert abs(got.item() - ref.item()) < 2e-2, (got.item(), ref.item())
    for (name, _), a, b in zip(model.named_parameters(), grads, ref_grads):
        cos = torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0)
        assert a.dtype == torch.float32 and cos > 0.99, f"{name}: cosine {cos:.4f} to the float32 gradient"
    seen.clear()
    with torch.no_grad():
        bf16 = KoLM(tiny_config()).to(torch.bfloat16).eval()
        assert bf16(ids).dtype == torch.bfloat16 and seen == [(torch.float32,) * 3] * 2  # bf16 weights too

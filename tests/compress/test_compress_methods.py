"""Each compression method on tiny Llama / Qwen3 / Exaone4 models: parity with a reference, reload, config;
the saved folder's tokenizer."""
from __future__ import annotations

import torch
import pytest
from transformers import AutoModelForCausalLM

from koforge.compress import (apply_compression, block_influence, convert_dtype, drop_layers, prune_heads,
                              quantize_int8, reduce_width, CompressionConfig)
from koforge.compress.heal import heal, kl_loss
from koforge.compress.layout import load_model, save_model
from koforge.compress.quantize import int8_roundtrip
from koforge.eval.speed import greedy_decode
from tokenizer_folders import assert_portable, assert_same_tokenizer

KINDS = ("llama", "qwen3", "exaone4")
IDS = torch.tensor([[0, 5, 17, 250, 33, 90, 121, 7, 300, 42, 11, 64]])


def logits(model, ids=IDS):
    with torch.inference_mode():
        return model(input_ids=ids, use_cache=False).logits.float()


def naive_greedy(model, ids, n):
    out = []
    with torch.inference_mode():
        for _ in range(n):
            nxt = model(input_ids=ids, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
            out.append(nxt)
            ids = torch.cat([ids, nxt], dim=1)
    return torch.cat(out, dim=1)


def assert_close(a, b, tol=1e-4):
    diff = (a - b).abs()
    assert a.shape == b.shape and diff.max() < tol, f"max diff {diff.max():.3g}, mean {diff.mean():.3g}"


@pytest.mark.parametrize("keep,pattern", [([0, 1, 2, 3], 2), ([0, 2, 3], 3), ([0, 1, 3], "LGG"), ([1, 2, 3], "GLG"), ([0, 2], 3)])
def test_exaone4_sliding_window_pattern_follows_the_kept_layers(keep, pattern):
    from compress_models import tiny_config
    from transformers import Exaone4Config

    model = AutoModelForCausalLM.from_config(tiny_config("exaone4"))
    drop_layers(model, keep=keep)
    assert model.config.sliding_window_pattern == pattern
    if isinstance(pattern, int):  # the config's own rule rebuilds the kept layers' types from the period
        rebuilt = Exaone4Config(num_hidden_layers=len(keep), sliding_window=16, sliding_window_pattern=pattern)
        assert rebuilt.layer_types == model.config.layer_types


@pytest.mark.parametrize("kind", KINDS)
def test_drop_layers_matches_a_fresh_model_with_the_kept_weights(kind, tiny_models, tmp_path):
    model, tok = load_model(tiny_models[kind])
    original = {k: v.clone() for k, v in model.state_dict().items()}
    types = list(getattr(model.config, "layer_types", None) or [])
    out = apply_compression(tiny_models[kind], CompressionConfig(methods=["drop_layers"], drop_strategy="explicit",
                                                                 drop_indices=[1, 2]), tmp_path / "m")
    assert out["steps"][0]["kept_layers"] == [0, 3]
    pruned, _ = load_model(tmp_path / "m")
    assert pruned.config.num_hidden_layers == 2
    if types:
        assert list(pruned.config.layer_types) == [types[0], types[3]]
    if kind == "exaone4":  # L G L G keeps L G: still every 2nd layer full
        assert pruned.config.sliding_window_pattern == 2
    # Reference: transformers' own class built for 2 layers, loaded with layers 0 and 3 renamed to 0 and 1.
    cfg = type(model.config).from_dict(pruned.config.to_dict())
    ref = AutoModelForCausalLM.from_config(cfg).eval()
    rename = {"model.layers.3.": "model.layers.1."}
    state = {}
    for k, v in original.items():
        if k.startswith(("model.layers.1.", "model.layers.2.")):
            continue
        for a, b in rename.items():
            k = k.replace(a, b)
        state[k] = v
    ref.load_state_dict(state, strict=True)
    assert_close(logits(pruned), logits(ref))
    # KV cache indices were renumbered: cached decoding equals recomputation.
    cached, _, _ = greedy_decode(pruned, IDS[:, :5], 6)
    assert torch.equal(cached, naive_greedy(pruned, IDS[:, :5], 6))


def test_drop_layers_strategies_pick_the_right_layers(tiny_models):
    model, _ = load_model(tiny_models["llama"])
    assert [l.self_attn.layer_idx for l in drop_layers(model, strategy="top", keep_layers=3).model.layers] == [0, 1, 2]
    model, _ = load_model(tiny_models["llama"])
    bottom = drop_layers(model, strategy="bottom", keep_layers=1)
    assert bottom.config.num_hidden_layers == 1


@pytest.mark.parametrize("kind", ("llama", "exaone4"))
def test_block_influence_finds_an_identity_block(kind, tiny_models):
    model, _ = load_model(tiny_models[kind])
    with torch.no_grad():  # block 2 adds nothing to the residual stream
        model.model.layers[2].self_attn.o_proj.weight.zero_()
        model.model.layers[2].mlp.down_proj.weight.zero_()
    seqs = IDS.repeat(2, 1)
    influence = block_influence(model, seqs)
    assert abs(influence[2]) < 1e-6 and min(influence[i] for i in (0, 1, 3)) > 1e-3, influence
    drop_layers(model, strategy="importance", keep_layers=3, sequences=seqs)
    assert model.config.num_hidden_layers == 3


@pytest.mark.parametrize("kind,importance", (("llama", "activation"), ("qwen3", "magnitude"), ("exaone4", "activation")))
def test_prune_heads_equals_zeroing_the_pruned_groups(kind, importance, tiny_models):
    model, _ = load_model(tiny_models[kind])
    reference, _ = load_model(tiny_models[kind])
    g, d = 2, 8  # 8 query heads over 4 KV heads, head_dim 8
    prune_heads(model, 4, importance=importance, sequences=IDS.repeat(2, 1))
    assert (model.config.num_attention_heads, model.config.num_key_value_heads, model.config.head_dim) == (4, 2, 8)
    with torch.no_grad():
        for layer, ref_layer in zip(model.model.layers, reference.model.layers):
            kept_k = {tuple(r.tolist()) for r in layer.self_attn.k_proj.weight}
            for kv in range(4):
                rows = ref_layer.self_attn.k_proj.weight[kv * d:(kv + 1) * d]
                if tuple(rows[0].tolist()) not in kept_k:
                    ref_layer.self_attn.o_proj.weight[:, kv * g * d:(kv + 1) * g * d] = 0
    assert_close(logits(model), logits(reference))


@pytest.mark.parametrize("kind", ("qwen3", "exaone4"))
def test_reduce_intermediate_equals_zeroing_the_dropped_channels(kind, tiny_models):
    model, _ = load_model(tiny_models[kind])
    reference, _ = load_model(tiny_models[kind])
    reduce_width(model, intermediate_size=64, importance="activation", sequences=IDS.repeat(2, 1))
    assert model.config.intermediate_size == 64
    with torch.no_grad():
        for layer, ref_layer in zip(model.model.layers, reference.model.layers):
            kept = {tuple(r.tolist()) for r in layer.mlp.gate_proj.weight}
            for c, row in enumerate(ref_layer.mlp.gate_proj.weight):
                if tuple(row.tolist()) not in kept:
                    ref_layer.mlp.down_proj.weight[:, c] = 0
    assert_close(logits(model), logits(reference))


@pytest.mark.parametrize("kind", ("llama", "exaone4"))
def test_reduce_hidden_saves_a_consistent_folder(kind, tiny_models, tmp_path):
    model, tok = load_model(tiny_models[kind])
    before = logits(model)
    reduce_width(model, hidden_size=64)  # the full width: a no-op
    assert_close(logits(model), before)
    cfg = CompressionConfig(methods=["reduce_width"], hidden_size=48, intermediate_size=80, width_importance="magnitude")
    out = apply_compression(tiny_models[kind], cfg, tmp_path / "w")
    assert out["reload_max_diff"] < 1e-4
    m2, _ = load_model(tmp_path / "w")
    assert (m2.config.hidden_size, m2.config.intermediate_size, m2.model.embed_tokens.weight.shape[1]) == (48, 80, 48)
    assert torch.isfinite(logits(m2)).all()


def test_reduce_hidden_on_tied_embeddings(tmp_path):
    from compress_models import make_model

    folder = make_model("llama", tmp_path / "tied", tied=True)
    apply_compression(folder, CompressionConfig(methods=["reduce_width"], hidden_size=40,
                                                width_importance="magnitude"), tmp_path / "out")
    m, _ = load_model(tmp_path / "out")
    assert m.lm_head.weight.data_ptr() == m.model.embed_tokens.weight.data_ptr() and m.config.hidden_size == 40


def test_int8_roundtrip_grid_reload_and_runtime(tiny_models, tmp_path):
    w = torch.randn(16, 32)
    deq, q, scale = int8_roundtrip(w)
    assert q.dtype == torch.int8 and ((w - deq).abs() <= scale[:, None] / 2 + 1e-7).all()
    out = apply_compression(tiny_models["qwen3"], CompressionConfig(methods=["quantize_int8"]), tmp_path / "q")
    assert out["reload_max_diff"] == 0.0
    plain = AutoModelForCausalLM.from_pretrained(str(tmp_path / "q")).eval()
    assert plain.config.koforge_quantization["method"] == "int8_weight_only_roundtrip"
    wq = plain.model.layers[0].mlp.up_proj.weight
    assert torch.equal(int8_roundtrip(wq)[0], wq)  # stored weights sit exactly on their int8 grid
    fast, _ = load_model(tmp_path / "q")  # koforge's loader: torch dynamic int8 linears
    assert "quantized.dynamic" in type(fast.model.layers[0].mlp.up_proj).__module__
    ref = logits(plain)  # activations are quantized (8-bit, per tensor) on each call: close, not equal
    diff = (logits(fast) - ref).abs()
    assert diff.mean() < 0.02 * ref.abs().max() and diff.max() < 0.1 * ref.abs().max(), (diff.mean(), diff.max())


@pytest.mark.parametrize("dtype,torch_dtype", (("fp16", torch.float16), ("bf16", torch.bfloat16)))
def test_convert_dtype_reloads_in_that_dtype(dtype, torch_dtype, tiny_models, tmp_path):
    src, _ = load_model(tiny_models["exaone4"])
    apply_compression(tiny_models["exaone4"], CompressionConfig(methods=["convert_dtype"], dtype=dtype), tmp_path / "d")
    m, _ = load_model(tmp_path / "d")
    assert m.dtype == torch_dtype
    assert torch.equal(m.model.layers[0].mlp.up_proj.weight, src.model.layers[0].mlp.up_proj.weight.to(torch_dtype))


def test_heal_brings_the_student_closer_to_the_teacher(tiny_models):
    teacher, _ = load_model(tiny_models["llama"])
    student, _ = load_model(tiny_models["llama"])
    drop_layers(student, strategy="top", keep_layers=2)
    seqs = torch.randint(3, 384, (16, 24), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        before = float(kl_loss(student(input_ids=seqs).logits, teacher(input_ids=seqs).logits))
    curve = heal(student, teacher, seqs, steps=30, lr=3e-3, batch_size=8)
    with torch.inference_mode():
        after = float(kl_loss(student(input_ids=seqs).logits, teacher(input_ids=seqs).logits))
    assert after < 0.7 * before, (before, after, curve["first_loss"], curve["last_loss"])


def test_convert_dtype_refuses_after_int8(tiny_models):
    from koforge._utils.errors import ConfigError

    model, _ = load_model(tiny_models["llama"])
    quantize_int8(model)
    with pytest.raises(ConfigError, match="int8 grid"):
        convert_dtype(model, "fp16")


def test_saved_folder_tokenizer_loads_in_transformers_4_and_5_unchanged(tiny_models, tmp_path):
    """transformers 5 alone would save class TokenizersBackend, which 4.x (and submissions targeting it) cannot load."""
    model, tokenizer = load_model(tiny_models["qwen3"])
    save_model(model, tokenizer, tmp_path)
    assert_portable(tmp_path)
    assert_same_tokenizer(tiny_models["qwen3"], tmp_path)


def test_bf16_checkpoint_is_quantized_and_healed_in_float32(tiny_models, heldout, tmp_path):
    """EXAONE ships bf16: int8 and healing upcast it (they need float32) instead of refusing the recipe."""
    model, tok = load_model(tiny_models["llama"])
    save_model(model.to(torch.bfloat16), tok, tmp_path / "bf16")
    out = apply_compression(tmp_path / "bf16", CompressionConfig(methods=["quantize_int8"]), tmp_path / "q")
    assert out["before"]["dtype"] == "bfloat16" and out["reload_max_diff"] == 0.0
    plain = AutoModelForCausalLM.from_pretrained(str(tmp_path / "q"))
    wq = plain.model.layers[0].mlp.up_proj.weight
    assert wq.dtype == torch.float32 and torch.equal(int8_roundtrip(wq)[0], wq)
    recipe = CompressionConfig(methods=["drop_layers", "heal", "convert_dtype"], drop_strategy="top", keep_layers=2,
                               heal_steps=2, heal_batch_size=2, dtype="bf16", calibration_texts=str(heldout),
                               calibration_docs=4, calibration_context=16)
    out = apply_compression(tmp_path / "bf16", recipe, tmp_path / "healed")
    assert [s["method"] for s in out["steps"]] == ["drop_layers", "heal", "convert_dtype"]
    assert load_model(tmp_path / "healed")[0].dtype == torch.bfloat16


def test_drop_layers_keeps_qwen_window_layers_consistent(tmp_path):
    """Qwen: layers below max_window_layers attend fully; the kept count of those is the new value."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    cfg = Qwen3Config(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=4, num_attention_heads=4,
                      num_key_value_heads=2, head_dim=8, use_sliding_window=True, sliding_window=8, max_window_layers=2)
    model = Qwen3ForCausalLM(cfg)
    assert model.config.layer_types == ["full_attention"] * 2 + ["sliding_attention"] * 2
    drop_layers(model, strategy="explicit", drop_indices=[0])
    assert model.config.layer_types == ["full_attention", "sliding_attention", "sliding_attention"]
    assert model.config.max_window_layers == 1


def test_only_whole_layer_drops_may_follow_int8(tiny_models, tmp_path):
    """Cutting input columns or training after quantize_int8 left weights off the grid config.json claims."""
    from koforge._utils.errors import ConfigError

    for step, extra in (("heal", {}), ("prune_heads", {"keep_heads": 4}), ("reduce_width", {"intermediate_size": 64})):
        with pytest.raises(ConfigError, match=rf"^{step} after quantize_int8 would move weights off the int8 grid"):
            CompressionConfig(methods=["quantize_int8", step], **extra)
    cfg = CompressionConfig(methods=["quantize_int8", "drop_layers"], drop_strategy="top", keep_layers=2)
    apply_compression(tiny_models["llama"], cfg, tmp_path / "q")
    plain = AutoModelForCausalLM.from_pretrained(str(tmp_path / "q"))
    linears = [m for layer in plain.model.layers for m in layer.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 14 and all(torch.equal(int8_roundtrip(m.weight)[0], m.weight) for m in linears)


def test_score_matches_a_hand_computation():
    from koforge._utils.errors import DataError
    from koforge.compress import compute_score

    # ppl 10 -> 12.5 and 20 -> 15 ms/token: PerfNorm 10/12.5 = 0.8, SpeedNorm 1 - 15/20 = 0.25, Score 0.525.
    assert compute_score(10.0, 12.5, 20.0, 15.0) == pytest.approx({"perf_norm": 0.8, "speed_norm": 0.25, "score": 0.525})
    assert compute_score(10.0, 10.0, 20.0, 20.0) == {"perf_norm": 1.0, "speed_norm": 0.0, "score": 0.5}  # the base
    # Slower and much worse: 0.5 * 0.1 + 0.5 * (1 - 60/20) = -0.95, clipped to 0.
    assert compute_score(10.0, 100.0, 20.0, 60.0) == pytest.approx({"perf_norm": 0.1, "speed_norm": -2.0, "score": 0.0})
    with pytest.raises(DataError, match="must be > 0"):
        compute_score(10.0, 0.0, 20.0, 15.0)


def test_int8_runtime_runs_the_stored_int8_grid(tiny_models, tmp_path):
    """The dynamic int8 linears must hold the saved int8 values, not a re-rounding of them onto torch's default
    symmetric grid (max|row| / 127.5), which moved up to half a step and measured another model."""
    apply_compression(tiny_models["llama"], CompressionConfig(methods=["quantize_int8"]), tmp_path / "q")
    plain = AutoModelForCausalLM.from_pretrained(str(tmp_path / "q")).eval()
    fast, _ = load_model(tmp_path / "q")
    for name in ("self_attn.q_proj", "self_attn.o_proj", "mlp.up_proj", "mlp.down_proj"):
        stored = plain.model.layers[1].get_submodule(name).weight
        runtime = fast.model.layers[1].get_submodule(name).weight()  # the packed qint8 tensor
        _, q, scale = int8_roundtrip(stored)
        mismatch = (runtime.int_repr() != q).float().mean()
        assert mismatch == 0, f"{name}: {mismatch:.1%} of int8 values differ from the saved grid"
        assert torch.allclose(runtime.q_per_channel_scales().float(), scale, rtol=1e-6)
        assert torch.equal(runtime.dequantize(), stored)

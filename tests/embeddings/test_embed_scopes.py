"""Trainable scopes: new rows only (old rows bit-identical), adapters identity at init, LoRA merge, top blocks."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from koforge._utils.errors import ConfigError
from koforge.embeddings.adapters import ADAPTER_KINDS, AdapterConfig, load_adapters, save_adapters
from koforge.embeddings.model import EmbeddingModelConfig, backbone, build_embedding_model, transformer_module
from koforge.embeddings.scopes import LoraSettings, NotExpandedError, apply_scope

TEXTS = ["한 남자가 기타를 치고 있다.", "여자가 요리를 한다.", "고양이가 잔다."]


def _features(model):
    return model.preprocess(TEXTS)


def _embed(model):
    model.eval()
    with torch.no_grad():
        return model(_features(model))["sentence_embedding"].clone()


def _step(model, lr=1e-2, weight_decay=0.1, steps=2):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    model.train()
    for _ in range(steps):
        loss = model(_features(model))["sentence_embedding"].pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_new_embeddings_trains_only_new_rows_bit_identical(tiny_expanded):
    import json

    n_old = json.loads((tiny_expanded / "expansion_report.json").read_text())["base_vocab_size"]
    model = build_embedding_model(tiny_expanded)
    before = backbone(model).get_input_embeddings().weight.detach().clone()
    others = {n: p.detach().clone() for n, p in backbone(model).named_parameters() if "word_embeddings" not in n}
    handle = apply_scope(model, "new_embeddings", model_path=tiny_expanded)
    assert handle.trainable_parameters() == (before.shape[0] - n_old) * before.shape[1]
    feats = model.preprocess(["한국어0 한국어1 사람", "한국어2"])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1, weight_decay=0.5)
    for _ in range(2):  # weight decay would move masked rows: the split table must not let it
        loss = model(feats)["sentence_embedding"].sum()
        opt.zero_grad(), loss.backward(), opt.step()
    handle.finalize()
    after = backbone(model).get_input_embeddings().weight.detach()
    assert torch.equal(after[:n_old], before[:n_old]), "old rows changed"
    assert not torch.equal(after[n_old:], before[n_old:]), "new rows did not learn"
    for n, p in backbone(model).named_parameters():
        if n in others:
            assert torch.equal(p, others[n]), f"{n} changed"


def test_new_embeddings_on_plain_model_is_a_clear_error(tiny_bert):
    model = build_embedding_model(tiny_bert)
    with pytest.raises(NotExpandedError, match="koforge expand"):
        apply_scope(model, "new_embeddings", model_path=tiny_bert)


@pytest.mark.parametrize("kind", [k for k in ADAPTER_KINDS if k != "ffn"])  # hooked kinds; ffn below
def test_adapters_identity_at_init_then_learn_and_round_trip(tiny_bert, tmp_path, kind):
    model = build_embedding_model(tiny_bert)
    ref = _embed(model)
    handle = apply_scope(model, "adapters", adapter=AdapterConfig(kind=kind, r=8, dropout=0.0))
    out = _embed(model)
    assert torch.equal(out, ref), f"max diff {(out - ref).abs().max()}"
    assert all(("koforge_adapters" in n) == p.requires_grad for n, p in model.named_parameters())
    _step(model, weight_decay=0.0)
    trained = _embed(model)
    assert not torch.allclose(trained, ref)
    save_adapters(transformer_module(model), tmp_path / "ad")
    fresh = build_embedding_model(tiny_bert)
    load_adapters(transformer_module(fresh), tmp_path / "ad")
    assert torch.allclose(_embed(fresh), trained, atol=1e-6)
    handle.finalize()
    model.save(str(tmp_path / "full"))  # merged: adapters ship inside the folder
    again = build_embedding_model(tmp_path / "full")
    assert torch.allclose(_embed(again), trained, atol=1e-6)
    if kind == "bottleneck":  # the model card koforge writes shows the load that works for adapter folders
        from sentence_transformers import SentenceTransformer

        from koforge.embeddings.model import save_embedding_model

        save_embedding_model(model, tmp_path / "saved")
        card = (tmp_path / "saved" / "README.md").read_text(encoding="utf-8")
        assert 'SentenceTransformer("sentence_transformers_model_id", trust_remote_code=True)' in card
        assert "koforge.embeddings.adapters.AdaptedTransformer" in card
        plain = SentenceTransformer(str(tmp_path / "saved"), device="cpu", trust_remote_code=True)
        assert torch.allclose(torch.as_tensor(plain.encode(["한국어 문장", "둘째"])),
                              torch.as_tensor(again.encode(["한국어 문장", "둘째"])), atol=1e-6)


def test_lora_merges_back_to_plain_weights(tiny_bert):
    model = build_embedding_model(tiny_bert)
    handle = apply_scope(model, "lora", lora=LoraSettings(r=4, alpha=8, dropout=0.0, target_modules=["query", "value"]))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    _step(model, weight_decay=0.0)
    with_lora = _embed(model)
    handle.finalize()
    assert type(backbone(model)).__name__ == "BertModel"
    assert torch.allclose(_embed(model), with_lora, atol=1e-5)


def test_top_blocks_unfreezes_only_the_last_n(tiny_bert):
    model = build_embedding_model(tiny_bert)
    apply_scope(model, "top_blocks", top_blocks=1)
    trainable = {n for n, p in backbone(model).named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("encoder.layer.1.") for n in trainable)
    model = build_embedding_model(tiny_bert)
    apply_scope(model, "embeddings")
    assert [n for n, p in backbone(model).named_parameters() if p.requires_grad] == ["embeddings.word_embeddings.weight"]


def test_unknown_scope_names_the_choices(tiny_bert):
    from koforge._utils.errors import ConfigError

    with pytest.raises(ConfigError, match="new_embeddings"):
        apply_scope(build_embedding_model(tiny_bert), "everything")


def test_model_config_validates():
    from koforge._utils.errors import ConfigError

    with pytest.raises(ConfigError, match="pooling"):
        EmbeddingModelConfig(pooling="max")


def test_an_adapters_stage_on_a_model_that_has_adapters_is_refused_up_front(tmp_path):
    """A folder saved after an adapters stage carries them beside its Transformer module's weights."""
    from types import SimpleNamespace

    from koforge._utils.errors import ConfigError
    from koforge.embeddings.adapters import ADAPTER_CONFIG
    from koforge.embeddings.preflight import backbone_folder, check_stages_fit_model

    (tmp_path / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "", "type": "koforge.embeddings.adapters.AdaptedTransformer"},
                                                       {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.sentence_transformer.modules.Pooling"}]))
    assert backbone_folder(tmp_path) == tmp_path
    stage = SimpleNamespace(name="more", scope="adapters", objective="cosent", data=[], adapter=AdapterConfig())
    check_stages_fit_model([stage], tmp_path)  # no adapters yet
    (tmp_path / ADAPTER_CONFIG).write_text("{}")
    with pytest.raises(ConfigError, match="stage 'more': scope 'adapters' would stack a second set of adapters on those of the model"):
        check_stages_fit_model([stage], tmp_path)


@pytest.mark.parametrize("layout", ["bert", "qwen3"])
def test_ffn_adapters_learn_beside_a_frozen_feed_forward_and_merge_into_a_plain_model(tiny_bert, tiny_decoder, tmp_path,
                                                                                     layout):
    """Identity at step 0, only the extra units learn (the old weights bit-identical), and the merged model, a
    standard one with a wider feed-forward, embeds as the trained one did and loads in plain sentence-transformers."""
    from sentence_transformers import SentenceTransformer

    from koforge.embeddings.model import save_embedding_model

    folder, config = (tiny_bert, None) if layout == "bert" else (tiny_decoder, EmbeddingModelConfig(pooling="lasttoken"))
    model = build_embedding_model(folder, config)
    before = {k: v.clone() for k, v in backbone(model).state_dict().items()}
    ref = _embed(model)
    handle = apply_scope(model, "adapters", adapter=AdapterConfig(kind="ffn", r=8, dropout=0.0))
    assert torch.equal(_embed(model), ref)  # the extra output columns start at zero
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".extra." in n for n in trainable)
    _step(model)  # AdamW with weight decay: frozen weights live outside the optimizer
    trained = _embed(model)
    assert not torch.allclose(trained, ref)
    wide = {k.replace(".base.", "."): v for k, v in backbone(model).state_dict().items() if ".extra." not in k}
    assert all(torch.equal(wide[k], v) for k, v in before.items())
    handle.finalize()
    hf = backbone(model)
    assert hf.config.intermediate_size == 64 + 8 and not any(".extra." in n for n, _ in hf.named_parameters())
    assert torch.allclose(_embed(model), trained, atol=1e-5)
    save_embedding_model(model, tmp_path / "saved")
    plain = SentenceTransformer(str(tmp_path / "saved"), device="cpu")  # no trust_remote_code: a standard model
    np_trained = trained.numpy()
    np.testing.assert_allclose(plain.encode(TEXTS, normalize_embeddings=False), np_trained, atol=1e-5)


def test_ffn_adapters_refuse_separate_saving_and_unknown_feed_forwards():
    with pytest.raises(ConfigError, match="no separate adapters to save"):
        AdapterConfig(kind="ffn", save="separate")
    from torch import nn

    from koforge.embeddings.ffn_adapters import ffn_layout

    with pytest.raises(ConfigError, match="adapter.kind 'ffn' needs a feed-forward of plain linear layers"):
        ffn_layout(nn.ModuleList([nn.Sequential(nn.Linear(4, 4))]))


def test_finalize_of_other_scopes_does_not_look_for_blocks(tiny_bert, monkeypatch):
    """Only a model with ffn adapters needs its blocks found at finalize (some backbones have no block list)."""
    import koforge.embeddings.scopes as sc

    model = build_embedding_model(tiny_bert)
    handle = apply_scope(model, "embeddings")

    def no_blocks(hf):
        raise AssertionError("finalize looked for blocks")
    monkeypatch.setattr(sc, "find_blocks", no_blocks)
    handle.finalize()


def test_adapters_of_a_hub_model_load_in_plain_sentence_transformers(tiny_bert, fake_hub):
    """`SentenceTransformer("org/name", trust_remote_code=True)`, as the model card says, gets the adapters too:
    they were read only from a local folder, so a hub model loaded without them, silently."""
    from sentence_transformers import SentenceTransformer

    from koforge.embeddings.model import save_embedding_model

    model = build_embedding_model(tiny_bert)
    apply_scope(model, "adapters", adapter=AdapterConfig(r=8, dropout=0.0))
    with torch.no_grad():  # trained adapters: the gate no longer zero
        for p in transformer_module(model).koforge_adapters.parameters():
            p.normal_(std=0.5)
    ref = model.encode(TEXTS)
    save_embedding_model(model, fake_hub("koforge-test/adapted"))
    loaded = SentenceTransformer("koforge-test/adapted", device="cpu", trust_remote_code=True)
    got = loaded.encode(TEXTS)
    assert np.abs(got - ref).max() < 1e-5, f"max diff {np.abs(got - ref).max()}"


def test_new_embeddings_keep_a_scaled_embedding_unchanged_gemma(tiny_bert, tmp_path):
    """Gemma 3 (EmbeddingGemma) multiplies its input embeddings by sqrt(hidden): the split table dropped that scale,
    so the stage trained and evaluated another function than the one its saved model loads as."""
    from transformers import AutoTokenizer, Gemma3TextConfig, Gemma3TextModel

    tok = AutoTokenizer.from_pretrained(str(tiny_bert))
    torch.manual_seed(0)
    cfg = Gemma3TextConfig(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=128)
    folder = tmp_path / "gemma"
    Gemma3TextModel(cfg).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    (folder / "expansion_report.json").write_text(json.dumps({"base_vocab_size": tok.vocab_size - 50,
                                                              "expanded_vocab_size": tok.vocab_size}))
    model = build_embedding_model(folder, EmbeddingModelConfig(pooling="lasttoken"))
    kind = type(backbone(model).get_input_embeddings())
    ref = _embed(model)
    handle = apply_scope(model, "new_embeddings", model_path=folder)
    during = _embed(model)
    assert torch.allclose(during, ref, atol=1e-6), f"max diff {(during - ref).abs().max()}"
    handle.finalize()
    assert type(backbone(model).get_input_embeddings()) is kind
    after = _embed(model)
    assert torch.allclose(after, ref, atol=1e-6), f"max diff {(after - ref).abs().max()}"


def test_top_blocks_train_modernberts_final_norm(tiny_bert, tmp_path):
    """'The top N blocks and the final norm, if any': ModernBERT's is `final_norm`, which stayed frozen."""
    from transformers import AutoTokenizer, ModernBertConfig, ModernBertModel

    tok = AutoTokenizer.from_pretrained(str(tiny_bert))
    cfg = ModernBertConfig(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, max_position_embeddings=128, pad_token_id=tok.pad_token_id,
                           bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id, cls_token_id=tok.cls_token_id,
                           sep_token_id=tok.sep_token_id)
    ModernBertModel(cfg).save_pretrained(str(tmp_path / "modernbert"))
    tok.save_pretrained(str(tmp_path / "modernbert"))
    model = build_embedding_model(tmp_path / "modernbert")
    apply_scope(model, "top_blocks", top_blocks=1)
    trainable = {n for n, p in backbone(model).named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("layers.1.", "final_norm.")) for n in trainable), sorted(trainable)
    assert any(n.startswith("final_norm.") for n in trainable), sorted(trainable)

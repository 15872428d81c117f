"""The `mlm` objective: masking rules, sampled softmax against the full one, scopes, recipes, refusals."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from koforge._utils.errors import ConfigError
from koforge.embeddings.mlm import MaskedLMLoss
from koforge.embeddings.model import backbone, build_embedding_model

TEXTS = ["한 남자가 기타를 치고 있다.", "여자가 요리를 한다.", "고양이가 잔다.", "a"]


def test_masking_chooses_only_ordinary_tokens_at_the_rate_and_one_per_text(tiny_bert):
    model = build_embedding_model(tiny_bert)
    loss = MaskedLMLoss(model, mask_rate=0.3)
    feats = model.preprocess(TEXTS * 50)
    ids, attn = feats["input_ids"], feats["attention_mask"]
    torch.manual_seed(0)
    masked, chosen = loss.mask(ids, attn)
    special = torch.isin(ids, torch.tensor(model.tokenizer.all_special_ids))
    assert not (chosen & (special | ~attn.bool())).any()  # never [CLS]/[SEP]/padding
    assert torch.equal(masked[~chosen], ids[~chosen])  # unchosen positions untouched
    assert chosen.any(dim=1).all()  # even the one-token text "a" predicts something
    ordinary = (attn.bool() & ~special).sum().item()
    assert 0.27 < chosen.sum().item() / ordinary < 0.36  # the rate (+ the one-per-text floor)
    as_mask = (masked[chosen] == model.tokenizer.mask_token_id).float().mean().item()
    kept = (masked[chosen] == ids[chosen]).float().mean().item()
    assert 0.72 < as_mask < 0.88 and 0.04 < kept < 0.18  # 80% mask, 10% random, 10% kept (+ random hits)


def test_full_softmax_matches_a_plain_reference_and_sampled_scores_the_targets(tiny_bert):
    model = build_embedding_model(tiny_bert)
    vocab = backbone(model).get_input_embeddings().num_embeddings
    feats = model.preprocess(TEXTS)
    full = MaskedLMLoss(model, negatives=vocab)
    torch.manual_seed(1)
    got = full([feats])
    torch.manual_seed(1)  # the same masks, by hand
    masked, chosen = full.mask(feats["input_ids"], feats["attention_mask"])
    hidden = backbone(model)(input_ids=masked, attention_mask=feats["attention_mask"]).last_hidden_state[chosen]
    logits = full.transform(hidden) @ backbone(model).get_input_embeddings().weight.t()
    assert got.item() == pytest.approx(F.cross_entropy(logits, feats["input_ids"][chosen]).item(), rel=1e-5)
    # Sampled: a smaller candidate set than the vocabulary, so a lower loss; gradients reach the tied rows.
    sampled = MaskedLMLoss(model, negatives=64)
    torch.manual_seed(1)
    value = sampled([feats])
    assert 0 < value.item() < got.item()
    value.backward()
    grad = backbone(model).get_input_embeddings().weight.grad
    assert grad is not None and grad.abs().sum(dim=1).count_nonzero() > len(TEXTS)


def test_mlm_under_new_embeddings_keeps_old_rows_bit_identical(tiny_expanded):
    from koforge.embeddings.scopes import apply_scope

    n_old = json.loads((tiny_expanded / "expansion_report.json").read_text())["base_vocab_size"]
    model = build_embedding_model(tiny_expanded)
    before = backbone(model).get_input_embeddings().weight.detach().clone()
    handle = apply_scope(model, "new_embeddings", model_path=tiny_expanded)
    loss = MaskedLMLoss(model, negatives=10 ** 6)  # full softmax: every row is a candidate of the decoder
    params = [p for p in model.parameters() if p.requires_grad] + list(loss.transform.parameters())
    opt = torch.optim.AdamW(params, lr=0.1, weight_decay=0.5)
    feats = model.preprocess(["한국어0 한국어1 사람", "한국어2 한국어3 말한다"])
    for _ in range(2):
        value = loss([feats])
        opt.zero_grad(), value.backward(), opt.step()
    handle.finalize()
    after = backbone(model).get_input_embeddings().weight.detach()
    assert torch.equal(after[:n_old], before[:n_old]), "old rows changed"
    assert not torch.equal(after[n_old:], before[n_old:]), "new rows did not learn"


def test_mlm_stage_in_a_recipe_and_its_refusals(assets, tiny_bert, tmp_path):
    from koforge.embeddings.recipe import load_recipe, run_recipe

    stage = {"name": "mlm", "scope": "full", "objective": "mlm", "max_steps": 2, "batch_size": 4, "learning_rate": 1e-3,
             "mask_rate": 0.2, "mlm_negatives": 128, "data": [{"kind": "text", "path": "embed_texts.txt"},
                                                              {"kind": "sts", "path": "embed_sts.tsv", "samples": 8}]}
    recipe = load_recipe({"name": "tiny", "data_root": str(assets), "device": "cpu", "evaluate_base": False,
                          "evaluation": {"korsts": "embed_sts.tsv", "korquad": None, "separation": None, "bitext_ko": None,
                                         "bitext_en": None}, "stages": [stage]})
    before = {k: v.clone() for k, v in backbone(build_embedding_model(tiny_bert)).state_dict().items()}
    result = run_recipe(recipe, tiny_bert, tmp_path / "run")
    meta = json.loads((result.final_model / "koforge_embedding.json").read_text())
    assert meta["train"]["train/steps"] == 2
    after = backbone(build_embedding_model(result.final_model)).state_dict()
    assert set(after) == set(before)  # the prediction head lives in the loss: the saved model is the plain encoder
    assert any(not torch.equal(after[k], before[k]) for k in before)
    with pytest.raises(ConfigError, match="mask_rate"):
        load_recipe({"name": "t", "stages": [{**stage, "mask_rate": 1.5}]})
    with pytest.raises(ConfigError, match="mlm_negatives"):
        load_recipe({"name": "t", "stages": [{**stage, "mlm_negatives": 0}]})


def test_mlm_on_a_tokenizer_without_a_mask_token_is_a_clear_error(tiny_bert):
    model = build_embedding_model(tiny_bert)
    model.tokenizer.mask_token = None  # as a decoder's tokenizer (Llama, Qwen3) has none
    with pytest.raises(ConfigError, match="mask token"):
        MaskedLMLoss(model)


def test_an_mlm_stage_on_a_tokenizer_without_a_mask_token_fails_before_any_stage_trains(assets, tiny_bert, tmp_path):
    import shutil

    from transformers import AutoTokenizer

    from koforge.embeddings.recipe import load_recipe, run_recipe

    folder = tmp_path / "nomask"
    shutil.copytree(tiny_bert, folder)
    tok = AutoTokenizer.from_pretrained(str(folder))
    tok.mask_token = None
    tok.save_pretrained(str(folder))
    assert AutoTokenizer.from_pretrained(str(folder)).mask_token_id is None
    stages = [{"name": "sts", "objective": "cosent", "max_steps": 1, "batch_size": 4,
               "data": [{"kind": "sts", "path": "embed_sts.tsv"}]},
              {"name": "text", "objective": "cosent", "max_steps": 1, "batch_size": 4,
               "data": [{"kind": "sts", "path": "embed_sts.tsv"}, {"kind": "text", "path": "embed_texts.txt", "objective": "mlm"}]}]
    recipe = load_recipe({"name": "t", "data_root": str(assets), "device": "cpu", "evaluate_base": False, "stages": stages})
    with pytest.raises(ConfigError, match="stage 'text': objective 'mlm' needs a tokenizer with a mask token"):
        run_recipe(recipe, folder, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before the first stage trained or wrote anything


def test_mlm_beside_other_objectives_under_torchrun_is_refused_before_training(assets, tiny_bert, tmp_path, monkeypatch):
    """Under torchrun each process draws its own batch of a multi-task stage: one's mlm head all-reduced its
    gradients while the other's DDP all-reduced the model's (gloo: 'collective mismatch', abort; nccl: a hang)."""
    from koforge.embeddings.recipe import load_recipe, run_recipe

    stage = {"name": "mix", "objective": "cosent", "max_steps": 2, "batch_size": 4, "mlm_negatives": 64,
             "data": [{"kind": "sts", "path": "embed_sts.tsv"}, {"kind": "text", "path": "embed_texts.txt", "objective": "mlm"}]}
    recipe = load_recipe({"name": "t", "data_root": str(assets), "device": "cpu", "evaluate_base": False,
                          "evaluation": {"korsts": None, "korquad": None, "separation": None, "bitext_ko": None},
                          "stages": [stage]})
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="stage 'mix': objective 'mlm' shares the stage with cosent.*stage of its own"):
        run_recipe(recipe, tiny_bert, tmp_path / "run")
    assert not (tmp_path / "run").exists()

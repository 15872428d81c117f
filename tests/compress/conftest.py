"""Tiny random Llama / Qwen3 / Exaone4 causal LMs saved as HF folders with a small Korean BPE tokenizer."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

ASSETS = Path(__file__).resolve().parents[1] / "assets"
VOCAB = 384


def tiny_config(kind: str, layers: int = 4, tied: bool = False):
    from transformers import Exaone4Config, LlamaConfig, Qwen3Config

    common = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=layers,
                  num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=512,
                  bos_token_id=0, eos_token_id=1, pad_token_id=2, tie_word_embeddings=tied)
    if kind == "llama":
        return LlamaConfig(**common)
    if kind == "qwen3":
        return Qwen3Config(head_dim=8, **common)
    if kind == "exaone4":
        types = ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(layers)]
        return Exaone4Config(sliding_window=16, sliding_window_pattern=2, layer_types=types, **common)
    raise ValueError(kind)


def tokenizer():
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_file=str(ASSETS / "compress_tokenizer.json"), bos_token="<s>",
                                   eos_token="</s>", pad_token="<pad>")


def make_model(kind: str, folder: Path, seed: int = 0, layers: int = 4, tied: bool = False) -> Path:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(kind, layers, tied))
    with torch.no_grad():  # larger-than-default weights so that cuts visibly change the logits
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.08)
    model.save_pretrained(str(folder))
    tokenizer().save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """One saved tiny model per supported family: {'llama': path, 'qwen3': ..., 'exaone4': ...}."""
    root = tmp_path_factory.mktemp("tiny")
    return {kind: make_model(kind, root / kind) for kind in ("llama", "qwen3", "exaone4")}


@pytest.fixture(scope="session")
def heldout() -> Path:
    return ASSETS / "compress_ko.txt"


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: on a busy 2-core machine, spinning OpenMP threads make tiny ops 10x slower."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)

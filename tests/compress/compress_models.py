"""Builders of tiny random Llama / Qwen3 / Exaone4 causal LMs saved as HF folders (shared by compress and eval tests).

A plain module, not a conftest: several test folders have a conftest.py, so
`from conftest import ...` would pick whichever was imported first."""
from __future__ import annotations

from pathlib import Path

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



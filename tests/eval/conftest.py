"""Tiny models the eval tests share (random weights, fixed seed, built once per session)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

# Tiny models gain nothing from intra-op threads, and on a shared 2-core machine they lose a lot.
torch.set_num_threads(1)

TOKENIZER_TEXTS = ["영화가 정말 재미있었어요", "배우들의 연기가 훌륭했다", "다시 보고 싶은 작품입니다", "지루하고 길었다"] * 4


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    """A 2-layer random Llama with a byte-level BPE trained on a few Korean lines (fixed seed)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_llama")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(TOKENIZER_TEXTS, trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>"],
                                                                 initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="</s>")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=128, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder

"""What a training run measures every `eval_every` steps: validation loss, perplexity and bits per byte over
fixed batches (all ranks agree under DDP), and sample continuations of fixed prompts."""
from __future__ import annotations

import math

import torch
import torch.distributed as dist

from koforge.lm.loss import linear_cross_entropy
from koforge.lm.model import KoLM


def encode_ids(tok, text: str) -> list[int]:
    enc = tok.encode(text)
    return list(getattr(enc, "ids", enc))


@torch.no_grad()
def evaluate(model: KoLM, batches: list, device: torch.device, amp: torch.dtype | None, tpb: float,
             eos_id: int | None = None) -> dict:
    """Mean validation loss over fixed batches, perplexity and bits per byte (under DDP: over every rank's
    slices of the batches, so all ranks get the 1-process figure). Loss and perplexity count every target;
    bits per byte only text targets: an EOS has no bytes, and its loss raised the figure by ~1% (`tpb`
    counts text tokens per byte)."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64)  # loss sum, targets, text loss sum, text targets
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        is_text = y != eos_id if eos_id is not None else torch.ones_like(y, dtype=torch.bool)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            h = model.hidden_states(x)
            for part in (is_text, ~is_text):
                count = int(part.sum())
                if count:
                    part_sum = float(linear_cross_entropy(h[part], model.lm_head.weight, y[part])) * count
                    sums += torch.tensor([part_sum, count] + ([part_sum, count] if part is is_text else [0, 0]))
    model.train(was_training)
    sums = sums.to(device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(sums)
    loss, text_loss = float(sums[0] / sums[1]), float(sums[2] / sums[3].clamp(min=1))
    return {"val_loss": loss, "val_ppl": math.exp(min(loss, 50.0)), "val_bpb": text_loss / math.log(2) * tpb}


def sample_generations(model: KoLM, tokenizer, prompts: list[str], n_tokens: int, eos_id: int | None,
                       seed: int = 0) -> list[dict]:
    """Sampled continuations (temperature 0.8, top-k 50, fixed seed) of fixed prompts."""
    from koforge.lm.engine import GenerationConfig, GenerationEngine

    was_training = model.training
    engine = GenerationEngine(model, max_batch=1, decoding_kernels=False)  # the model goes on training
    cfg = GenerationConfig(max_new_tokens=n_tokens, temperature=0.8, top_k=50, seed=seed,
                           stop_tokens=[eos_id] if eos_id is not None else [], truncate="left")
    rows = []
    for prompt in prompts:
        ids = encode_ids(tokenizer, prompt)
        out = engine.generate([ids or [eos_id or 0]], cfg)[0]
        rows.append({"prompt": prompt, "completion": tokenizer.decode(out.tokens)})
    model.train(was_training)
    return rows

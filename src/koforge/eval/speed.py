"""Generation speed of a causal LM: time per token, tokens/s, time to first token.

Decoding is a lean greedy loop over the model's own KV cache (one forward per
token, `logits_to_keep=1`, no sampling, no early stop), not `generate()`: its
per-step bookkeeping would be timed as if it were the model's, which on small
models hides most of what a compression gains. Every prompt gets exactly
`new_tokens` tokens. Warm-up passes are untimed; each timed pass covers all
prompts, and each figure is the median over `repeats` passes.
- time to first token: prefill of the prompt plus the first token;
- time per token: the later tokens' (decode) time divided by their count;
- tokens/s: all new tokens over the whole pass.
It measures one stream (batch 1) on the model's device; it does not measure
memory or batched throughput.
"""
from __future__ import annotations

import contextlib
import inspect
import statistics
import time
from typing import Any, Iterator, Sequence

import torch

from koforge._utils.errors import DataError
from koforge.eval._ids import check_ids_fit
from koforge.eval.needle import model_context


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op CPU threads (None: unchanged)."""
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _sync(device: torch.device) -> None:
    """Wait for the device's queued kernels (CUDA, MPS, XPU... run asynchronously: the clock would stop early)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type != "cpu":
        synchronize = getattr(getattr(torch, device.type, None), "synchronize", None)
        if synchronize is not None:
            synchronize()


def _cache_argument(model: Any) -> str:
    """`cache` from transformers 5.24 on (`past_key_values` is deprecated there), `past_key_values` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@torch.inference_mode()
def greedy_decode(model: Any, input_ids: torch.Tensor, new_tokens: int) -> tuple[torch.Tensor, float, float]:
    """Greedy-decode `new_tokens` tokens; returns (tokens (1, new_tokens), seconds to first, seconds total)."""
    device = input_ids.device
    _sync(device)
    start = time.perf_counter()
    out = model(input_ids=input_ids, use_cache=True, logits_to_keep=1)
    token = out.logits[:, -1].argmax(-1, keepdim=True)  # (1, 1)
    _sync(device)
    first = time.perf_counter() - start
    tokens = [token]
    cache_arg = _cache_argument(model)
    cache = out[cache_arg]
    for _ in range(new_tokens - 1):
        out = model(input_ids=token, use_cache=True, logits_to_keep=1, **{cache_arg: cache})
        cache = out[cache_arg]
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        tokens.append(token)
    _sync(device)
    return torch.cat(tokens, dim=1), first, time.perf_counter() - start


def measure_speed(model: Any, tokenizer: Any, prompts: Sequence[str], *, new_tokens: int = 32, warmup: int = 1,
                  repeats: int = 5, threads: int | None = None) -> dict:
    """Median time per token (ms), tokens/s and time to first token (ms) over `repeats` timed passes."""
    if not prompts:
        raise DataError("measure_speed got no prompts.")
    if new_tokens < 2 or repeats < 1 or warmup < 0:
        raise DataError(f"measure_speed needs new_tokens >= 2, repeats >= 1, warmup >= 0; got {new_tokens}, {repeats}, {warmup}.")
    device = next(model.parameters()).device
    positions = model_context(model)
    encoded = []
    for p in prompts:
        ids = tokenizer(p, add_special_tokens=True, return_tensors="pt")["input_ids"]
        if ids.shape[1] == 0:
            raise DataError(f"prompt {p!r} encodes to no tokens.")
        check_ids_fit(model, ids.flatten().tolist(), f"prompt {p[:40]!r}")
        # a learned position table (GPT-2) has no row past it: torch's bare IndexError would end the run
        if positions is not None and ids.shape[1] + new_tokens > positions:
            raise DataError(f"prompt {p[:40]!r} is {ids.shape[1]} tokens; with new_tokens={new_tokens} that is "
                            f"{ids.shape[1] + new_tokens} tokens, more than the model's {positions} positions. "
                            "Shorten the prompt or lower new_tokens (--new-tokens).")
        encoded.append(ids.to(device))
    passes = []
    with torch_threads(threads):
        for i in range(warmup + repeats):
            firsts, totals = [], []
            for ids in encoded:
                _, first, total = greedy_decode(model, ids, new_tokens)
                firsts.append(first)
                totals.append(total)
            if i >= warmup:
                decode = sum(totals) - sum(firsts)
                passes.append({"time_per_token_ms": 1000 * decode / (len(encoded) * (new_tokens - 1)),
                               "time_to_first_token_ms": 1000 * statistics.fmean(firsts),
                               "tokens_per_sec": len(encoded) * new_tokens / sum(totals)})
    result = {k: statistics.median(p[k] for p in passes) for k in passes[0]}
    result["time_per_token_ms_runs"] = [p["time_per_token_ms"] for p in passes]
    result.update({"new_tokens": new_tokens, "prompts": len(encoded), "warmup": warmup, "repeats": repeats,
                   "threads": threads or torch.get_num_threads(), "device": str(device)})
    return result

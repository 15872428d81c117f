"""Self-speculative greedy decoding with the model's own multi-token-prediction heads.

A model trained with `mtp_heads = n` drafts n tokens beyond the next one for
free: head k, fed the main model's hidden state at position t, predicts token
t + 2 + k. Each round the main model checks the next token and the n drafts
in one forward pass over the KV cache, keeps the drafts up to the first one
it disagrees with, and adds its own token there, so a round yields 1 to n + 1
tokens for one pass of the main model. The output is the main model's greedy
output: drafts only decide how many tokens one pass confirms (up to
floating-point ties between two logits, as any change of batch shape).

The heads keep their own KV cache (each head's block attends over the heads'
states at earlier positions), fed the main model's states of the accepted
positions after each round. Rejected positions are dropped by moving the
main cache's length back: their keys and values are overwritten next round.
Greedy and one prompt at a time; sampling would need rejection sampling.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import torch

from koforge._utils.errors import ConfigError
from koforge.lm.engine import fit_prompt
from koforge.lm.kv_cache import KVCache
from koforge.lm.model import KoLM


@dataclasses.dataclass
class SpeculativeResult:
    """Generated ids (stop token excluded), why decoding ended and how well the drafts did."""

    tokens: list[int]
    finish_reason: str  # "stop", "length" or "context"
    rounds: int  # forward passes of the main model after the prefill
    drafted: int
    accepted: int

    @property
    def acceptance(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def tokens_per_round(self) -> float:
        return len(self.tokens) / self.rounds if self.rounds else 0.0


class _HeadCache:
    """The MTP heads' KV cache: head k's block has layer index n_layers + k, stored at slot k."""

    def __init__(self, model: KoLM, max_len: int, dtype: torch.dtype, device: torch.device) -> None:
        config = model.config
        self.offset = config.n_layers
        self.cache = KVCache(dataclasses.replace(config, n_layers=config.mtp_heads), 1, max_len, dtype=dtype, device=device)

    @property
    def length(self) -> int:
        return self.cache.length

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cache.update(layer - self.offset, k, v)


def _causal_mask(T: int, start: int, device: torch.device) -> torch.Tensor | None:
    """[1, 1, T, start + T] mask for T new positions after `start` cached ones (None for one position:
    it sees everything). SDPA's is_causal aligns the diagonal top-left, wrong over a cached prefix."""
    if T == 1:
        return None
    rows = torch.arange(start, start + T, device=device)[:, None]
    return (torch.arange(start + T, device=device)[None, :] <= rows)[None, None]


def _draft(model: KoLM, hidden: torch.Tensor, heads: _HeadCache) -> list[int]:
    """Run every head over `hidden` [1, T, D] (new positions), extend their cache, return each head's
    greedy token at the last position."""
    T, start = hidden.shape[1], heads.length
    cos, sin = model._rope(None, start, T, hidden.dtype)
    mask = _causal_mask(T, start, hidden.device)
    drafts, h = [], hidden
    for head in model.mtp:
        h = head(h, cos, sin, mask=mask, cache=heads)
        drafts.append(int(model.lm_head(head.norm_out(h[:, -1])).argmax(-1)))
    heads.cache.advance(T)
    return drafts


@torch.inference_mode()
def speculative_generate(model: KoLM, prompt: Sequence[int], max_new_tokens: int, *,
                         stop_tokens: Sequence[int] = (), max_len: int | None = None,
                         truncate: str = "error") -> SpeculativeResult:
    """Greedy continuation of one prompt, n + 1 tokens checked per main-model pass (see module doc)."""
    n = model.config.mtp_heads
    if n < 1:
        raise ConfigError("speculative decoding drafts with multi-token-prediction heads, and this model has none "
                          "(mtp_heads=0). Train with mtp_heads >= 1, or decode without --speculative.")
    if max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be >= 1, got {max_new_tokens}.")
    model.eval()
    p = next(model.parameters())
    limit = min(max_len or model.config.max_seq_len, model.config.max_seq_len)
    if not prompt:
        raise ConfigError("the prompt is empty; a prompt needs at least one token (e.g. BOS/EOS).")
    prompt = fit_prompt(list(prompt), limit, max_new_tokens, truncate)
    vocab = model.config.vocab_size
    if not all((isinstance(t, int) or hasattr(t, "__index__")) and 0 <= int(t) < vocab for t in prompt):
        raise ConfigError(f"the prompt holds values that are not token ids in [0, {vocab}); encode text with the "
                          "model's tokenizer.")
    cache = KVCache(model.config, 1, limit, dtype=p.dtype, device=p.device)
    heads = _HeadCache(model, limit, p.dtype, p.device)
    ids = torch.tensor([list(prompt)], device=p.device)
    hidden = model.hidden_states(ids, cache=cache)
    nxt = int(model.lm_head(hidden[:, -1]).argmax(-1))
    drafts = _draft(model, hidden, heads)
    stops = set(stop_tokens)
    out: list[int] = []
    rounds = drafted = accepted = 0
    while True:
        if nxt in stops:
            return SpeculativeResult(out, "stop", rounds, drafted, accepted)
        out.append(nxt)
        if len(out) >= max_new_tokens:
            return SpeculativeResult(out, "length", rounds, drafted, accepted)
        if cache.length + 1 >= limit:
            return SpeculativeResult(out, "context", rounds, drafted, accepted)
        # Check the next token and as many drafts as the context and the length budget leave room for.
        k = min(n, limit - cache.length - 2, max_new_tokens - len(out) - 1)
        candidate = [nxt] + drafts[:k]
        start = cache.length
        hidden = model.hidden_states(torch.tensor([candidate], device=p.device), cache=cache,
                                     attn_mask=_causal_mask(len(candidate), start, p.device))
        greedy = model.lm_head(hidden[0]).argmax(-1).tolist()  # greedy[i]: the main model's token after candidate[i]
        rounds += 1
        drafted += k
        m = 0
        while m < k and drafts[m] == greedy[m] and drafts[m] not in stops:
            m += 1
        accepted += m
        out.extend(drafts[:m])  # k left room for these and for the next token
        if m < k and drafts[m] in stops and drafts[m] == greedy[m]:
            return SpeculativeResult(out, "stop", rounds, drafted, accepted)
        cache.length = start + 1 + m  # keep the checked token and the accepted drafts; later slots get overwritten
        nxt = greedy[m]
        drafts = _draft(model, hidden[:, :m + 1], heads)

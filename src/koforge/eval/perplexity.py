"""Perplexity of a causal LM by the sliding-window recipe of the Hugging Face docs.

The texts are joined with blank lines into one token stream (a BOS token in
front when the tokenizer has one, so the first text token is scored too). A
window of `context` tokens moves by `stride`; each token is scored at most
once, by the window that first covers it, with at least `context - stride`
tokens of left context (with stride == context, a window's first token has no
context in it and, as in the HF recipe, is not scored). NLL is summed in float64 from log-softmax of float32 logits,
so the figure does not depend on batch size. Bits per byte = total NLL /
(ln 2 * UTF-8 bytes of the joined text): comparable across tokenizers, unlike
perplexity. The bytes include those of tokens left unscored (the first token
without a BOS; each window's first with stride == context), so there bits per
byte reads up to 1/context low: compare bits per byte at stride < context.
It does not pad, sample, or truncate documents on its own.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from koforge._utils.errors import DataError
from koforge._utils.progress import progress
from koforge.eval._ids import check_ids_fit

JOINER = "\n\n"


def window_spans(n_tokens: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, first_scored) of each window: tokens [first_scored, end) are predicted in it."""
    spans, prev_end = [], 1  # token 0 has no left context: never scored
    for begin in range(0, n_tokens, stride):
        end = min(begin + context, n_tokens)
        if end > prev_end:
            spans.append((begin, end, max(prev_end, begin + 1)))
            prev_end = end
        if end == n_tokens:
            break
    return spans


@torch.inference_mode()
def evaluate_perplexity(model: Any, tokenizer: Any, texts: Sequence[str], *, context: int = 256, stride: int = 128,
                        batch_size: int = 4, add_bos: bool = True) -> dict:
    """Sliding-window perplexity and bits per byte of `model` on `texts`.

    Returns `perplexity`, `nll` (mean nats per token), `bits_per_byte`,
    `tokens` (scored), `bytes`, `windows`, `context`, `stride`.
    """
    if context < 2 or not 1 <= stride <= context:
        raise DataError(f"perplexity needs context >= 2 and 1 <= stride <= context; got context={context}, stride={stride}.")
    if isinstance(texts, str) or not callable(tokenizer):
        raise DataError("evaluate_perplexity takes a loaded model and tokenizer and a list of texts (wrap one text in a "
                        "list; load a tokenizer with AutoTokenizer.from_pretrained).")
    text = JOINER.join(t for t in texts if t and t.strip())
    if not text:
        raise DataError("perplexity got no non-empty text. Check the held-out text file.")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    bos = getattr(tokenizer, "bos_token_id", None)
    if add_bos and bos is not None:
        ids = [bos] + ids
    if len(ids) < 2:
        raise DataError(f"the text gives {len(ids)} token(s); perplexity needs at least 2.")
    check_ids_fit(model, ids, "the held-out text")
    positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if isinstance(positions, int) and min(context, len(ids)) > positions:  # windows past the position table
        raise DataError(f"context {context} is longer than the model can attend to (max_position_embeddings="
                        f"{positions}). Pass context <= {positions}, with stride at most that.")
    device = next(model.parameters()).device
    stream = torch.tensor(ids, dtype=torch.long)
    spans = window_spans(len(ids), context, stride)
    total_nll, total_tokens = 0.0, 0
    # Windows of equal length share a batch; only the last one or two are shorter.
    groups: dict[int, list[tuple[int, int, int]]] = {}
    for span in spans:
        groups.setdefault(span[1] - span[0], []).append(span)
    batches = [g[i:i + batch_size] for g in groups.values() for i in range(0, len(g), batch_size)]
    for batch in progress(batches, desc="perplexity", leave=False):
        inputs = torch.stack([stream[b:e] for b, e, _ in batch]).to(device)  # (B, T)
        logits = model(input_ids=inputs, use_cache=False).logits  # (B, T, V), the model's dtype
        for row, (b, e, first) in enumerate(batch):
            # one window's scored positions in float32 at a time: a float32 copy and a log-softmax of the
            # whole (B, T, V) batch took ~30 GB at context 2048, batch 8 and a 151K vocabulary
            row_logits = logits[row, first - b - 1:-1].float()  # position t predicts token t+1
            scored = F.log_softmax(row_logits, dim=-1).gather(-1, inputs[row, first - b:, None]).squeeze(-1)
            total_nll -= float(scored.double().sum())
            total_tokens += scored.numel()
    n_bytes = len(text.encode("utf-8"))
    nll = total_nll / total_tokens
    try:
        perplexity = math.exp(nll)
    except OverflowError:  # past ~709.78 nats per token (a diverged or destroyed model)
        perplexity = math.inf
    return {"perplexity": perplexity, "nll": nll, "bits_per_byte": total_nll / (math.log(2) * n_bytes),
            "tokens": total_tokens, "bytes": n_bytes, "windows": len(spans), "context": context, "stride": stride}

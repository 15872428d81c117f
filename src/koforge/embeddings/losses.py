"""Objectives, built from sentence-transformers losses.

| objective | columns | loss |
|---|---|---|
| simcse  | anchor, positive (= the same text) | MultipleNegativesRankingLoss, scale 1/temperature: the two dropout views are the positives, the rest of the batch the negatives |
| infonce | anchor, positive[, negative] | MultipleNegativesRankingLoss (hard negatives join the in-batch negatives) |
| cosent  | sentence1, sentence2, score | CoSENTLoss, scale 1/temperature (20 at the default 0.05, its own default) |
| angle   | sentence1, sentence2, score | AnglELoss, scale 1/temperature |
| distill | text, label (teacher embedding) | MSELoss to the teacher's embedding |
| mlm     | text | masked-language-model loss, tied sampled-softmax decoder (`koforge.embeddings.mlm`; encoders) |

`mini_batch_size` turns simcse/infonce into CachedMultipleNegativesRankingLoss
(GradCache, Gao et al. 2021). Why not gradient accumulation: an InfoNCE loss
over a batch of B compares every anchor with all B candidates; accumulating k
micro-batches of B/k gives k losses that each see only B/k negatives, a
different (easier) objective. GradCache embeds the full batch without graphs,
computes the exact full-batch loss and its gradient w.r.t. the embeddings,
then replays each mini-batch with a graph to push those gradients into the
weights: the same gradient as one big batch at mini-batch memory.
"""
from __future__ import annotations

from typing import Any

from koforge._utils.errors import ConfigError

OBJECTIVES = ("simcse", "infonce", "cosent", "angle", "distill", "mlm")
COLUMNS = {"simcse": ("anchor", "positive"), "infonce": ("anchor", "positive"),
           "cosent": ("sentence1", "sentence2", "score"), "angle": ("sentence1", "sentence2", "score"),
           "distill": ("text", "label"), "mlm": ("text",)}


def build_loss(objective: str, model: Any, *, temperature: float = 0.05, mini_batch_size: int | None = None,
               mask_rate: float = 0.15, mlm_negatives: int = 4096):
    """The sentence-transformers loss for `objective`."""
    from sentence_transformers.sentence_transformer import losses

    if objective not in OBJECTIVES:
        raise ConfigError(f"objective '{objective}' is unknown; use one of {', '.join(OBJECTIVES)}.")
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}.")
    if objective in ("simcse", "infonce"):
        if mini_batch_size:
            return losses.CachedMultipleNegativesRankingLoss(model, scale=1.0 / temperature,
                                                             mini_batch_size=mini_batch_size, show_progress_bar=False)
        return losses.MultipleNegativesRankingLoss(model, scale=1.0 / temperature)
    if objective == "cosent":
        return losses.CoSENTLoss(model, scale=1.0 / temperature)
    if objective == "angle":
        return losses.AnglELoss(model, scale=1.0 / temperature)
    if objective == "mlm":
        from koforge.embeddings.mlm import MaskedLMLoss

        return MaskedLMLoss(model, mask_rate=mask_rate, negatives=mlm_negatives)
    return losses.MSELoss(model)

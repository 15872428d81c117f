"""Needle in a haystack: does a causal LM find one fact hidden at a chosen depth of a long Korean context?

Each cell of a grid of prompt lengths (tokens) x depths (0 = the start of the haystack, 1 = its end) builds
prompts of exactly that many tokens: an instruction, real Korean text (the haystack, whole sentences, cut
to fit), a needle sentence carrying a random 7-digit number put in at the sentence boundary nearest the depth,
and the question, which ends where the answer begins ("... 숫자는 "). The model greedy-decodes
`new_tokens` tokens (the lean KV-cache loop of `koforge.eval.speed`); a trial counts as found when the
number appears in them. Each cell runs `trials` numbers, each over a haystack starting at another sentence
(seeded: the same call gives the same prompts). Reported: accuracy overall, per length and per depth, a
row per cell and a heatmap (depth x length) as a PNG.

Prompts are assembled from token ids, not re-tokenized text, so their length is exact: the haystack is
encoded once, sentence by sentence.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from koforge._utils.errors import ConfigError, DataError
from koforge._utils.io import atomic_file
from koforge._utils.progress import progress
from koforge.eval._ids import check_ids_fit

INSTRUCTION = "다음 글 어딘가에 특별한 마법의 숫자가 숨어 있습니다. 글을 읽고 마지막 질문에 답하세요.\n\n"
NEEDLE = "\n특별한 마법의 숫자는 {number}입니다.\n"
QUESTION = "\n\n질문: 글 속에 숨어 있는 특별한 마법의 숫자는 무엇입니까?\n답: 특별한 마법의 숫자는 "
DEFAULT_DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
MIN_HAYSTACK = 16
"""Fewest haystack tokens a prompt may hold: a shorter length would test only the needle."""


@dataclass(frozen=True)
class NeedlePrompt:
    """One prompt of the grid: its token ids, the hidden number and where the needle's first token sits."""

    input_ids: list[int]
    answer: str
    needle_start: int


def _encode(tokenizer: Any, text: str, *, special: bool = False) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class Haystack:
    """Korean text encoded once as sentences (each with the space or newline after it), from which prompts
    of exact lengths are cut; the needle goes between two sentences."""

    def __init__(self, tokenizer: Any, texts: Sequence[str]) -> None:
        lines = [t.strip() for t in texts if t.strip()]
        if not lines:
            raise DataError("the needle-in-a-haystack task got no haystack text; pass text files with --data.")
        self.tokenizer = tokenizer
        pieces = [s + end for line in lines for s, end in self._sentences(line)]
        self.sentences = [ids for ids in (_encode(tokenizer, piece) for piece in pieces) if ids]
        self.head = _encode(tokenizer, INSTRUCTION, special=True)  # with the BOS a tokenizer adds
        self.question = _encode(tokenizer, QUESTION)

    @staticmethod
    def _sentences(line: str) -> list[tuple[str, str]]:
        parts = SENTENCE_END.split(line)
        return [(part, " " if i < len(parts) - 1 else "\n") for i, part in enumerate(parts)]

    def overhead(self, answer: str) -> int:
        """Tokens of a prompt that are not haystack: instruction, needle and question."""
        return len(self.head) + len(_encode(self.tokenizer, NEEDLE.format(number=answer))) + len(self.question)

    def prompt(self, length: int, depth: float, answer: str, first_sentence: int) -> NeedlePrompt:
        """A prompt of exactly `length` tokens with the needle at the sentence boundary nearest `depth`."""
        needle = _encode(self.tokenizer, NEEDLE.format(number=answer))
        budget = length - len(self.head) - len(needle) - len(self.question)
        if budget < MIN_HAYSTACK:
            raise ConfigError(f"needle length {length} leaves {budget} haystack tokens (instruction, needle and question "
                              f"take {length - budget}); use lengths >= {length - budget + MIN_HAYSTACK}.")
        hay: list[int] = []
        bounds = [0]  # token offsets where a sentence starts: where the needle may go
        i = first_sentence
        while len(hay) < budget:
            hay += self.sentences[i % len(self.sentences)]
            bounds.append(min(len(hay), budget))
            i += 1
        hay = hay[:budget]
        at = min(bounds, key=lambda b: abs(b - depth * budget))
        ids = self.head + hay[:at] + needle + hay[at:] + self.question
        return NeedlePrompt(input_ids=ids, answer=answer, needle_start=len(self.head) + at)


def found(answer: str, generated: str) -> bool:
    """The number appears in the generated text (spaces and thousands separators ignored)."""
    return answer in re.sub(r"[\s,]", "", generated)


def _greedy_text(model: Any, tokenizer: Any, prompt: NeedlePrompt, new_tokens: int) -> str:
    from koforge.eval.speed import greedy_decode

    device = next(model.parameters()).device
    tokens, _, _ = greedy_decode(model, torch.tensor([prompt.input_ids], device=device), new_tokens)
    return tokenizer.decode(tokens[0].tolist(), skip_special_tokens=True)


def model_context(model: Any) -> Optional[int]:
    """The model's context length from its config (None when it records none)."""
    config = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def default_lengths(context: Optional[int], new_tokens: int, *, floor: int = 128, ceiling: int = 4096) -> list[int]:
    """Powers of two from `floor` to what the context holds with the answer's tokens (at most `ceiling`)."""
    room = min(context - new_tokens if context else 1024, ceiling)
    lengths = [n for n in (2 ** k for k in range(7, 13)) if floor <= n <= room]
    return lengths or [room]


def evaluate_needle(model: Any, tokenizer: Any, texts: Sequence[str], *, lengths: Sequence[int] = (),
                    depths: Sequence[float] = DEFAULT_DEPTHS, trials: int = 2, new_tokens: int = 12, seed: int = 0,
                    generate: Optional[Callable[[NeedlePrompt], str]] = None) -> dict:
    """Accuracy of finding the needle over lengths x depths; `generate` replaces the model's greedy decode
    (prompt -> generated text), e.g. to test the grid without a model that can read."""
    if trials < 1 or new_tokens < 1:
        raise ConfigError(f"trials and new_tokens must be >= 1, got {trials} and {new_tokens}.")
    if not depths or any(not 0.0 <= d <= 1.0 for d in depths):
        raise ConfigError(f"needle depths must be fractions in [0, 1] (0 = start, 1 = end), got {list(depths)}.")
    context = model_context(model) if model is not None else None
    lengths = sorted(set(lengths)) or default_lengths(context, new_tokens)
    if context is not None and lengths[-1] + new_tokens > context:
        raise ConfigError(f"needle length {lengths[-1]} plus {new_tokens} answer tokens exceeds the model's context of "
                          f"{context} tokens; use lengths <= {context - new_tokens}.")
    haystack = Haystack(tokenizer, texts)
    if model is not None:
        check_ids_fit(model, [i for s in haystack.sentences + [haystack.head, haystack.question] for i in s], "the haystack")
    shortest = haystack.overhead("1234567") + MIN_HAYSTACK  # answers are 7-digit numbers
    if lengths[0] < shortest:  # refused before the grid starts, not at its first cell
        raise ConfigError(f"needle length {lengths[0]} is too short for this tokenizer: instruction, needle and "
                          f"question take {shortest - MIN_HAYSTACK} tokens and the haystack needs {MIN_HAYSTACK}; "
                          f"use lengths >= {shortest}.")
    generate = generate or (lambda p: _greedy_text(model, tokenizer, p, new_tokens))
    rng = random.Random(seed)
    cells = []
    grid = [(n, d) for n in lengths for d in depths]
    for length, depth in progress(grid, desc="needle", total=len(grid)):
        hits = 0
        for _ in range(trials):
            prompt = haystack.prompt(length, depth, str(rng.randrange(1_000_000, 10_000_000)), rng.randrange(len(haystack.sentences)))
            hits += found(prompt.answer, generate(prompt))
        cells.append({"length": length, "depth": depth, "trials": trials, "found": hits, "accuracy": hits / trials})

    def mean(rows: list[dict]) -> float:
        return sum(r["found"] for r in rows) / sum(r["trials"] for r in rows)

    out: dict[str, Any] = {"accuracy": mean(cells)}
    out.update({f"accuracy@{n}": mean([c for c in cells if c["length"] == n]) for n in lengths})
    out.update({f"accuracy@depth{d:g}": mean([c for c in cells if c["depth"] == d]) for d in depths})
    out.update({"cells": cells, "lengths": list(lengths), "depths": list(depths), "trials": trials,
                "new_tokens": new_tokens, "seed": seed, "primary": out["accuracy"]})
    return out


def plot_needle(result: dict, path: str | Path, title: str = "needle in a haystack") -> Path:
    """Heatmap of accuracy, depth (rows) x prompt length (columns), each cell annotated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths, depths = result["lengths"], result["depths"]
    grid = [[next(c["accuracy"] for c in result["cells"] if c["length"] == n and c["depth"] == d) for n in lengths]
            for d in depths]
    fig, ax = plt.subplots(figsize=(1.2 * len(lengths) + 2.5, 0.6 * len(depths) + 1.8))
    image = ax.imshow(grid, cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(lengths)), [str(n) for n in lengths])
    ax.set_yticks(range(len(depths)), [f"{d:.0%}" for d in depths])
    ax.set_xlabel("prompt length (tokens)")
    ax.set_ylabel("needle depth")
    for r, row in enumerate(grid):
        for c, value in enumerate(row):
            ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(image, ax=ax, label="found")
    ax.set_title(f"{title} (accuracy {result['accuracy']:.2f})")
    fig.tight_layout()
    path = Path(path)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path

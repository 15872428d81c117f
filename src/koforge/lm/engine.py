"""Fast generation: KV-cache prefill + decode loop over token ids.

The engine knows nothing about tokenization: prompts are lists of ids, stop
conditions are ids, id sequences or a callback (the CLI turns stop strings
into one). Batched prompts of different lengths are left-padded; an attention
mask hides the padding and per-row positions keep RoPE exact, so every row
generates what it would alone (greedy; sampled rows draw from one generator),
with its own length budget and finish reason. The rows share the cache's time
axis, padding included: when it fills while a shorter row still has context
left, the slots that are padding for every unfinished row are dropped (one
copy of the cache), so a short prompt is never cut short by a long one.
Sampling is shared with the model's naive `generate` (`koforge.lm.sampling`),
which the tests compare token for token.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Iterator, Optional

import torch

from koforge._utils.errors import ConfigError
from koforge.lm.compiled_decode import decode_step
from koforge.lm.deploy import use_cpu_decoding_kernels
from koforge.lm.kv_cache import KVCache
from koforge.lm.model import KoLM
from koforge.lm.sampling import SamplingConfig, sample_next

TRUNCATE = ("error", "left")


@dataclasses.dataclass(kw_only=True)
class GenerationConfig(SamplingConfig):
    """Sampling plus length, stop conditions, seed and over-long prompt policy."""

    max_new_tokens: int = 64
    """Most tokens generated per prompt (fewer when the context fills up or a stop condition hits)."""
    stop_tokens: list[int] = dataclasses.field(default_factory=list)
    """Token ids that end a row (e.g. EOS); not included in the output."""
    stop_sequences: list[list[int]] = dataclasses.field(default_factory=list)
    """Id sequences that end a row when generated; not included in the output."""
    seed: Optional[int] = None
    """Seed of the sampling generator (same seed, same output)."""
    truncate: str = "error"
    """A prompt that does not fit the context: error, or left (keep its last tokens: room for max_new_tokens,
    but at least half the context)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}.")
        if self.truncate not in TRUNCATE:
            raise ConfigError(f"truncate='{self.truncate}' is unknown; use error or left.")


def fit_prompt(prompt: list[int], max_len: int, max_new_tokens: int, truncate: str, index: int = 0) -> list[int]:
    """The prompt as it enters a context of `max_len`: unchanged when it leaves room for one new token, else
    refused (truncate="error") or cut to its last tokens (truncate="left"), leaving room for the new tokens
    but keeping at least half the context, so a large max_new_tokens cannot reduce it to a token or two."""
    if len(prompt) < max_len:
        return prompt
    if truncate == "error":
        raise ConfigError(f"prompt {index} has {len(prompt)} tokens but the context holds {max_len} "
                          "(prompt + at least one new token). Shorten it or pass truncate='left' (--truncate left).")
    return prompt[-max(1, max_len - max_new_tokens, max_len // 2):]


@dataclasses.dataclass
class Generation:
    """One row's output: generated ids (stop condition excluded) and why it ended."""

    tokens: list[int]
    finish_reason: str  # "stop", "length" or "context"


def _with_settings(config: GenerationConfig, settings: dict) -> GenerationConfig:
    """`config` with the given fields replaced; an unknown name is refused with the valid ones."""
    if not settings:
        return config
    names = [f.name for f in dataclasses.fields(GenerationConfig)]
    unknown = [k for k in settings if k not in names]
    if unknown:
        raise ConfigError(f"'{unknown[0]}' is not a generation setting; use one of {', '.join(names)}.")
    return dataclasses.replace(config, **settings)


class GenerationEngine:
    """Prefill + decode with a pre-allocated KV cache, reused across calls.

    With `decoding_kernels` (default) the model's float32 linears on CPU are swapped in place for
    `koforge.lm.deploy.DecodingLinear` (same weights, faster skinny GEMMs); pass False for a model
    that goes on training (the trainer's sample generations do).

    With `compile=True` the decode steps run `koforge.lm.compiled_decode.decode_step` through
    `torch.compile` (inductor, dynamic=False): fixed shapes over the whole pre-allocated cache, so the
    first request of each batch size compiles once (tens of seconds on a CPU) and every later step and
    request of that size reuses the graph. The prefill stays eager. Greedy outputs equal the eager
    engine's, also after the weights change in place (the graph reads them at each step). The graphs are
    cached per process (up to `torch._dynamo.config.recompile_limit` (batch size, cache size, model)
    combinations; beyond that torch runs the step uncompiled).
    """

    def __init__(self, model: KoLM, *, max_batch: int = 8, max_len: int | None = None,
                 decoding_kernels: bool = True, compile: bool = False) -> None:
        if compile and any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules()):
            raise ConfigError("compile=True does not support int8 (dynamically quantized) models; "
                              "use compile with fp32/bf16/fp16 weights, or int8 without compile.")
        if compile and model.config.moe_experts:  # fullgraph compile fails on the data-dependent expert dispatch
            raise ConfigError("compile=True does not support mixture-of-experts models (moe_experts="
                              f"{model.config.moe_experts}): their expert dispatch has data-dependent shapes. "
                              "Decode them without compile.")
        self.model = use_cpu_decoding_kernels(model.eval()) if decoding_kernels else model.eval()
        self.config = model.config
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.max_len = min(max_len or self.config.max_seq_len, self.config.max_seq_len)
        self.cache = KVCache(self.config, max_batch, self.max_len, dtype=self.dtype, device=self.device)
        self._compiled_step = torch.compile(decode_step, dynamic=False, fullgraph=True) if compile else None

    def _prepare(self, prompts: list[list[int]], config: GenerationConfig) -> list[list[int]]:
        if hasattr(prompts, "tolist"):  # a (B, T) tensor or array of ids
            prompts = prompts.tolist()
        if isinstance(prompts, (str, bytes)) or (isinstance(prompts, (list, tuple)) and prompts
                                                 and not all(isinstance(p, (list, tuple)) for p in prompts)):
            raise ConfigError("prompts are a list of token-id lists, one per prompt (e.g. [[5, 6, 7]]), not text or "
                              "one flat list: encode text with the model's tokenizer first, and wrap one prompt in a list.")
        if not prompts:
            raise ConfigError("no prompts given; pass at least one prompt of token ids.")
        if len(prompts) > self.cache.max_batch:
            raise ConfigError(f"{len(prompts)} prompts exceed the engine's max_batch={self.cache.max_batch}; "
                              "create the engine with a larger max_batch or split the prompts.")
        out = []
        for i, p in enumerate(prompts):
            if not all(isinstance(t, int) or hasattr(t, "__index__") for t in p):
                raise ConfigError(f"prompt {i} holds {next(type(t).__name__ for t in p if not isinstance(t, int))}s, "
                                  "not token ids: encode text with the model's tokenizer first.")
            p = [int(t) for t in p]
            if not p:
                raise ConfigError(f"prompt {i} is empty; a prompt needs at least one token (e.g. BOS/EOS).")
            if any(t < 0 or t >= self.config.vocab_size for t in p):
                raise ConfigError(f"prompt {i} has ids outside [0, {self.config.vocab_size}); use the model's tokenizer.")
            out.append(fit_prompt(p, self.max_len, config.max_new_tokens, config.truncate, i))
        return out

    def stream(self, prompts: list[list[int]], config: GenerationConfig | None = None,
               should_stop: Callable[[int, list[int]], bool] | None = None,
               **settings: object) -> Iterator[list[Optional[int]]]:
        """An iterator yielding, per decoding step, the new id of each row (None for rows already finished).

        The prompts are checked (and truncated by `config.truncate`) by this call, before any step: errors
        come here, and `self.prompts` holds the prompts as they are used. `should_stop(row, generated_ids)`
        is asked after each new id (stop strings). Finished rows' outputs are in `self.results` at the end.
        `settings` (max_new_tokens=..., temperature=...) replace fields of `config`, as in HF's generate.
        """
        config = _with_settings(config or GenerationConfig(), settings)
        self.prompts = self._prepare(prompts, config)
        return self._decode(self.prompts, config, should_stop)

    @torch.inference_mode()
    def _decode(self, prompts: list[list[int]], config: GenerationConfig,
                should_stop: Callable[[int, list[int]], bool] | None) -> Iterator[list[Optional[int]]]:
        B, lengths = len(prompts), [len(p) for p in prompts]
        T = max(lengths)
        dev = self.device
        ids = torch.zeros(B, T, dtype=torch.long, device=dev)
        valid = torch.zeros(B, T, dtype=torch.bool, device=dev)
        for i, p in enumerate(prompts):
            ids[i, T - len(p):] = torch.tensor(p, device=dev)
            valid[i, T - len(p):] = True
        padded = min(lengths) != T
        seen = None  # tokens so far, only needed by a repetition penalty
        if config.repetition_penalty != 1.0:
            seen = torch.zeros(B, self.config.vocab_size, dtype=torch.bool, device=dev)
            # Padding slots repeat the row's last token: scattering False for the pad id (0) could
            # otherwise overwrite a True of a real 0 in the prompt (scatter order is undefined).
            seen.scatter_(1, torch.where(valid, ids, ids[:, -1:]), True)
        gen = torch.Generator(device=dev).manual_seed(config.seed) if config.seed is not None else None
        self.cache.reset(B)
        budget = [min(config.max_new_tokens, self.max_len - n) for n in lengths]  # what each row gets alone
        # A row finished early at the end of the context still decodes (its output ignored): hold its position.
        last_pos = self.max_len - 1 if len(set(budget)) > 1 else None
        pad, filled = [T - n for n in lengths], T  # leading padding slots of each row; slots in use
        # Keys each row may attend to. Eager steps slice it to the positions written so far; the compiled
        # step attends to the whole cache and marks each position valid as it writes it.
        key_valid = torch.full((B, self.max_len), self._compiled_step is None, dtype=torch.bool, device=dev)
        key_valid[:, :T] = valid
        next_pos = torch.tensor(lengths, device=dev)  # RoPE position of each row's next token
        if padded:
            positions = (valid.cumsum(1) - 1).clamp(min=0)  # [B, T]
            causal = torch.tril(torch.ones(T, T, dtype=torch.bool, device=dev))
            mask = (causal[None] & valid[:, None, :]) | torch.eye(T, dtype=torch.bool, device=dev)[None]
            logits = self.model(ids, positions=positions, attn_mask=mask[:, None], cache=self.cache, last_only=True)[:, -1]
        else:
            logits = self.model(ids, cache=self.cache, last_only=True)[:, -1]
        slot = torch.tensor([T], device=dev)  # the compiled step's cache index
        stop_ids = set(config.stop_tokens)
        outputs: list[list[int]] = [[] for _ in range(B)]
        self.partial = outputs  # what each row has generated so far (read by streaming callers)
        reasons: list[Optional[str]] = [None] * B
        for step in range(max(budget)):
            nxt = sample_next(logits, config, gen, seen)
            if seen is not None:
                seen.scatter_(1, nxt[:, None], True)
            emitted: list[Optional[int]] = [None] * B
            for i, t in enumerate(nxt.tolist()):
                if reasons[i] is not None:
                    continue
                if t in stop_ids:
                    reasons[i] = "stop"
                    continue
                outputs[i].append(t)
                emitted[i] = t
                for seq in config.stop_sequences:
                    if seq and outputs[i][-len(seq):] == list(seq):
                        del outputs[i][-len(seq):]
                        reasons[i] = "stop"
                        break
                if reasons[i] is None and should_stop is not None and should_stop(i, outputs[i]):
                    reasons[i] = "stop"
                if reasons[i] is None and step + 1 == budget[i]:
                    reasons[i] = "length" if budget[i] == config.max_new_tokens else "context"
            yield emitted
            if all(r is not None for r in reasons):
                break
            if filled == self.max_len:  # the shared time axis is full, but a shorter row has context left
                drop = min(p for p, r in zip(pad, reasons) if r is None)
                self._drop_oldest(drop, key_valid, slot)
                pad, filled = [p - drop for p in pad], filled - drop
            filled += 1
            if self._compiled_step is not None:
                logits = self._compiled_step(self.model, *self.cache.layers(), nxt, next_pos, slot, key_valid)
                if last_pos is not None:
                    next_pos.clamp_(max=last_pos)
            elif padded:
                S = self.cache.length + 1
                logits = self.model(nxt[:, None], positions=next_pos[:, None], attn_mask=key_valid[:, None, None, :S],
                                    cache=self.cache, last_only=True)[:, -1]
                next_pos = next_pos + 1 if last_pos is None else (next_pos + 1).clamp_(max=last_pos)
            else:
                logits = self.model(nxt[:, None], cache=self.cache, last_only=True)[:, -1]
        self.results = [Generation(tokens=o, finish_reason=r) for o, r in zip(outputs, reasons)]

    def _drop_oldest(self, n: int, key_valid: torch.Tensor, slot: torch.Tensor) -> None:
        """Drop the first `n` slots of the cache's time axis (padding for every unfinished row) in place."""
        assert 0 < n < self.max_len, n
        self.cache.drop_oldest(n)
        key_valid[:, :-n] = key_valid[:, n:].clone()
        key_valid[:, -n:] = self._compiled_step is None  # the initial value of positions not written yet
        slot.sub_(n)

    def generate(self, prompts: list[list[int]], config: GenerationConfig | None = None,
                 should_stop: Callable[[int, list[int]], bool] | None = None, **settings: object) -> list[Generation]:
        """Generate for every prompt; returns one `Generation` per prompt (`settings`: fields of GenerationConfig)."""
        for _ in self.stream(prompts, config, should_stop, **settings):
            pass
        return self.results

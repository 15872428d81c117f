"""KoLM: a small decoder-only transformer in the Llama layout.

RoPE, grouped-query attention through `scaled_dot_product_attention`, SwiGLU
(or a mixture-of-experts MLP), RMSNorm, optional tied embeddings and optional
multi-token-prediction heads. Parameter names are those of Hugging Face's
`LlamaForCausalLM` (`model.layers.N.self_attn.o_proj.weight`, ...) except two
fused projections, `qkv_proj` (q, k, v stacked) and `gate_up_proj` (gate, up):
fewer, larger GEMMs and fewer ops per decoding step. `split_fused_tensors` and
`fuse_llama_tensors` convert to and from the Llama names exactly (export,
import, and checkpoints written before the fusion). The model is single-device and knows
nothing about tokenization; `generate` here is the naive reference (full
recompute each step) that the KV-cache engine (`koforge.lm.engine`) is tested
against. Parallelism, compilation and checkpointing are applied from outside
(`koforge.lm.train`).
"""
from __future__ import annotations

import dataclasses
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from koforge.lm.config import LMConfig
from koforge.lm.loss import linear_cross_entropy
from koforge.lm.moe import MoE, SwiGLU
from koforge.lm.rope import apply_rope, rope_tables
from koforge.lm.sampling import SamplingConfig, sample_next


class LayerCache(Protocol):
    """What attention needs from a KV cache (see `koforge.lm.kv_cache.KVCache`)."""

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


class RMSNorm(nn.Module):
    """Root-mean-square norm computed in float32, like Llama.

    Written out in five ops rather than F.rms_norm, whose CPU path adds two dtype copies: 0.5 ms less
    per decoding step at batch 8 (17 norms), the same in training, and exportable to ONNX as it is.
    """

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()  # no copy for float32
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True).add_(self.eps))
        return y * self.weight if x.dtype == torch.float32 else self.weight * y.to(x.dtype)


class Attention(nn.Module):
    """Grouped-query self-attention with RoPE; q, k and v come from one fused projection."""

    def __init__(self, config: LMConfig, layer: int) -> None:
        super().__init__()
        self.layer, self.n_heads, self.n_kv_heads, self.head_dim = layer, config.n_heads, config.n_kv_heads, config.head_dim
        d = config.d_model
        # One GEMM instead of three (Llama's q_proj, k_proj, v_proj stacked by rows; see `fuse_llama_tensors`).
        self.qkv_proj = nn.Linear(d, (config.n_heads + 2 * config.n_kv_heads) * self.head_dim, bias=False)
        self.o_proj = nn.Linear(config.n_heads * self.head_dim, d, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None,
                cache: LayerCache | None) -> torch.Tensor:
        B, T, _ = x.shape
        H, Hkv, D = self.n_heads, self.n_kv_heads, self.head_dim
        # split (not slicing) so that backward assembles each gradient with one cat, not zeros + copy + add.
        qk, v = self.qkv_proj(x).view(B, T, H + 2 * Hkv, D).split([H + Hkv, Hkv], dim=2)
        q, k = apply_rope(qk, cos, sin).split([H, Hkv], dim=2)  # queries and keys rotated together
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H, T, D], [B, Hkv, T, D] x 2
        if cache is not None:
            k, v = cache.update(self.layer, k, v)  # [B, Hkv, S, D], S = cached + T
        if cache is not None and T == 1 and Hkv != H:
            # Decode step: fold each group's query heads onto the query axis, [B, Hkv, G, D], so they
            # attend to their shared K/V head in one small kernel, no mask needed.
            q = q.reshape(B, Hkv, H // Hkv, D)
            y = _decode_attention(q, k, v, mask) if torch.compiler.is_compiling() else \
                F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            return self.o_proj(y.reshape(B, 1, H * D))
        gqa = {"enable_gqa": True} if Hkv != H else {}
        if gqa and torch.jit.is_tracing():  # the TorchScript (ONNX) exporter has no enable_gqa
            k, v, gqa = k.repeat_interleave(H // Hkv, dim=1), v.repeat_interleave(H // Hkv, dim=1), {}
        # Without a cache the query and key axes align, so causal is right for any T (and stays a
        # python bool under ONNX tracing); a one-token decode step over a cache attends everything.
        causal = mask is None and (cache is None or T > 1)
        # enable_gqa runs the CPU flash kernel without copying K/V per query head (torch 2.13: 13 ms vs
        # 21 ms for repeat_interleave + SDPA, forward + backward, batch 8 x 128 tokens of the 10M preset).
        if x.device.type == "cpu" and v.dtype in (torch.bfloat16, torch.float16) and T > 1:  # not decode steps
            y = _attention_float32(q, k, v, mask, causal, gqa)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, **gqa)  # [B, H, T, D]
        return self.o_proj(y.transpose(1, 2).reshape(B, T, H * D))


def _attention_float32(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, causal: bool,
                       gqa: dict) -> torch.Tensor:
    """SDPA in float32 for bf16/fp16 q, k, v on a CPU, cast back to v's dtype.

    The CPU flash kernel is slower in bf16 than in float32 (torch 2.13, this 2-core avx512_bf16 CPU, 10M
    preset, batch 8 x 128, one layer forward + backward: 23.2 ms in bf16, 10.3 ms with the casts), and
    under autocast SDPA would run in bf16: it is switched off here. The softmax is then float32 too.
    """
    with torch.autocast("cpu", enabled=False):
        y = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask, is_causal=causal, **gqa)
    return y.to(v.dtype)


def _decode_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Attention written out for compiled decode steps: two small bmm and a fused masked softmax, ~0.2 ms
    a layer where the CPU flash kernel of SDPA took ~0.3 ms for a few query rows (10M preset, batch 8, 128 keys)."""
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5  # [B, Hkv, G, S]
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1) @ v


class Block(nn.Module):
    """Pre-norm transformer block (Llama's `LlamaDecoderLayer`)."""

    def __init__(self, config: LMConfig, layer: int) -> None:
        super().__init__()
        self.self_attn = Attention(config, layer)
        self.mlp = MoE(config) if config.moe_experts else SwiGLU(config.d_model, config.d_ff)
        self.input_layernorm = RMSNorm(config.d_model, config.norm_eps)
        self.post_attention_layernorm = RMSNorm(config.d_model, config.norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None = None,
                cache: LayerCache | None = None) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class MTPHead(nn.Module):
    """One multi-token-prediction head: hidden of token t -> hidden predicting token t+1+k.

    `forward` returns the block's output, which the next head takes as its input (DeepSeek-V3's chaining);
    the shared lm_head reads it through `norm_out`, as the backbone's final norm precedes it.
    """

    def __init__(self, config: LMConfig, index: int) -> None:
        super().__init__()
        self.norm_in = RMSNorm(config.d_model, config.norm_eps)
        self.proj = nn.Linear(config.d_model, config.d_model, bias=False)
        self.block = Block(config, config.n_layers + index)
        self.norm_out = RMSNorm(config.d_model, config.norm_eps)

    def forward(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *, mask: torch.Tensor | None = None,
                cache: LayerCache | None = None) -> torch.Tensor:
        """`cache` and `mask`: drafting for speculative decoding (`koforge.lm.speculative`), one step at a time."""
        return self.block(self.proj(self.norm_in(h)), cos, sin, mask, cache)


class Backbone(nn.Module):
    """Embedding, blocks and final norm (Llama's `LlamaModel`)."""

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.d_model)
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.n_layers))
        self.norm = RMSNorm(config.d_model, config.norm_eps)


@dataclasses.dataclass
class LossOutput:
    """The training loss and its parts (detached floats are for logging)."""

    loss: torch.Tensor
    lm_loss: torch.Tensor
    aux_loss: torch.Tensor | None = None
    mtp_loss: torch.Tensor | None = None


class KoLM(nn.Module):
    """Decoder-only LM; `forward(input_ids) -> logits [B, T, V]`."""

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.config = config
        self.model = Backbone(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.mtp = nn.ModuleList(MTPHead(config, k) for k in range(config.mtp_heads))
        if config.tie_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        cos, sin = rope_tables(config)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.gradient_checkpointing = False
        self.register_load_state_dict_pre_hook(_fuse_on_load)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Normal(0, init_std) weights; residual output projections scaled by 1/sqrt(2 * n_layers) (GPT-2)."""
        std = self.config.init_std
        for name, p in self.named_parameters():
            if p.dim() == 1:
                continue
            scale = (2 * self.config.n_layers) ** -0.5 if name.endswith(("o_proj.weight", "down_proj.weight")) else 1.0
            nn.init.normal_(p, mean=0.0, std=std * scale)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _rope(self, positions: torch.Tensor | None, start: int, T: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        if positions is None:
            cos, sin = self.rope_cos[start:start + T, None], self.rope_sin[start:start + T, None]  # [T, 1, D]
        else:
            cos, sin = self.rope_cos[positions][:, :, None], self.rope_sin[positions][:, :, None]  # [B, T, 1, D]
        return cos.to(dtype), sin.to(dtype)

    def hidden_states(self, input_ids: torch.Tensor, *, positions: torch.Tensor | None = None,
                      attn_mask: torch.Tensor | None = None, cache=None) -> torch.Tensor:
        """Final normed hidden states [B, T, d_model]; `cache` makes this a prefill/decode step."""
        B, T = input_ids.shape
        start = cache.length if cache is not None else 0
        if positions is None and start + T > self.config.max_seq_len:
            raise ValueError(f"sequence of {start + T} tokens exceeds max_seq_len={self.config.max_seq_len}")
        x = self.model.embed_tokens(input_ids)
        cos, sin = self._rope(positions, start, T, x.dtype)
        recompute = self.gradient_checkpointing and self.training
        moes = self.moe_layers() if self.config.moe_experts else []
        for moe in moes:
            moe.count_usage = True
        for block in self.model.layers:
            if recompute:
                x = checkpoint(block, x, cos, sin, attn_mask, None, use_reentrant=False)
            else:
                x = block(x, cos, sin, attn_mask, cache)
        for moe in moes:
            moe.count_usage = not recompute  # backward runs the blocks again: their tokens are already counted
        if cache is not None:
            cache.advance(T)
        return self.model.norm(x)

    def forward(self, input_ids: torch.Tensor, *, positions: torch.Tensor | None = None,
                attn_mask: torch.Tensor | None = None, cache=None, last_only: bool = False) -> torch.Tensor:
        """Logits [B, T, V] (or [B, 1, V] with `last_only`)."""
        h = self.hidden_states(input_ids, positions=positions, attn_mask=attn_mask, cache=cache)
        if last_only:
            h = h[:, -1:]
        return self.lm_head(h)

    def compute_loss(self, input_ids: torch.Tensor, targets: torch.Tensor) -> LossOutput:
        """Next-token cross-entropy (+ MoE balancing loss, + weighted MTP loss) for [B, T] inputs/targets."""
        h = self.hidden_states(input_ids)
        lm_loss = linear_cross_entropy(h, self.lm_head.weight, targets)
        loss, aux, mtp = lm_loss, None, None
        routed = [b.mlp for b in self.model.layers]  # the MLPs this batch went through (MTP heads' added below)
        if self.mtp:
            T = input_ids.shape[1]
            cos, sin = self._rope(None, 0, T, h.dtype)
            losses, hk = [], h
            for k, head in enumerate(self.mtp):
                shift = k + 1  # head k at position t predicts targets[t + shift] = token t + 2 + k
                if T - shift <= 0:
                    break
                hk = head(hk, cos, sin)
                routed.append(head.block.mlp)
                losses.append(linear_cross_entropy(head.norm_out(hk[:, :T - shift]), self.lm_head.weight,
                                                   targets[:, shift:]))
            if losses:
                mtp = torch.stack(losses).mean()
                loss = loss + self.config.mtp_weight * mtp
        if self.config.moe_experts and self.config.moe_balancing == "aux_loss":
            aux = torch.stack([m.last_aux_loss for m in routed]).mean()
            loss = loss + self.config.moe_aux_weight * aux
        return LossOutput(loss=loss, lm_loss=lm_loss.detach(), aux_loss=None if aux is None else aux.detach(),
                          mtp_loss=None if mtp is None else mtp.detach())

    def moe_layers(self) -> list[MoE]:
        return [b.mlp for b in self.model.layers if isinstance(b.mlp, MoE)]

    def expert_usage(self) -> torch.Tensor | None:
        """[n_layers, n_experts] token counts routed to each expert since the counts were last reset."""
        layers = self.moe_layers()
        return torch.stack([m.expert_counts for m in layers]) if layers else None

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int, sampling: SamplingConfig | None = None, *,
                 seed: int | None = None, eos_id: int | None = None) -> torch.Tensor:
        """Naive reference decoding of one unpadded batch [B, T]: recompute the whole sequence each step."""
        sampling = sampling or SamplingConfig()
        gen = torch.Generator(device=input_ids.device).manual_seed(seed) if seed is not None else None
        ids = input_ids
        seen = None  # tokens so far, only needed by a repetition penalty
        if sampling.repetition_penalty != 1.0:
            seen = torch.zeros(ids.shape[0], self.config.vocab_size, dtype=torch.bool, device=ids.device)
            seen.scatter_(1, ids, True)
        done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
        for _ in range(max_new_tokens):
            logits = self(ids[:, -self.config.max_seq_len:], last_only=True)[:, -1]
            nxt = sample_next(logits, sampling, gen, seen)
            if eos_id is not None:
                nxt = torch.where(done, torch.full_like(nxt, eos_id), nxt)
                done |= nxt == eos_id
            if seen is not None:
                seen.scatter_(1, nxt[:, None], True)
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            if eos_id is not None and bool(done.all()):
                break
        return ids


FUSED = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}


def fuse_llama_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Llama names -> KoLM's: q/k/v_proj rows stacked into qkv_proj, gate/up_proj into gate_up_proj."""
    out = dict(state)
    for key in state:
        for fused, parts in FUSED.items():
            suffix = f"{parts[0]}.weight"
            names = [f"{key[:-len(suffix)]}{p}.weight" for p in parts]
            if key.endswith(suffix) and all(n in out for n in names):
                out[f"{key[:-len(suffix)]}{fused}.weight"] = torch.cat([out.pop(n) for n in names])
    return out


def split_fused_tensors(state: dict[str, torch.Tensor], config: LMConfig) -> dict[str, torch.Tensor]:
    """KoLM names -> Llama's, the exact inverse of `fuse_llama_tensors` (row slices, no arithmetic)."""
    q, kv = config.n_heads * config.head_dim, config.n_kv_heads * config.head_dim
    out = {}
    for key, t in state.items():
        fused = next((f for f in FUSED if key.endswith(f"{f}.weight")), None)
        if fused is None:
            out[key] = t
            continue
        pieces = t.split([q, kv, kv]) if fused == "qkv_proj" else t.chunk(2)
        for name, piece in zip(FUSED[fused], pieces):
            out[f"{key[:-len(f'{fused}.weight')]}{name}.weight"] = piece
    return out


def _fuse_on_load(module: nn.Module, state_dict: dict, *args) -> None:
    """load_state_dict pre-hook: checkpoints with Llama's separate projections load into the fused ones."""
    fused = fuse_llama_tensors(state_dict)
    state_dict.clear()
    state_dict.update(fused)

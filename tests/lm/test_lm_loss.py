"""The chunked lm_head + cross-entropy against F.cross_entropy(lm_head(h)): loss and gradients."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from koforge.lm.loss import linear_cross_entropy


def _inputs(n: int = 37, d: int = 16, v: int = 50, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, generator=g, requires_grad=True)
    w = (torch.randn(v, d, generator=g) * 0.5).requires_grad_()
    t = torch.randint(0, v, (n,), generator=g)
    return h, w, t


@pytest.mark.parametrize("chunk", [1, 8, 37, 64])  # chunks of one row, uneven chunks, one chunk, more than n
@pytest.mark.parametrize("scale", [1.0, 0.3])  # the usual loss.backward() and a scaled one (accumulation)
def test_chunked_loss_and_gradients_match_plain_cross_entropy(chunk, scale):
    h, w, t = _inputs()
    ref = F.cross_entropy(F.linear(h, w), t)
    (ref * scale).backward()
    ref_h, ref_w = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    got = linear_cross_entropy(h, w, t, chunk=chunk)
    (got * scale).backward()
    assert (got - ref).abs() < 1e-5, f"loss {got.item()} vs {ref.item()}"
    for name, a, b in (("h", h.grad, ref_h), ("weight", w.grad, ref_w)):
        diff = (a - b).abs()
        assert diff.max() < 1e-5, f"grad {name}: max {diff.max():.2e} mean {diff.mean():.2e}"


def test_batched_shapes_no_grad_and_frozen_weight(monkeypatch):
    h, w, t = _inputs(n=24)
    ref = F.cross_entropy(F.linear(h, w), t)
    calls = []
    original = torch.Tensor.addmm_
    monkeypatch.setattr(torch.Tensor, "addmm_", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    with torch.no_grad():  # evaluation computes the loss only, no gradient GEMMs
        got = linear_cross_entropy(h.view(2, 12, -1), w, t.view(2, 12), chunk=5)
    monkeypatch.undo()
    assert torch.allclose(got, ref, atol=1e-6) and not calls
    w.requires_grad_(False)
    linear_cross_entropy(h, w, t, chunk=5).backward()
    assert w.grad is None and h.grad is not None


def test_tied_weight_gets_both_gradients():
    h, w, t = _inputs(n=12)
    ids = torch.randint(0, w.shape[0], (12,))
    ref_loss = F.cross_entropy(F.linear(F.embedding(ids, w) + h, w), t)
    ref = torch.autograd.grad(ref_loss, w)[0]
    got = torch.autograd.grad(linear_cross_entropy(F.embedding(ids, w) + h, w, t, chunk=5), w)[0]
    assert (got - ref).abs().max() < 1e-5


def test_non_float32_falls_back_to_the_plain_loss():
    h, w, t = _inputs(n=8)
    got = linear_cross_entropy(h.double(), w.double(), t)
    assert type(got.grad_fn).__name__ == "NllLossBackward0"  # the plain path (the fused one is float32 only)
    assert torch.allclose(got.float(), F.cross_entropy(F.linear(h, w), t), atol=1e-5)


def test_compiled_callers_run_the_fused_loss_eagerly():
    h, w, t = _inputs(n=24)
    ref = F.cross_entropy(F.linear(torch.tanh(h), w), t)
    ref_h = torch.autograd.grad(ref, h)[0]
    torch._dynamo.reset()
    compiled = torch.compile(lambda h, w, t: linear_cross_entropy(torch.tanh(h), w, t, chunk=5), backend="aot_eager")
    got = compiled(h, w, t)
    assert type(got.grad_fn).__name__ == "_LinearCrossEntropyBackward"  # not inductor's fusion of the plain loss
    assert (got - ref).abs() < 1e-5
    assert (torch.autograd.grad(got, h)[0] - ref_h).abs().max() < 1e-5


@pytest.mark.parametrize("chunk", [5, 64])
def test_cpu_bf16_autocast_runs_the_fused_loss_like_the_plain_autocast_loss(chunk):
    # Under CPU autocast the plain loss is a bf16 GEMM, logits upcast to float32, then log-softmax; the fused
    # chunks do the same per chunk, so the loss agrees to float32 rounding and the gradients to bf16's.
    h, w, t = _inputs(n=24, d=32, v=40)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = F.cross_entropy(F.linear(h, w).float(), t)
    ref_h, ref_w = torch.autograd.grad(ref, (h, w))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = linear_cross_entropy(h, w, t, chunk=chunk)
    assert type(got.grad_fn).__name__ == "_LinearCrossEntropyBackward" and got.dtype == torch.float32
    got_h, got_w = torch.autograd.grad(got, (h, w))
    assert (got - ref).abs() < 1e-5, f"loss {got.item()} vs {ref.item()}"
    for name, a, b in (("h", got_h, ref_h), ("weight", got_w, ref_w)):
        assert a.dtype == torch.float32
        diff = (a - b).abs()
        assert diff.max() < 1e-2 * b.abs().max(), f"grad {name}: max {diff.max():.2e} mean {diff.mean():.2e}"


def test_float64_under_cpu_autocast_keeps_the_plain_loss():
    h, w, t = _inputs(n=8)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast leaves float64 alone, and so does the loss
        got = linear_cross_entropy(h.double(), w.double(), t)
    assert type(got.grad_fn).__name__ == "NllLossBackward0"

"""Inference-time forms of a KoLM: CPU decoding kernels, int8 dynamic quantization (CPU), half precision (GPU), ONNX.

`use_cpu_decoding_kernels` swaps every float32 `nn.Linear` for a
`DecodingLinear` over the same Parameter, which picks the faster CPU GEMM
for the skinny products of decoding (measured with the 10M preset, one
thread): for one row the weight stored transposed in memory (same values and
shape, a strided view), which MKL reads faster than the usual layout (1.4x
for the LM head); for 2-16 rows through a wide weight (the LM head, the fused
gate/up projection) a oneDNN-packed copy of it (`torch.ops.mkldnn`, what
inductor's CPU freezing uses), 1.4x faster than MKL for the LM head, while
MKL stays faster for the narrow projections. In the engine's compiled
decode step the linear is plain `F.linear`, left to inductor.
"""
from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from koforge._utils.errors import ConfigError, ModelLoadError
from koforge._utils.io import atomic_file
from koforge.lm.model import KoLM


# oneDNN's packed linear: internal but stable ops (inductor's CPU path); without them one row's trick remains.
_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


class DecodingLinear(nn.Module):
    """A bias-free linear over an existing weight Parameter, with decoding-friendly CPU kernels.

    Under `torch.inference_mode` (the engine): one row -> F.linear on the transposed-in-memory weight;
    2-16 rows through a wide weight (out_features >= 4 * in_features) -> oneDNN on a packed copy, remade
    whenever the weight changes (its version counter moves); anything else (prefill, narrow weights,
    autograd, no_grad reference decoding, torch.compile, ONNX) -> plain F.linear.
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        linear.weight.data = linear.weight.data.t().contiguous().t()  # [out, in] view of [in, out] memory
        self.weight = linear.weight  # the same Parameter: tied embeddings keep sharing it
        self._packed: torch.Tensor | None = None
        self._packed_key: tuple | None = None
        # oneDNN's packed GEMM beats MKL at 2-16 rows only for wide outputs (measured at 8 rows: 1.4x for the
        # LM head, on par for the gate/up projection, 1.2-1.4x slower for the attention and down projections).
        self._pack_skinny = _ONEDNN and self.out_features >= 4 * self.in_features

    def _packed_weight(self) -> torch.Tensor:
        key = (self.weight.data_ptr(), self.weight._version)
        if key != self._packed_key:
            self._packed = torch.ops.mkldnn._reorder_linear_weight(self.weight.detach().contiguous(), None)
            self._packed_key = key
        return self._packed

    def __getstate__(self) -> dict:  # copies and pickles drop the packed cache (it has no storage to copy)
        return {**self.__dict__, "_packed": None, "_packed_key": None}

    def to_linear(self) -> nn.Linear:
        """A plain nn.Linear over a contiguous copy of the weight."""
        linear = nn.Linear(self.in_features, self.out_features, bias=False, device=self.weight.device)
        linear.weight = nn.Parameter(self.weight.detach().contiguous(), requires_grad=self.weight.requires_grad)
        return linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():  # compiled steps leave the GEMM to inductor
            return F.linear(x, self.weight)
        if self._pack_skinny and 1 < x.numel() // x.shape[-1] <= 16 and torch.is_inference_mode_enabled():
            return torch.ops.mkldnn._linear_pointwise(x, self._packed_weight(), None, "none", [], "")
        return F.linear(x, self.weight)


def use_cpu_decoding_kernels(model: KoLM) -> KoLM:
    """Swap, in place, each float32 bias-free `nn.Linear` of a CPU model for a `DecodingLinear` (same weights)."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            w = child.weight if type(child) is nn.Linear and child.bias is None else None
            if w is not None and w.device.type == "cpu" and w.dtype == torch.float32:
                setattr(parent, name, DecodingLinear(child))
    return model


def quantize_int8(model: KoLM) -> KoLM:
    """A copy of `model` with int8 dynamically quantized linear layers (CPU inference only)."""
    if next(model.parameters()).device.type != "cpu":
        raise ConfigError("int8 dynamic quantization runs on CPU; move the model to cpu first (or use bf16/fp16 on GPU).")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao is deprecated in favour of torchao, which is not a dependency
        model = copy.deepcopy(model).eval()
        for parent in list(model.modules()):  # a model served by the engine first: back to plain linears
            for name, child in list(parent.named_children()):
                if isinstance(child, DecodingLinear):
                    setattr(parent, name, child.to_linear())
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)


def to_dtype(model: KoLM, dtype: str) -> KoLM:
    """The model in fp32, bf16 or fp16 (half precision is meant for GPUs)."""
    table = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
             "fp16": torch.float16, "float16": torch.float16}
    if dtype not in table:
        raise ConfigError(f"dtype '{dtype}' is unknown; use fp32, bf16 or fp16 (or int8 for CPU quantization).")
    return model.to(table[dtype])


class _LogitsOnly(nn.Module):
    def __init__(self, model: KoLM) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids)


def export_onnx(model: KoLM, path: str | Path, *, example_len: int = 8, opset: int = 17) -> Path:
    """Write the model's `input_ids -> logits` graph as ONNX (dynamic batch and length)."""
    if model.config.moe_experts:
        raise ModelLoadError("ONNX export of mixture-of-experts models is not supported (data-dependent routing).")
    if any(p.dtype != torch.float32 for p in model.parameters()):
        model = copy.deepcopy(model).float()  # a float32 graph; Module.float() alone would cast the caller's model
    model = model.eval()
    example = torch.randint(0, model.config.vocab_size, (1, min(example_len, model.config.max_seq_len)))
    path = Path(path)
    with atomic_file(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_LogitsOnly(model), (example,), str(tmp), input_names=["input_ids"], output_names=["logits"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}},
                          opset_version=opset, dynamo=False)
    return path


def check_onnx(model: KoLM, path: str | Path, input_ids: torch.Tensor) -> float:
    """Max |logits(onnxruntime) - logits(torch)| on `input_ids`."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"input_ids": input_ids.numpy().astype(np.int64)})[0]
    with torch.no_grad():
        want = model.eval()(input_ids).float().numpy()
    return float(np.abs(got - want).max())

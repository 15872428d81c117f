"""Inference-time forms of a KoLM: CPU weight layout, int8 dynamic quantization (CPU), half precision (GPU), ONNX.

`use_cpu_gemm_layout` stores every linear weight [out, in] transposed in
memory (same values, same shapes, a strided view): for the skinny GEMMs of
decoding (1-8 rows), MKL's kernel reading W^T row-major ran 1.3-1.7x faster
than on the usual layout (44 MiB of float32 weights of the 10M preset, one
thread). The generation engine applies it to the models it serves.

int8 uses PyTorch's dynamic quantization of every `nn.Linear` (weights int8,
activations quantized on the fly): about 4x smaller linear weights and faster
CPU matmuls, embeddings and norms stay float32. ONNX export covers the
full-sequence forward `input_ids [B, T] -> logits [B, T, V]` with dynamic
batch and length (no KV cache), and `check_onnx` compares it with
onnxruntime on given ids.
"""
from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from koforge._utils.errors import ConfigError, ModelLoadError
from koforge._utils.io import atomic_file
from koforge.lm.model import KoLM


def use_cpu_gemm_layout(model: KoLM) -> KoLM:
    """Re-lay each float32 `nn.Linear` weight of a CPU model in place as a transposed view of [in, out] memory."""
    for module in model.modules():
        w = module.weight if type(module) is nn.Linear else None
        if w is not None and w.device.type == "cpu" and w.dtype == torch.float32 and w.is_contiguous():
            w.data = w.data.t().contiguous().t()  # tied weights are one Parameter: the embedding follows
    return model


def quantize_int8(model: KoLM) -> KoLM:
    """A copy of `model` with int8 dynamically quantized linear layers (CPU inference only)."""
    if next(model.parameters()).device.type != "cpu":
        raise ConfigError("int8 dynamic quantization runs on CPU; move the model to cpu first (or use bf16/fp16 on GPU).")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao is deprecated in favour of torchao, which is not a dependency
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model).eval(), {nn.Linear}, dtype=torch.qint8)


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
    model = model.eval().float()
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

"""Precision: fp16/bf16 conversion and int8 weight quantization.

`convert_dtype` casts the weights; the saved folder is in that dtype and
`from_pretrained` loads it as such (`dtype="auto"`). On a CPU, bf16/fp16
matmuls are often *slower* than fp32: measure before choosing.

`quantize_int8` rounds every decoder linear's weight to a symmetric
per-output-channel int8 grid (scale = max|row| / 127). How it is stored,
honestly: torchao and bitsandbytes are not available here, and
`from_pretrained` has no CPU int8 format that needs neither, so the folder
keeps the *dequantized* weights (q * scale, exactly representable in float32)
in the model's float dtype, plus `koforge_quantization` in config.json. Any
`AutoModelForCausalLM.from_pretrained` reproduces the int8 model's weights
exactly, but runs float matmuls at float size on disk. `koforge.compress.load_model`
reads the marker and swaps the linears for torch dynamic int8 ones
(`torch.ao.quantization.quantize_dynamic`, per-channel, fbgemm), which re-derive
the same int8 weights and run int8 GEMMs with activations quantized per
batch. That runtime is CPU only and deprecated in torch in favour of torchao.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from koforge._utils.device import resolve_dtype
from koforge._utils.errors import ConfigError
from koforge.compress.layout import decoder_layers, layout_of

INT8_MARKER = {"method": "int8_weight_only_roundtrip", "scheme": "symmetric per-output-channel",
               "storage": "dequantized float weights", "runtime": "torch dynamic int8 (CPU) via koforge.compress.load_model"}


def convert_dtype(model: nn.Module, dtype: str) -> nn.Module:
    """Cast all weights to fp16 / bf16 / fp32; the config records the dtype."""
    layout_of(model)
    if getattr(model.config, "koforge_quantization", None):
        raise ConfigError("convert_dtype after quantize_int8 would move weights off the int8 grid; convert first.")
    torch_dtype = resolve_dtype(dtype)
    # Parameters only: `model.to()` would also cast the rotary `inv_freq` buffer, which
    # from_pretrained keeps in float32, so the reloaded model would differ from this one.
    for p in model.parameters():
        p.data = p.data.to(torch_dtype)
    model.config.dtype = torch_dtype
    return model


@torch.no_grad()
def int8_roundtrip(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dequantized weight, int8 values, per-row scales) of a symmetric per-output-channel quantization."""
    w = weight.float()
    scale = w.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127.0  # (out, 1)
    q = torch.clamp(torch.round(w / scale), -127, 127).to(torch.int8)
    return (q.float() * scale).to(weight.dtype), q, scale.squeeze(1)


@torch.no_grad()
def quantize_int8(model: nn.Module, *, skip_lm_head: bool = True) -> nn.Module:
    """Round decoder linears (and the lm_head unless skipped) to int8 per-channel, in place."""
    layout_of(model)
    if model.dtype != torch.float32:
        raise ConfigError(f"quantize_int8 needs float32 weights (got {model.dtype}): the dequantized int8 grid is only "
                          "exact in float32. Run it on the float32 model and leave convert_dtype out of the recipe.")
    linears = [m for layer in decoder_layers(model) for m in layer.modules() if isinstance(m, nn.Linear)]
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    if not skip_lm_head and not tied:
        linears.append(model.lm_head)
    for lin in linears:
        lin.weight.copy_(int8_roundtrip(lin.weight)[0])
    model.config.koforge_quantization = dict(INT8_MARKER, lm_head=not skip_lm_head and not tied)
    return model


def apply_int8_runtime(model: nn.Module) -> nn.Module:
    """Swap decoder linears for torch dynamic int8 linears (CPU); returns the new model."""
    from torch.ao.quantization import PerChannelMinMaxObserver, QConfig, per_channel_dynamic_qconfig, quantize_dynamic

    if next(model.parameters()).device.type != "cpu":
        return model
    marker = getattr(model.config, "koforge_quantization", None) or {}
    # torch's default per-channel observer spans [-128, 127] (scale = max|row| / 127.5) and would re-round the
    # stored grid (max|row| / 127) by up to half a step; [-127, 127] re-derives exactly the saved int8 values.
    qconfig = QConfig(activation=per_channel_dynamic_qconfig.activation,
                      weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric,
                                                                quant_min=-127, quant_max=127))
    spec = {f"model.layers.{i}.{name}": qconfig
            for i, layer in enumerate(decoder_layers(model))
            for name, m in layer.named_modules() if isinstance(m, nn.Linear)}
    if marker.get("lm_head"):
        spec["lm_head"] = qconfig
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, spec, dtype=torch.qint8, inplace=True)

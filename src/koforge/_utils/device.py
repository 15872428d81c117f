"""Device and dtype selection: cuda > mps > cpu unless the user says otherwise."""
from __future__ import annotations

import functools
from pathlib import Path

import torch

from koforge._utils.errors import ConfigError
from koforge._utils.logging import get_logger

log = get_logger(__name__)

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


def resolve_device(preference: str = "auto") -> torch.device:
    """Pick a device: "auto" (cuda, then mps, then cpu) or an explicit torch device string."""
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(preference)
    except RuntimeError:
        raise ConfigError(f"device '{preference}' is not a torch device. Use auto, cpu, cuda, cuda:N or mps.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{preference}' asked for but CUDA is not available here. Use device=cpu or auto.")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        n = torch.cuda.device_count()  # else "invalid device ordinal" from deep inside the first .to(device)
        raise ConfigError(f"device '{preference}' asked for but this machine has {n} CUDA device(s) "
                          f"(cuda:0..cuda:{n - 1}). Use one of them, or device=cuda or auto.")
    mps = getattr(torch.backends, "mps", None)
    if device.type == "mps" and not (mps is not None and mps.is_available()):
        raise ConfigError(f"device '{preference}' asked for but MPS (Apple GPU) is not available here. "
                          "Use device=cpu or auto.")
    backend = getattr(torch, device.type, None)  # xpu and other accelerators with torch.<type>.is_available()
    if device.type not in ("cpu", "cuda", "mps") and not (hasattr(backend, "is_available") and backend.is_available()):
        raise ConfigError(f"device '{preference}' is not available here. Use auto, cpu, cuda, cuda:N or mps.")
    return device


def resolve_dtype(name: str) -> torch.dtype:
    """Map a dtype name (float32/bf16/fp16, ...) to a torch dtype."""
    if name not in _DTYPES:
        raise ConfigError(f"dtype '{name}' is unknown. Use one of: {', '.join(sorted(_DTYPES))}.")
    return _DTYPES[name]


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for `device` ("auto": bf16 on cuda/mps when supported, none on cpu)."""
    if precision in ("fp32", "float32", "no"):
        return None
    if precision != "auto":
        return resolve_dtype(precision)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return None


def cpu_bf16_is_native(cpuinfo: str | Path = "/proc/cpuinfo") -> bool | None:
    """Whether this CPU computes bf16 natively (avx512_bf16 or AMX); None where its flags cannot be read."""
    try:
        with open(cpuinfo, encoding="utf-8") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return None
    return "avx512_bf16" in flags or "amx_bf16" in flags


def fast_cpu_precision() -> str:
    """"bf16" where the CPU computes it natively (~1.6x a fp32 LM step on such a CPU), else "fp32"."""
    return "bf16" if cpu_bf16_is_native() else "fp32"


def warn_if_bf16_is_emulated(device: torch.device, dtype: torch.dtype | None) -> None:
    """bf16 autocast on a CPU without native bf16 is emulated: steps are slower than fp32, not faster."""
    if device.type == "cpu" and dtype == torch.bfloat16 and cpu_bf16_is_native() is False:
        _warn_emulated_bf16()


@functools.cache  # once a process: an embedding recipe resolves its precision for every stage
def _warn_emulated_bf16() -> None:
    log.warning("precision bf16 on this CPU is emulated (no avx512_bf16 / AMX): steps will be slower than "
                "with precision=fp32.")

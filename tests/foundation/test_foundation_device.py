"""Device choice: an accelerator asked for but absent is one clear message, not a torch traceback later."""
from __future__ import annotations

import pytest
import torch

from koforge._utils.device import cpu_bf16_is_native, resolve_device, warn_if_bf16_is_emulated
from koforge._utils.errors import ConfigError


def test_auto_and_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cuda", "mps", "cpu")


@pytest.mark.parametrize("name,message", [("cuda", "CUDA is not available"), ("mps", r"MPS \(Apple GPU\) is not available"),
                                          ("meta", "'meta' is not available"), ("gpu", "is not a torch device")])
def test_absent_or_unknown_devices_are_refused(name, message, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=message):
        resolve_device(name)


def test_a_cuda_ordinal_beyond_the_devices_is_refused(monkeypatch):
    """cuda:1 on a one-GPU machine was accepted, then failed with "invalid device ordinal" at the first .to()."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda:0") and resolve_device("cuda") == torch.device("cuda")
    with pytest.raises(ConfigError, match=r"device 'cuda:1' asked for but this machine has 1 CUDA device\(s\) \(cuda:0..cuda:0\)"):
        resolve_device("cuda:1")


@pytest.mark.parametrize("flags,native", [("fpu avx512f avx512_bf16 avx512_vnni", True), ("fpu amx_bf16 amx_tile", True),
                                          ("fpu avx2 avx512f", False), (None, None)])
def test_native_bf16_is_read_from_the_cpu_flags(tmp_path, flags, native):
    cpuinfo = tmp_path / "cpuinfo"
    if flags is not None:  # None: no such file (not Linux), so unknown
        cpuinfo.write_text(f"processor\t: 0\nmodel name\t: X\nflags\t\t: {flags}\n", encoding="utf-8")
    assert cpu_bf16_is_native(cpuinfo) is native


def test_emulated_bf16_warns_once_and_only_for_cpu_bf16(monkeypatch, caplog):
    import logging

    from koforge._utils import device as device_mod

    monkeypatch.setattr(device_mod, "cpu_bf16_is_native", lambda: False)
    device_mod._warn_emulated_bf16.cache_clear()
    cpu = torch.device("cpu")
    with caplog.at_level(logging.WARNING, logger="koforge"):
        warn_if_bf16_is_emulated(cpu, None)
        warn_if_bf16_is_emulated(torch.device("cuda"), torch.bfloat16)
        assert not caplog.records
        warn_if_bf16_is_emulated(cpu, torch.bfloat16)
        warn_if_bf16_is_emulated(cpu, torch.bfloat16)
    assert [r.getMessage() for r in caplog.records] == [
        "precision bf16 on this CPU is emulated (no avx512_bf16 / AMX): steps will be slower than with precision=fp32."]
    device_mod._warn_emulated_bf16.cache_clear()

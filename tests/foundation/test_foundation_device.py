"""Device choice: an accelerator asked for but absent is one clear message, not a torch traceback later."""
from __future__ import annotations

import pytest
import torch

from koforge._utils.device import resolve_device
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

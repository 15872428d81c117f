"""The package-level API: every exported name resolves, and importing a package imports no torch."""
from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = ["koforge", "koforge.data", "koforge.tokenizers", "koforge.vocab", "koforge.embeddings", "koforge.lm",
            "koforge.eval", "koforge.compress", "koforge.report"]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_resolves(package):
    module = importlib.import_module(package)
    assert module.__all__
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    with pytest.raises(AttributeError, match=f"module '{package}' has no attribute 'nope'"):
        getattr(module, "nope")


def test_importing_the_packages_imports_no_torch():
    code = f"import sys; import {', '.join(PACKAGES)}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"

"""Package-level names that import their module on first use, so `import koforge.lm` (and the CLI's
`--help`) stays free of torch until something is used."""
from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, spec: str) -> tuple[list[str], Callable[[str], Any]]:
    """(`__all__`, module `__getattr__`) of `package` from a spec such as "config:LMConfig train:TrainConfig,train_lm":
    each `module:names` pair names a submodule of `package` and the names it defines."""
    exports = {name: f"{package}.{module}" for pair in spec.split()
               for module, names in [pair.split(":")] for name in names.split(",")}

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return list(exports), __getattr__

"""Lazy re-exports for a package's ``__init__`` (PEP 562).

A domain package names its public classes in ``__all__`` but some of them need torch, numba or
rosbags; importing them only when first used keeps ``import fusion_stream.infer.backends`` (and
every other submodule, which imports its package first) as light as the submodule itself."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` that import ``exports[name]`` (a module of the
    package) on first access of ``name`` and cache the value in the package's namespace."""
    table = dict(exports)

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:  # also how `from package import submodule` falls back to the submodule
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(importlib.import_module(package), name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(importlib.import_module(package))) | set(table))

    return __getattr__, __dir__

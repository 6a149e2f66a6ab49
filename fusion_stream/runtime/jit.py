"""Compiled loops over points and pixels: one place that decides how numba compiles them.

Kernels are compiled with numba's on-disk cache, so a node does not recompile at each start;
where numba finds nowhere to write the cache (a read-only install, no writable user cache), they
are compiled in memory instead of failing. ``python -m fusion_stream.cli.jit`` compiles every kernel
once (the setup script runs it), so no node's first frame pays seconds of compilation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

F = TypeVar("F", bound=Callable[..., Any])


def njit(fn: F, signatures: list[str] | None = None, **options: Any) -> F:
    """``numba.njit(signatures, cache=True, nogil=True, **options)(fn)``, typed as ``fn``; without
    the cache when numba has no writable place for it."""
    import numba  # here: only processes that run a kernel import it

    compile_: Any = numba.njit
    args = (signatures,) if signatures is not None else ()
    try:
        return cast(F, compile_(*args, cache=True, nogil=True, **options)(fn))
    except RuntimeError as exc:  # numba: "cannot cache function ...: no locator available for file ..."
        if "no locator available" not in str(exc):
            raise
        return cast(F, compile_(*args, nogil=True, **options)(fn))

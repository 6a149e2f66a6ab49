"""``python -m fusion_stream.cli.jit``: compile (or load from numba's cache) every kernel of the
package once, so no node's first frame pays seconds of compilation (the setup script runs it).
The kernels are compiled by :func:`fusion_stream.runtime.jit.njit`."""

from __future__ import annotations

import time
from collections.abc import Callable


def warm_up() -> dict[str, float]:
    """Compile (or load from the cache) every kernel of the package; seconds per group."""
    from fusion_stream.infer import voxelize
    from fusion_stream.model import preprocess
    from fusion_stream.sim import camera, lidar

    steps: dict[str, Callable[[], object]] = {
        "pre-processing": preprocess.compile_kernels,
        "simulated LiDAR": lidar._returns_kernel,
        "simulated camera": camera.warm_up,
        "voxelization (pillars cards)": voxelize.compile_kernels,
    }
    took: dict[str, float] = {}
    for name, step in steps.items():
        t0 = time.perf_counter()
        step()
        took[name] = time.perf_counter() - t0
    return took


if __name__ == "__main__":
    for group, seconds in warm_up().items():
        print(f"numba kernels, {group}: {seconds:.1f} s")

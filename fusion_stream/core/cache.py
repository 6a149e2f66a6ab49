"""Where fusion_stream keeps what it can rebuild: rendered training samples, ONNX exports,
TensorRT engines."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$FUSION_STREAM_CACHE``, else ``~/.cache/fusion_stream``."""
    return Path(os.environ.get("FUSION_STREAM_CACHE") or Path.home() / ".cache" / "fusion_stream")

"""Pure helpers behind the topic tools: messages as JSON-able data, and rate statistics."""

from __future__ import annotations

import dataclasses
import enum
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fusion_stream.core import msgs
from fusion_stream.errors import ParamError


def to_jsonable(value: Any, array_limit: int = 16) -> Any:
    """Plain data for JSON/YAML. Arrays with more than ``array_limit`` elements are summarised
    (dtype, shape, min, max, first values) instead of listed: a 1080p image stays one line."""
    if isinstance(value, np.ndarray):
        out: dict[str, Any] = {"dtype": str(value.dtype), "shape": list(value.shape)}
        if value.size <= array_limit:
            out["data"] = value.tolist()
        else:
            flat = value.reshape(-1)
            out["min"] = flat.min().item() if flat.size else None
            out["max"] = flat.max().item() if flat.size else None
            out["head"] = flat[: min(array_limit, 8)].tolist()
        return out
    if isinstance(value, bytes):
        return {"bytes": len(value)}
    if isinstance(value, enum.Enum):
        return value.name
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        d: dict[str, Any] = {"type": type(value).__name__}
        for f in dataclasses.fields(value):
            d[f.name] = to_jsonable(getattr(value, f.name), array_limit)
        return d
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v, array_limit) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [to_jsonable(v, array_limit) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def describe(msg: msgs.Message) -> str:
    """One short line: type and the sizes that matter for it."""
    name = type(msg).__name__
    if isinstance(msg, msgs.Image):
        return f"{name} {msg.width}x{msg.height} {msg.encoding}"
    if isinstance(msg, msgs.PointCloud | msgs.RadarScan):
        return f"{name} {len(msg)} points [{' '.join(msg.fields)}]"
    if isinstance(msg, msgs.AudioChunk):
        return f"{name} {msg.channels}ch x {msg.samples} @ {msg.sample_rate} Hz"
    if isinstance(msg, msgs.CompressedImage):
        return f"{name} {msg.format} {len(msg.data)} B"
    if isinstance(msg, msgs.Detections):
        return f"{name} {len(msg)} boxes"
    if isinstance(msg, msgs.SyncedFrame):
        parts = [f"{k}x{len(v)}" for k, v in msg.members.items()]
        missing = f" missing {','.join(msg.missing)}" if msg.missing else ""
        return f"{name} [{' '.join(parts)}]{missing}"
    if isinstance(msg, msgs.ClockTick):
        return f"{name} {msg.stamp_ns / 1e9:.3f} s"
    return f"{name} {msg.node} {msg.level.name} {msg.message}"


@dataclass(frozen=True, slots=True)
class Rate:
    rate_hz: float
    min_period_s: float
    max_period_s: float
    std_period_s: float
    bytes_per_s: float
    window: int


class RateMeter:
    """Message rate over the last ``window`` arrivals, as `ros2 topic hz` reports it."""

    def __init__(self, window: int = 100) -> None:
        if window < 2:
            raise ParamError("window", f"must be >= 2, got {window}")
        self._t: deque[int] = deque(maxlen=window)
        self._n: deque[int] = deque(maxlen=window)

    def add(self, arrival_ns: int, nbytes: int = 0) -> None:
        self._t.append(arrival_ns)
        self._n.append(nbytes)

    def rate(self) -> Rate | None:
        """None until two messages arrived."""
        if len(self._t) < 2:
            return None
        t = np.asarray(self._t, dtype=np.int64)
        periods = np.diff(t) / 1e9
        span = (t[-1] - t[0]) / 1e9
        mean = float(periods.mean())
        return Rate(
            rate_hz=1.0 / mean if mean > 0 else math.inf,
            min_period_s=float(periods.min()),
            max_period_s=float(periods.max()),
            std_period_s=float(periods.std()),
            bytes_per_s=sum(list(self._n)[1:]) / span if span > 0 else 0.0,
            window=len(t),
        )

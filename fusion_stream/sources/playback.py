"""Which recorded frame a file source publishes at a capture time.

File sources (image folders, KITTI folders, point-cloud files) publish on the node's capture
grid like the simulated sensors: the frame for capture time ``t`` is ``(t − epoch) // period``
modulo the number of frames. Nodes of the same graph with the same ``rate_hz`` and ``epoch_ns``
therefore publish the same frame index at the same stamp — a KITTI frame's image, sweep and
labels arrive together and the synchronizer pairs them exactly. :func:`publish_recording` is the
node side of it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from fusion_stream.errors import ParamError

if TYPE_CHECKING:
    from fusion_stream.core.msgs import Message
    from fusion_stream.runtime.node import Node


def frame_index(capture_ns: int, epoch_ns: int, period_ns: int, count: int, *, loop: bool = True) -> int | None:
    """The frame (0 … count−1) due at ``capture_ns``; None once a non-looping source has played
    every frame (counting from the first grid point at or after ``epoch_ns``)."""
    if count <= 0:
        raise ParamError("count", f"need at least one frame, got {count}")
    if period_ns <= 0:
        raise ParamError("period_ns", f"must be > 0, got {period_ns}")
    k = (capture_ns - epoch_ns) // period_ns
    if loop:
        return k % count
    return k if 0 <= k < count else None


def publish_recording(
    node: Node,
    topic: str,
    rate_hz: float,
    epoch_ns: int,
    count: int,
    message: Callable[[int, int], Message],
    *,
    loop: bool = True,
    msg_type: type[Message] | None = None,
) -> None:
    """Publish ``message(i, capture_ns)`` for recorded frame ``i`` at each capture time of the
    node's grid, ``i`` from :func:`~fusion_stream.sources.playback.frame_index`, so nodes with
    the same ``rate_hz`` and ``epoch_ns`` play the same frame at the same stamp.

    Looping, that is :func:`~fusion_stream.sim.sensors.publish_on_grid` itself. Once
    (``loop=False``), the recording starts at ``epoch_ns`` — or, left at 0, at the first grid
    point after the node starts — and the node stops (exit 0) after the last frame."""
    from fusion_stream.sim.sensors import FrameGrid, publish_on_grid

    if rate_hz <= 0:
        raise ParamError("rate_hz", f"must be > 0, got {rate_hz}")
    if count <= 0:
        raise ParamError("path", "the recording has no frames")
    period = round(1e9 / rate_hz)
    if loop:

        def capture(at: int) -> Message:
            i = frame_index(at, epoch_ns, period, count)
            assert i is not None  # looping never runs out
            return message(i, at)

        publish_on_grid(node, topic, rate_hz, epoch_ns, capture, msg_type=msg_type)
        return

    now = node.clock.now_ns()
    start = epoch_ns if epoch_ns else (now // period + 1) * period
    grid = FrameGrid(period, epoch_ns)
    pub = node.publisher(topic, msg_type, nominal_hz=rate_hz, skipped=lambda: grid.skipped)
    node.add_diagnostics(lambda: {"frames_skipped": grid.skipped, "frames_total": count})

    def tick() -> None:
        k = grid.due(node.clock.now_ns())
        if k is None:
            return
        at = grid.capture_ns(k)
        i = frame_index(at, start, period, count, loop=False)
        if i is not None:
            pub.publish(message(i, at))
        if at >= start + (count - 1) * period:
            node.request_stop(f"played all {count} frames")

    node.timer(period / 1e9, tick, phase_ns=epoch_ns)

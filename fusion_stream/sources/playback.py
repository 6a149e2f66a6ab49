"""Which recorded frame a file source publishes at a capture time.

File sources (image folders, KITTI folders, point-cloud files) publish on the node's capture
grid like the simulated sensors: the frame for capture time ``t`` is ``(t − epoch) // period``
modulo the number of frames. Nodes of the same graph with the same ``rate_hz`` and ``epoch_ns``
therefore publish the same frame index at the same stamp — a KITTI frame's image, sweep and
labels arrive together and the synchronizer pairs them exactly."""

from __future__ import annotations


def frame_index(capture_ns: int, epoch_ns: int, period_ns: int, count: int, *, loop: bool = True) -> int | None:
    """The frame (0 … count−1) due at ``capture_ns``; None once a non-looping source has played
    every frame (counting from the first grid point at or after ``epoch_ns``)."""
    if count <= 0 or period_ns <= 0:
        raise ValueError(f"need frames and a positive period, got count={count}, period_ns={period_ns}")
    k = (capture_ns - epoch_ns) // period_ns
    if loop:
        return k % count
    return k if 0 <= k < count else None

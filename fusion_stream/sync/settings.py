"""Sync node parameters (what people write, in milliseconds) and their conversion to the
stage's nanosecond :class:`SyncConfig`. Shared by the sync node, the fusion node's in-process
``sync:`` block and offline evaluation, so a bag is aligned exactly as the live graph would align it.

An input is checked as it is read (unknown keys such as ``slop`` for ``slop_ms``, a bad mode or
topic name, negative times), so the launch checker refuses a bad input with its place in the file
(``nodes[6] (fusion).params.sync.inputs[1].mode``) before anything starts. Every error is a
:class:`ParamError` keyed by what people write: the stage's own keys (``deadline_ns``,
``inputs[1].slop_ns``) are translated to the parameters' (``deadline_ms``, ``inputs[1].slop_ms``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import msgspec

from fusion_stream.core import calib, resources
from fusion_stream.core.wire import check_topic
from fusion_stream.errors import CalibrationError, ParamError, TopicNameError
from fusion_stream.sync.stage import SyncConfig, SyncInput, SyncStage

_MS = 1_000_000
MODES = ("reference", "nearest", "window")


class InputParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One input; a struct rather than a dataclass so that a misspelt key is refused, not ignored."""

    name: str
    topic: str
    mode: str = "nearest"
    slop_ms: float = 50.0
    window_ms: float = 100.0
    offset_ms: float = 0.0
    """Added to this input's stamps, on top of the calibration's offset for ``sensor``."""
    period_ms: float = 0.0
    """The least time between messages. On a ``nearest`` input it saves waiting for the next one;
    on the ``reference`` input it keeps sets coming (reference missing) while the reference is silent."""
    sensor: str = ""
    """The rig sensor behind this topic: its ``time_offset_ms`` from ``calib`` is applied."""

    def __post_init__(self) -> None:
        # a ParamError naming the field: params.convert prefixes the input's place (inputs[1].mode)
        if not self.name:
            raise ParamError("name", "an input needs a name")
        try:
            check_topic(self.topic)
        except TopicNameError as err:
            raise ParamError("topic", str(err)) from err
        if self.mode not in MODES:
            raise ParamError("mode", f"input {self.name!r}: mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        for key in ("slop_ms", "window_ms", "period_ms"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value >= 0):
                raise ParamError(key, f"input {self.name!r}: {key} must be a finite number >= 0, got {value}")
        if not math.isfinite(self.offset_ms):
            raise ParamError("offset_ms", f"input {self.name!r}: offset_ms must be finite, got {self.offset_ms}")


@dataclass(frozen=True)
class Params:
    inputs: tuple[InputParams, ...]
    policy: str = "reference"
    output: str = "/sync/frames"
    frame_id: str = "base_link"
    deadline_ms: float = 100.0
    queue_size: int = 32
    max_interval_ms: float | None = None
    age_penalty: float = 0.1
    reset_jump_s: float = 1.0
    calib: str = ""
    """Rig calibration file whose per-sensor time offsets apply to inputs that name a ``sensor``."""


def _calibration_offsets(p: Params) -> dict[str, int]:
    """Input name → the calibrated time offset (ns) of the sensor it names."""
    named = [(n, i) for n, i in enumerate(p.inputs) if i.sensor]
    if not named:
        return {}
    if not p.calib:
        n, first = named[0]
        raise ParamError(
            f"inputs[{n}].sensor", f"input {first.name!r} names sensor {first.sensor!r} but no calib file is set"
        )
    try:
        rig = calib.load(resources.resolve(p.calib))
    except CalibrationError as err:
        raise ParamError("calib", str(err)) from err
    out = {}
    for n, i in named:
        if i.sensor not in rig.sensors:
            raise ParamError(
                f"inputs[{n}].sensor",
                f"input {i.name!r}: no sensor {i.sensor!r} in {p.calib}; it has {sorted(rig.sensors)}",
            )
        out[i.name] = rig[i.sensor].time_offset_ns
    return out


@dataclass(frozen=True)
class EmbeddedParams(Params):
    """The sync settings of a node that runs the stage in its own process (the fusion node's
    ``sync:`` block): the sync node's keys, with the inputs checked together as the block is read
    (one reference, unique names and topics), so the launch checker refuses what the stage
    cannot run. The sets are published, if at all, on the node's own topic parameter."""

    def __post_init__(self) -> None:
        if self.output != Params.output:
            raise ParamError("output", f"set by the node that runs the sync ({self.output!r} given)")
        _config(self, {})


def config_from(p: Params) -> SyncConfig:
    """Params in milliseconds (what people write) to the stage's nanosecond config."""
    return _config(p, _calibration_offsets(p))


_USER_KEYS = {
    "slop_ns": "slop_ms",
    "window_ns": "window_ms",
    "offset_ns": "offset_ms",
    "period_ns": "period_ms",
    "deadline_ns": "deadline_ms",
    "max_queue": "queue_size",
    "reset_jump_ns": "reset_jump_s",
    "max_interval_ns": "max_interval_ms",
}
"""The stage's argument (nanoseconds) → the parameter people write, where the names differ."""


def _user_key(stage_key: str) -> str:
    """``inputs[1].slop_ns`` → ``inputs[1].slop_ms``: the last part renamed, the place kept."""
    head, dot, last = stage_key.rpartition(".")
    return f"{head}{dot}{_USER_KEYS.get(last, last)}"


def _config(p: Params, offsets: dict[str, int]) -> SyncConfig:
    """The stage's config, built (and the policy with it) to refuse what it cannot run, with a
    ParamError keyed by the parameter's name."""
    inputs = []
    for n, i in enumerate(p.inputs):
        try:
            inputs.append(
                SyncInput(
                    name=i.name,
                    topic=i.topic,
                    mode=i.mode,  # type: ignore[arg-type]  # checked by InputConfig
                    slop_ns=int(i.slop_ms * _MS),
                    window_ns=int(i.window_ms * _MS),
                    offset_ns=int(i.offset_ms * _MS) + offsets.get(i.name, 0),
                    period_ns=int(i.period_ms * _MS),
                )
            )
        except ParamError as err:
            raise ParamError(f"inputs[{n}].{_user_key(err.key)}", err.reason) from err
    try:
        config = SyncConfig(
            inputs=tuple(inputs),
            policy=p.policy,  # type: ignore[arg-type]  # checked by SyncConfig
            frame_id=p.frame_id,
            deadline_ns=int(p.deadline_ms * _MS),
            queue_size=p.queue_size,
            max_interval_ns=None if p.max_interval_ms is None else int(p.max_interval_ms * _MS),
            age_penalty=p.age_penalty,
            reset_jump_ns=int(p.reset_jump_s * 1e9),
        )
        SyncStage(config)  # builds the policy: refuses what it cannot run
    except ParamError as err:
        raise ParamError(_user_key(err.key), err.reason) from err
    return config

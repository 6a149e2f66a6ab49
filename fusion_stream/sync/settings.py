"""Sync node parameters (what people write, in milliseconds) and their conversion to the
stage's nanosecond :class:`SyncConfig`. Shared by the sync node and offline evaluation, so a bag
is aligned exactly as the live graph would align it."""

from __future__ import annotations

from dataclasses import dataclass

from fusion_stream import calib
from fusion_stream.errors import CalibrationError, ParamError
from fusion_stream.sync.stage import SyncConfig, SyncInput, SyncStage

_MS = 1_000_000


@dataclass(frozen=True)
class InputParams:
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
    named = [i for i in p.inputs if i.sensor]
    if not named:
        return {}
    if not p.calib:
        raise ParamError("inputs", f"input {named[0].name!r} names sensor {named[0].sensor!r} but no calib file is set")
    try:
        rig = calib.load(calib.resolve_path(p.calib))
    except CalibrationError as err:
        raise ParamError("calib", str(err)) from err
    out = {}
    for i in named:
        if i.sensor not in rig.sensors:
            raise ParamError(
                "inputs", f"input {i.name!r}: no sensor {i.sensor!r} in {p.calib}; it has {sorted(rig.sensors)}"
            )
        out[i.name] = rig[i.sensor].time_offset_ns
    return out


def config_from(p: Params) -> SyncConfig:
    """Params in milliseconds (what people write) to the stage's nanosecond config."""
    offsets = _calibration_offsets(p)
    try:
        inputs = tuple(
            SyncInput(
                name=i.name,
                topic=i.topic,
                mode=i.mode,  # type: ignore[arg-type]  # checked by InputConfig
                slop_ns=int(i.slop_ms * _MS),
                window_ns=int(i.window_ms * _MS),
                offset_ns=int(i.offset_ms * _MS) + offsets.get(i.name, 0),
                period_ns=int(i.period_ms * _MS),
            )
            for i in p.inputs
        )
        config = SyncConfig(
            inputs=inputs,
            policy=p.policy,  # type: ignore[arg-type]  # checked by SyncConfig
            frame_id=p.frame_id,
            deadline_ns=int(p.deadline_ms * _MS),
            queue_size=p.queue_size,
            max_interval_ns=None if p.max_interval_ms is None else int(p.max_interval_ms * _MS),
            age_penalty=p.age_penalty,
            reset_jump_ns=int(p.reset_jump_s * 1e9),
        )
        SyncStage(config)  # builds the policy: refuses what it cannot run
    except ValueError as err:
        raise ParamError("inputs" if "input" in str(err) else "policy", str(err)) from err
    return config

"""Sync node: aligns sensor topics into SyncedFrame messages on /sync/frames.

Parameters (YAML)::

    policy: reference          # or approximate (ROS message_filters ApproximateTime)
    deadline_ms: 100           # reference: emit partial sets this long after the sweep's stamp
    inputs:
      - {name: lidar,  topic: /lidar/top/points,  mode: reference}
      - {name: camera, topic: /camera/front/image, mode: nearest, slop_ms: 20, period_ms: 30}
      - {name: audio,  topic: /audio/array/chunk,  mode: window,  window_ms: 100}
    calib: calib/sim_rig.yaml  # optional: inputs with `sensor: NAME` get that sensor's time offset
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from fusion_stream import calib, msgs
from fusion_stream.errors import CalibrationError, ParamError
from fusion_stream.launch import NodeTopics
from fusion_stream.node import Node
from fusion_stream.runner import run_node
from fusion_stream.sync.stage import Emitted, SyncConfig, SyncInput, SyncStage
from fusion_stream.wire import Envelope

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


def topics(p: Params) -> NodeTopics:
    return NodeTopics(inputs=tuple(i.topic for i in p.inputs), outputs=(p.output,))


def setup(node: Node, p: Params) -> None:
    stage = SyncStage(config_from(p))
    pub = node.publisher(p.output)
    latency_ns: list[int] = []
    window = {"sets": 0, "partial": 0}

    def publish(emitted: list[Emitted]) -> None:
        for e in emitted:
            pub.publish(e.frame)
            latency_ns.append(time.time_ns() - e.last_arrival_ns)
            window["sets"] += 1
            window["partial"] += bool(e.frame.missing)

    def on_message(env: Envelope) -> None:
        publish(stage.offer(env.topic, env.message, node.clock.now_ns()))

    def report() -> dict[str, msgs.ScalarValue]:
        values = stage.diagnostics()
        lat = sorted(latency_ns)
        values["sync.added_latency_ms_p50"] = round(lat[len(lat) // 2] / 1e6, 3) if lat else 0.0
        values["sync.added_latency_ms_max"] = round(lat[-1] / 1e6, 3) if lat else 0.0
        if window["partial"]:
            node.set_status(msgs.Level.WARN, f"{window['partial']} of {window['sets']} sets partial")
        else:
            node.set_status(msgs.Level.OK, "")
        latency_ns.clear()
        window.update(sets=0, partial=0)
        return values

    node.subscribe(stage.topics, on_message, queue_size=p.queue_size)
    node.timer(0.005, lambda: publish(stage.poll(node.clock.now_ns())))
    node.add_diagnostics(report)


if __name__ == "__main__":
    raise SystemExit(run_node("sync", Params, setup))

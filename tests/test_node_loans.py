"""The sensor nodes write their frames straight into loans of their publisher's shared-memory pool:
the simulated LiDAR's sweeps (the returns kernel fills the loan's leading rows) and the simulated
camera's images (the shading kernel fills the loan). Same points and pixels as without a loan, sent
as a descriptor with no copy, counted in ``PublisherStats.shm_loans``; with shm off the same code
publishes plain arrays. Real node processes and segments in /dev/shm."""

from __future__ import annotations

import signal

import numpy as np
import pytest

from fusion_stream.core import msgs
from fusion_stream.errors import ParamError
from fusion_stream.nodes import lidar as lidar_node
from fusion_stream.nodes.camera import Params as CameraParams
from fusion_stream.nodes.lidar import Params as LidarParams
from fusion_stream.runtime.registry import Registry
from fusion_stream.runtime.shm import DEFAULT_THRESHOLD, ENV_SHM, SHM_DIR
from fusion_stream.runtime.testing import NodeHarness
from fusion_stream.runtime.transport import Publisher, Subscriber
from fusion_stream.sim import lidar
from fusion_stream.sim.camera import CameraModel
from fusion_stream.sim.capture import SweepsAsCast, camera_image, lidar_sweep
from fusion_stream.sim.sensors import open_sensor, open_world
from tests.conftest import Procs
from tests.test_shm_transport import mapped

pytestmark = pytest.mark.skipif(not SHM_DIR.is_dir(), reason="no /dev/shm on this machine")

SEED = 4
LIDAR_P = LidarParams(seed=SEED, weather="rain")
CAMERA_P = CameraParams(seed=SEED)


def _bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


def test_sweeps_cast_into_loans_are_the_same_sweeps_and_published_with_no_copy(registry: Registry) -> None:
    world, sensor = open_world(LIDAR_P), open_sensor(LIDAR_P, LIDAR_P.sensor, "lidar")
    spec = lidar.LidarSpec.preset(64)  # 1.5 MiB at most: bigger than the default slot
    assert spec.max_bytes > DEFAULT_THRESHOLD
    epoch, period = 10**18, round(spec.period_s * 1e9)
    with (
        Publisher("/loan/points", registry=registry, shm=True, shm_threshold=spec.max_bytes) as pub,
        Subscriber("/loan/points", registry=registry, timeout=5.0) as sub,
    ):
        sub.wait_for_publishers(5.0)
        sweeps = SweepsAsCast(world, sensor, spec, epoch, out=pub.loan)
        clouds: list[msgs.PointCloud] = []
        now = epoch + 3 * period + 1
        while len(clouds) < 2:
            if (cloud := sweeps.poll(now)) is not None:
                assert mapped(cloud.data) and cloud.data.flags.writeable  # the loan's leading rows
                whole = lidar_sweep(world, sensor, spec, cloud.stamp_ns + sensor.time_offset_ns, epoch)
                assert _bits(cloud.data) == _bits(whole.data) and len(cloud) < spec.max_points
                assert pub.publish(cloud) < 1000  # a descriptor, not 1 MB of points
                clouds.append(cloud)
            now += period // spec.sectors
        assert pub.stats.shm_loans == 2 and pub.stats.shm_fallback == 0
        got = [sub.recv(timeout=5.0) for _ in clouds]
        for sent, received in zip(clouds, got, strict=True):
            assert isinstance(received, msgs.PointCloud) and mapped(received.data)
            assert _bits(received.data) == _bits(sent.data) and received.fields == lidar.FIELDS


def test_a_buffer_the_kernels_cannot_fill_in_place_is_refused_naming_out() -> None:
    world, sensor = open_world(LIDAR_P), open_sensor(LIDAR_P, LIDAR_P.sensor, "lidar")
    spec = lidar.LidarSpec.preset(32)
    cast = lidar.SweepCast(world, 5.0, sensor.extrinsics, spec)
    with pytest.raises(ParamError, match="at least 32768 rows") as err:
        cast.finish(np.empty((1000, 6), np.float32))
    assert err.value.key == "out"
    with pytest.raises(ParamError, match="C-contiguous float32") as err:
        cast.finish(np.empty((spec.max_points, 8), np.float32)[:, :6])
    assert err.value.key == "out"
    camera = open_sensor(CAMERA_P, CAMERA_P.sensor, "camera")
    assert camera.intrinsics is not None
    model = CameraModel(camera.intrinsics, camera.distortion)
    with pytest.raises(ParamError, match="uint8 array") as err:
        camera_image(world, camera, model, 10**9, out=np.empty((10, 10, 3), np.uint8))
    assert err.value.key == "out"


def test_without_shared_memory_the_lidar_node_publishes_plain_arrays_of_the_same_sweeps() -> None:
    """The node's real setup with no pool (the harness's publishers have none): loan() lends a
    plain array, which travels as bytes; the sweeps are the simulator's."""
    with NodeHarness(lidar_node, params={"seed": SEED, "weather": "rain"}) as h:
        h.advance(0.35)
        clouds = h.published[LIDAR_P.topic]
        (pub,) = h.node._publishers
        assert clouds and pub.stats.shm_loans == 0 and pub.stats.shm_fallback == 0
    world, sensor = open_world(LIDAR_P), open_sensor(LIDAR_P, LIDAR_P.sensor, "lidar")
    spec = lidar.LidarSpec.preset(LIDAR_P.beams, LIDAR_P.rate_hz)
    for cloud in clouds:
        assert isinstance(cloud, msgs.PointCloud) and not mapped(cloud.data)
        whole = lidar_sweep(world, sensor, spec, cloud.stamp_ns + sensor.time_offset_ns, LIDAR_P.epoch_ns)
        assert _bits(cloud.data) == _bits(whole.data)


def _node(procs: Procs, kind: str, topic: str, *params: str) -> None:
    procs.python(
        "-m", "fusion_stream.runtime.runner", kind, "--name", f"{kind}_{topic.strip('/').replace('/', '_')}",
        "-p", f"topic:={topic}", "-p", f"seed:={SEED}", *params, "--duration", "30",
    )  # fmt: skip


def test_sensor_node_processes_publish_through_loans_with_shared_memory_on(
    procs: Procs, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_SHM, "1")
    _node(procs, "lidar", "/shm/points", "-p", "weather:=rain")
    _node(procs, "camera", "/shm/image")
    topics = ["/shm/points", "/shm/image"]
    got: dict[str, msgs.Message] = {}
    loans: dict[str, int] = {}
    with (
        Subscriber(topics, registry=registry, timeout=30.0) as sub,
        Subscriber("/diagnostics", registry=registry, timeout=30.0) as diag,
    ):
        sub.wait_for_publishers(30.0)
        for env in sub.envelopes():
            got.setdefault(env.topic, env.message)
            if len(got) == len(topics):
                break
        # each node's report after its first frames: its loans, counted by its publisher
        while len(loans) < 2:
            report = diag.recv(timeout=10.0)
            assert isinstance(report, msgs.Diagnostics), "no diagnostics from the shm nodes"
            for topic in ("/shm/points", "/shm/image"):
                if (n := report.values.get(f"pub.{topic}.shm_loans")) is not None and isinstance(n, int) and n > 0:
                    loans[topic] = n
                    assert report.values[f"pub.{topic}.shm_fallback"] == 0
    assert set(got) == set(topics)
    world = open_world(LIDAR_P)
    sensor = open_sensor(LIDAR_P, LIDAR_P.sensor, "lidar")
    spec = lidar.LidarSpec.preset(LIDAR_P.beams, LIDAR_P.rate_hz)
    cloud = got["/shm/points"]
    assert isinstance(cloud, msgs.PointCloud) and mapped(cloud.data)
    whole = lidar_sweep(world, sensor, spec, cloud.stamp_ns + sensor.time_offset_ns, LIDAR_P.epoch_ns)
    assert _bits(cloud.data) == _bits(whole.data), "not the simulator's sweep"
    image = got["/shm/image"]
    camera = open_sensor(CAMERA_P, CAMERA_P.sensor, "camera")
    assert isinstance(image, msgs.Image) and mapped(image.data) and camera.intrinsics is not None
    expected = camera_image(
        open_world(CAMERA_P),
        camera,
        CameraModel(camera.intrinsics, camera.distortion),
        image.stamp_ns + camera.time_offset_ns,
        CAMERA_P.epoch_ns,
    )
    assert _bits(image.data) == _bits(expected.data)
    for p in procs.started:
        p.send_signal(signal.SIGTERM)
    for p in procs.started:
        assert p.wait(timeout=10) == 0, p.communicate()[1][-2000:]

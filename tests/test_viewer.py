"""Seeing it: rendered overlays with known pixels, the live viewer page (in headless Chromium)
against real sensor processes, and the Foxglove bridge seen by a WebSocket client."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from fusion_stream.core import calib, geometry, msgs, render
from fusion_stream.errors import UsageError
from fusion_stream.runtime.registry import Registry
from fusion_stream.viewer import scene, server
from fusion_stream.viewer.live import GraphWatcher

from .conftest import ROOT, Procs, wait_for

RIG = calib.load(ROOT / "calib" / "sim_rig.yaml")
CAR = msgs.Box3D(center=(15.0, 0.0, 0.8), size=(4.5, 1.9, 1.6), label="car", score=0.9, attributes={"siren": True})


def colour_near(image: np.ndarray, x: float, y: float, colour: tuple[int, int, int], r: int = 2) -> bool:
    patch = image[max(0, int(y) - r) : int(y) + r + 1, max(0, int(x) - r) : int(x) + r + 1].reshape(-1, 3)
    return bool((patch == np.array(colour)).all(axis=1).any())


def test_camera_overlay_draws_the_box_where_it_projects_with_its_label() -> None:
    cam = RIG["camera_front"]
    assert cam.intrinsics is not None
    black = np.zeros((cam.intrinsics.height, cam.intrinsics.width, 3), np.uint8)
    out = render.camera_overlay(black, cam, None, [CAR])
    uv, visible = cam.project(geometry.box_corners(CAR))
    assert visible.all()
    blue = render.CLASS_COLORS["car"]
    for u, v in uv:
        assert colour_near(out, u, v, blue), (u, v)
    # the label above the box: class colour text, a red and a blue siren light
    top, left = int(uv[:, 1].min()), int(uv[:, 0].min())
    band = out[max(0, top - 13) : top, left : left + 120].reshape(-1, 3)
    assert (np.abs(band.astype(int) - np.array(blue)).sum(axis=1) < 90).sum() >= 5  # text (anti-aliased)
    assert (band == np.array([255, 0, 0])).all(axis=1).any() and (band == np.array([0, 80, 255])).all(axis=1).any()
    assert out.sum() > 0 and black.sum() == 0  # drawn on a copy


def test_bird_eye_view_puts_box_and_ground_truth_at_their_places() -> None:
    gt = msgs.Box3D(center=(-10.0, 5.0, 0.8), size=(4.0, 2.0, 1.5), label="car")
    ppm, extent = 8.0, 30.0
    out = render.bird_eye_view(None, [CAR], ground_truth=[gt], extent_m=extent, pixels_per_m=ppm)
    size = out.shape[0]

    def px(x: float, y: float) -> tuple[float, float]:
        return size / 2 - y * ppm, size / 2 - x * ppm

    for dx, dy in ((2.25, 0.95), (2.25, -0.95), (-2.25, 0.95), (-2.25, -0.95)):
        assert colour_near(out, *px(15.0 + dx, dy), render.CLASS_COLORS["car"])
    assert colour_near(out, *px(-10.0 + 2.0, 5.0 + 1.0), (150, 150, 150))
    assert not colour_near(out, *px(14.0, 0.5), render.CLASS_COLORS["car"], r=0)  # outlined, not filled


def test_audio_polar_points_at_the_loudest_direction() -> None:
    power = np.zeros(72)
    power[18] = 1.0  # bin 18 of 72 = 90°: to the left of the car
    img = render.audio_polar(power, size=200)
    yellow = np.argwhere((img == np.array([255, 220, 0])).all(axis=2))
    assert len(yellow) > 40
    assert yellow[:, 1].max() <= 101 and yellow[:, 1].min() < 30  # a line from the centre to the left edge
    assert abs(yellow[:, 0].mean() - 100) < 3


def test_viewer_tells_when_no_graph_runs_and_a_port_is_taken(registry: Registry) -> None:
    watcher = GraphWatcher(registry).start()
    try:
        http = server.serve(watcher, RIG, port=0)
        port = http.server_address[1]
        state = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/state", timeout=5).read())
        assert any("no graph running" in s for s in state["status"])
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
        assert "/api/state" in page and "<img" in page
        with pytest.raises(urllib.error.HTTPError) as err:  # nothing to draw yet: 404, not a crash
            urllib.request.urlopen(f"http://127.0.0.1:{port}/img/camera.png", timeout=5)
        assert err.value.code == 404
        with pytest.raises(UsageError, match="choose --port"):
            server.serve(watcher, RIG, port=port)
        http.shutdown()
    finally:
        watcher.stop()


def _chromium() -> str | None:
    return next((p for p in ("chromium-headless-shell", "chromium", "chromium-browser") if shutil.which(p)), None)


@pytest.mark.skipif(
    _chromium() is None, reason="no headless Chromium (scripts/setup.sh installs chromium-headless-shell)"
)
def test_viewer_page_updates_in_headless_chromium(procs: Procs, registry: Registry, tmp_path: Path) -> None:
    for node in ("camera", "lidar", "radar", "ground_truth"):
        procs.python("-m", f"nodes.{node}", "-p", "seed:=3")
    wait_for(lambda: len({e.topic for e in registry.entries()}) >= 5, 20, "the sensor nodes")
    watcher = GraphWatcher(registry).start()
    http = server.serve(watcher, RIG, port=0)
    url = f"http://127.0.0.1:{http.server_address[1]}/"
    try:
        wait_for(lambda: watcher.latest.camera is not None and watcher.latest.lidar is not None, 20, "camera and LiDAR")
        shots = []
        for i in range(2):
            shot = tmp_path / f"shot{i}.png"
            with tempfile.TemporaryDirectory() as profile:
                subprocess.run(
                    [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                     "--window-size=1400,1000", "--virtual-time-budget=4000", f"--screenshot={shot}", url],
                    capture_output=True, timeout=60, check=False,
                )  # fmt: skip
            assert shot.exists() and shot.stat().st_size > 10_000, f"no screenshot {i}"
            shots.append(np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(shot).convert("RGB")))
            time.sleep(1.5)
        assert shots[0].shape == shots[1].shape
        assert shots[0].std() > 10  # a page with pictures on it, not a blank one
        changed = (np.abs(shots[0].astype(int) - shots[1].astype(int)).sum(axis=2) > 30).mean()
        assert changed > 0.005, f"the page did not update ({changed:.4%} of pixels changed)"
    finally:
        http.shutdown()
        watcher.stop()


def test_scene_sorts_messages_by_type_and_draws_pictures() -> None:
    latest = scene.Latest()
    assert scene.camera_picture(latest, RIG) is None and scene.audio_picture(latest, RIG) is None
    from fusion_stream.sources import testpattern

    samples = testpattern.sample_messages(2)
    for topic, msg in samples.items():
        latest.update(topic, msg)
    assert latest.camera is not None and latest.lidar is not None and latest.detections is not None
    assert scene.bird_eye_picture(latest, RIG).shape[2] == 3
    assert isinstance(latest.camera, msgs.CompressedImage)  # the newest image: a signature, no picture
    assert scene.camera_picture(latest, RIG) is None  # does not decode: nothing shown, no crash
    latest.update("/camera/front/image", samples["/camera/front/image"])
    cam = scene.camera_picture(latest, RIG)
    assert cam is not None and cam.shape == (48, 64, 3)  # a test-pattern size, not the rig's: shown plain


def test_foxglove_bridge_advertises_channels_and_streams_messages(procs: Procs, registry: Registry) -> None:
    websockets = pytest.importorskip("websockets.sync.client")
    from fusion_stream.viewer.foxglove_bridge import FoxgloveBridge

    procs.python("tests/publish_samples.py", "-p", "period_s:=0.05")
    wait_for(lambda: registry.lookup("/lidar/top/points"), 15, "the sample publisher")
    bridge = FoxgloveBridge(registry, rig=RIG, port=0).start()
    try:
        with websockets.connect(
            f"ws://127.0.0.1:{bridge.port}", subprotocols=["foxglove.sdk.v1", "foxglove.websocket.v1"], open_timeout=10
        ) as ws:
            channels: dict[str, dict[str, object]] = {}
            deadline = time.monotonic() + 15
            wanted = {"/lidar/top/points", "/camera/front/image", "/detections", "/audio/array/chunk", "/tf"}
            while not wanted <= set(channels) and time.monotonic() < deadline:
                raw = ws.recv(timeout=5)
                if isinstance(raw, str):
                    op = json.loads(raw)
                    if op.get("op") == "advertise":
                        channels.update({c["topic"]: c for c in op["channels"]})
            assert wanted <= set(channels), sorted(channels)
            assert channels["/lidar/top/points"]["schemaName"] == "foxglove.PointCloud"
            assert channels["/camera/front/image"]["schemaName"] == "foxglove.RawImage"
            assert channels["/detections"]["schemaName"] == "foxglove.SceneUpdate"
            assert channels["/audio/array/chunk"]["schemaName"] == "foxglove.RawAudio"
            ws.send(
                json.dumps(
                    {"op": "subscribe", "subscriptions": [{"id": 7, "channelId": channels["/lidar/top/points"]["id"]}]}
                )
            )
            got = None
            while got is None and time.monotonic() < deadline + 10:
                raw = ws.recv(timeout=5)
                if isinstance(raw, bytes) and raw[0] == 0x01:
                    got = raw
            assert got is not None, "no message data for the subscription"
            sub_id, stamp = struct.unpack_from("<IQ", got, 1)
            assert sub_id == 7 and stamp > 0 and len(got) > 13 + 512 * 24  # 512 points × 6 float32
    finally:
        bridge.stop()
    assert bridge.relayed > 0 and bridge.failed == 0


def test_foxglove_bridge_on_a_taken_port_is_a_clear_error(registry: Registry) -> None:
    from fusion_stream.viewer.foxglove_bridge import FoxgloveBridge

    first = FoxgloveBridge(registry, port=0).start()
    try:
        with pytest.raises(UsageError, match="choose another --port"):
            FoxgloveBridge(registry, port=first.port)
    finally:
        first.stop()


def _get(port: int, host: str | None, path: str = "/api/state", headers: dict[str, str] | None = None) -> int:
    """Status of a real request to the viewer with this ``Host`` header (None: none sent)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.putrequest("GET", path, skip_host=True)
        if host is not None:
            conn.putheader("Host", host)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        conn.endheaders()
        reply = conn.getresponse()
        body = reply.read()
        assert reply.status != 403 or b"graph" not in body  # nothing of the graph leaks
        return reply.status
    finally:
        conn.close()


@pytest.mark.parametrize("bind", ["127.0.0.1", "0.0.0.0"])
def test_viewer_answers_only_requests_that_name_it_dns_rebinding(registry: Registry, bind: str) -> None:
    watcher = GraphWatcher(registry).start()
    http_server = server.serve(watcher, RIG, host=bind, port=0)
    port = http_server.server_address[1]
    try:
        for good in ("localhost", f"localhost:{port}", f"127.0.0.1:{port}", "127.0.0.1", f"[::1]:{port}", "[::1]"):
            assert _get(port, good) == 200, good
        for evil in ("evil.example", f"evil.example:{port}", "localhost.evil.example", "127.0.0.1.nip.io", "[evil]:1"):
            assert _get(port, evil) == 403, evil
            assert _get(port, evil, "/") == 403, evil
            assert _get(port, evil, "/", {"Connection": "Upgrade", "Upgrade": "websocket"}) == 403, evil
        assert _get(port, "localhost:notaport") == 403
        hostname = socket.gethostname()
        assert _get(port, f"{hostname}:{port}") == (200 if bind == "0.0.0.0" else 403)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)  # two Host headers
        conn.putrequest("GET", "/api/state", skip_host=True)
        conn.putheader("Host", "localhost")
        conn.putheader("Host", "evil.example")
        conn.endheaders()
        assert conn.getresponse().status == 403
        conn.close()
    finally:
        http_server.shutdown()
        watcher.stop()

"""``fusion-stream view``: a local web page that follows a running graph, or PNG files instead.

The page is one self-contained HTML file that polls ``/api/state`` (JSON) and reloads three
pictures (``/img/camera.png``, ``/img/bev.png``, ``/img/audio.png``) as they change. Pictures
are rendered on request from the newest messages and cached until something new arrives.
Everything binds to 127.0.0.1 unless told otherwise: the page shows camera images.

A page on any web site can make the browser send requests to 127.0.0.1 under a name it controls
(DNS rebinding), and then read the answers as its own. So every request (any method, a WebSocket
upgrade too) must name this server in its ``Host`` header: ``localhost``, an IP address (the
browser's origin is then that address, not someone's domain), the bound name, or this machine's
name when bound to all interfaces. Anything else gets 403.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from fusion_stream.core import calib, render
from fusion_stream.errors import UsageError
from fusion_stream.viewer import scene
from fusion_stream.viewer.live import GraphWatcher

log = logging.getLogger(__name__)

PICTURES: dict[str, Callable[[scene.Latest, calib.Rig], np.ndarray | None]] = {
    "camera": scene.camera_picture,
    "bev": scene.bird_eye_picture,
    "audio": scene.audio_picture,
}


class Pictures:
    """Rendered PNGs of the watcher's newest messages, redrawn only when they changed."""

    def __init__(self, watcher: GraphWatcher, rig: calib.Rig) -> None:
        self.watcher = watcher
        self.rig = rig
        self._cache: dict[str, tuple[int, bytes | None]] = {}
        self._lock = threading.Lock()

    def image(self, name: str) -> np.ndarray | None:
        with self.watcher.lock:
            latest = scene.Latest(
                camera=self.watcher.latest.camera,
                lidar=self.watcher.latest.lidar,
                radar=self.watcher.latest.radar,
                audio=self.watcher.latest.audio.copy(),
                detections=self.watcher.latest.detections,
                ground_truth=self.watcher.latest.ground_truth,
            )
        return PICTURES[name](latest, self.rig)

    def png(self, name: str) -> bytes | None:
        version = self.watcher.latest.version
        with self._lock:
            cached = self._cache.get(name)
            if cached is not None and cached[0] == version:
                return cached[1]
            image = self.image(name)
            data = None if image is None else scene.png_bytes(image)
            self._cache[name] = (version, data)
            return data


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>fusion_stream viewer</title>
<style>
body{font-family:system-ui,sans-serif;margin:16px;background:#111;color:#ddd}
h1{font-size:18px;margin:0 0 8px}#status{color:#fb4;min-height:1.2em;margin:4px 0}
.row{display:flex;gap:12px;flex-wrap:wrap;align-items:flex-start}
img{border:1px solid #333;background:#000;max-width:100%}
#camera{width:640px}#bev{width:420px}#audio{width:240px}
table{border-collapse:collapse;font-size:13px}td,th{padding:2px 8px;text-align:right;border-bottom:1px solid #333}
td:first-child,th:first-child{text-align:left}.stale{color:#f66}
</style></head><body>
<h1>fusion_stream — graph <span id="graph">?</span></h1>
<div id="status">connecting…</div>
<div class="row">
 <figure><img id="camera" alt="camera"><figcaption>camera · LiDAR by depth · detections</figcaption></figure>
 <figure><img id="bev" alt="bird's-eye view">
  <figcaption>bird's-eye view · radar · ground truth grey</figcaption></figure>
 <figure><img id="audio" alt="audio direction"><figcaption>audio direction (SRP-PHAT)</figcaption></figure>
</div>
<p id="latency"></p>
<table id="topics"><thead><tr><th>topic</th><th>type</th><th>Hz</th><th>MB/s</th><th>last</th></tr></thead>
<tbody></tbody></table>
<script>
const shown = {};
function reload(name, version) {
  if (shown[name] === version) return;
  const img = document.getElementById(name);
  if (img.dataset.loading) return;
  img.dataset.loading = "1";
  const next = new Image();
  next.onload = () => { img.src = next.src; shown[name] = version; delete img.dataset.loading; };
  next.onerror = () => { delete img.dataset.loading; };
  next.src = "/img/" + name + ".png?v=" + version;
}
async function tick() {
  try {
    const r = await fetch("/api/state", {cache: "no-store"});
    const s = await r.json();
    document.getElementById("graph").textContent = s.graph;
    document.getElementById("status").textContent = s.status.length ? s.status.join(" · ") : "";
    const l = s.latency_ms;
    document.getElementById("latency").textContent = l.p50 === undefined ? "no detections yet" :
      `end-to-end latency (sensor stamp → /detections here): p50 ${l.p50.toFixed(0)} ms, p99 ${l.p99.toFixed(0)} ms` +
      (s.detections === null ? "" : ` · ${s.detections} objects`);
    const body = document.querySelector("#topics tbody");
    body.innerHTML = s.topics.map(t => `<tr class="${t.stale ? "stale" : ""}"><td>${t.topic}</td><td>${t.type}</td>` +
      `<td>${t.rate_hz === null ? "–" : t.rate_hz.toFixed(1)}</td>` +
      `<td>${t.mb_per_s === null ? "–" : t.mb_per_s.toFixed(2)}</td>` +
      `<td>${t.silent_s.toFixed(1)} s ago</td></tr>`).join("");
    for (const name of ["camera", "bev", "audio"]) reload(name, s.version);
  } catch (e) {
    document.getElementById("status").textContent = "viewer not reachable: " + e;
  }
}
setInterval(tick, 300); tick();
</script></body></html>
"""


_WILDCARD = ("", "0.0.0.0", "::")


def allowed_names(bind: str) -> frozenset[str]:
    """The host names (besides IP addresses) a request to a server bound to ``bind`` may use."""
    names = {"localhost"}
    bind = bind.strip("[]").lower()
    if bind in _WILDCARD:
        names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
    elif not _is_ip(bind):
        names.add(bind)
    return frozenset(n.rstrip(".") for n in names if n)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def host_allowed(header: str, names: frozenset[str]) -> bool:
    """Whether a ``Host`` header (``name[:port]``, ``[v6]:port``) names this server."""
    host = header.strip().lower()
    if host.startswith("["):
        inside, bracket, port = host[1:].partition("]")
        if not bracket or (port and not (port.startswith(":") and port[1:].isdigit())):
            return False
        return _is_ip(inside)
    name, colon, port = host.partition(":")
    if colon and not port.isdigit():
        return False
    name = name.rstrip(".")
    return bool(name) and (name in names or _is_ip(name))


def _handler(pictures: Pictures, names: frozenset[str]) -> type[BaseHTTPRequestHandler]:
    refused: set[str] = set()

    class Handler(BaseHTTPRequestHandler):
        server_version = "fusion-stream-viewer"

        def parse_request(self) -> bool:  # every method passes here, before its do_* runs
            if not super().parse_request():
                return False
            hosts = self.headers.get_all("Host") or []
            if len(hosts) <= 1 and all(host_allowed(h, names) for h in hosts):
                return True
            shown = ", ".join(repr(h[:80]) for h in hosts)
            if shown not in refused and len(refused) < 100:
                refused.add(shown)
                log.warning("refused a request for host %s (DNS rebinding?); served names: %s", shown, sorted(names))
            self.close_connection = True
            self._send(HTTPStatus.FORBIDDEN, b"unknown Host: open this viewer by its address\n", "text/plain")
            return False

        def log_message(self, format: str, *args: Any) -> None:  # the base class's name
            log.debug("%s " + format, self.address_string(), *args)

        def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError) as err:  # the browser went away mid-frame
                log.debug("client %s left during the reply: %s", self.address_string(), err)

        def do_GET(self) -> None:  # the http.server protocol
            path = self.path.split("?", 1)[0]
            if path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, _PAGE.encode(), "text/html; charset=utf-8")
            elif path == "/api/state":
                body = json.dumps(pictures.watcher.snapshot()).encode()
                self._send(HTTPStatus.OK, body, "application/json")
            elif path.startswith("/img/") and path.endswith(".png") and path[5:-4] in PICTURES:
                try:
                    data = pictures.png(path[5:-4])
                except Exception as err:  # noqa: BLE001  # a bad message must not take the page down
                    log.warning("cannot draw %s: %s", path, err)
                    data = None
                if data is None:
                    self._send(HTTPStatus.NOT_FOUND, b"nothing to show yet", "text/plain")
                else:
                    self._send(HTTPStatus.OK, data, "image/png")
            else:
                self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")

    return Handler


def serve(watcher: GraphWatcher, rig: calib.Rig, *, host: str = "127.0.0.1", port: int = 8080) -> ThreadingHTTPServer:
    """Start the web server in a background thread; ``shutdown()`` stops it."""
    try:
        server = ThreadingHTTPServer((host, port), _handler(Pictures(watcher, rig), allowed_names(host)))
    except OSError as err:
        raise UsageError(f"cannot serve on {host}:{port}: {err.strerror} (another viewer? choose --port)") from err
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="viewer-http", daemon=True).start()
    return server


def write_pngs(
    watcher: GraphWatcher,
    rig: calib.Rig,
    out_dir: Path,
    *,
    every_s: float,
    stop: threading.Event,
    limit: int | None = None,
) -> int:
    """``--png DIR``: every ``every_s`` seconds, the three pictures as numbered PNG files."""
    pictures = Pictures(watcher, rig)
    written = 0
    n = 0
    last_version = -1
    while not stop.wait(every_s if n else 0.5):
        if watcher.latest.version == last_version:
            for problem in watcher.status():
                log.warning("%s", problem)
            continue
        last_version = watcher.latest.version
        n += 1
        for name in PICTURES:
            image = pictures.image(name)
            if image is not None:
                render.save_png(image, out_dir / f"{n:05d}_{name}.png")
                written += 1
        (out_dir / f"{n:05d}_state.json").write_text(json.dumps(watcher.snapshot(), indent=1))
        if limit is not None and n >= limit:
            break
    return written


def wait(stop: threading.Event, duration_s: float | None) -> None:
    end = None if duration_s is None else time.monotonic() + duration_s
    while not stop.is_set():
        if end is not None and time.monotonic() >= end:
            return
        stop.wait(0.2)

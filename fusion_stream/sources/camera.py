"""Camera sources: image folders (plain or KITTI), video files, V4L2/USB devices and network
streams, through OpenCV (the ``camera`` extra).

Where a frame's stamp comes from depends on what knows the capture time best:

* image folders carry no time, so they play on the node's capture grid
  (:func:`~fusion_stream.sources.playback.publish_recording`) and take the grid time — a KITTI
  image then shares its stamp with the LiDAR sweep and labels of the same frame;
* video files carry their own frame times (``CAP_PROP_POS_MSEC``, the time offset in the file),
  so they play in real time and are stamped playback start + file time;
* live devices and streams are stamped with the host clock right after the frame is grabbed
  (OpenCV exposes no device clock it maps to wall time).

Live cameras run their blocking reads on a thread of their own that reopens a camera that fails
to open or disappears, with exponential backoff, and reports the error for ``/diagnostics``; a
node therefore keeps running through an unplugged cable. Everything here but the thread and the
node helper is plain functions over files, so tests need no camera.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fusion_stream.core.msgs import CompressedImage, Image
from fusion_stream.errors import FormatError, FusionStreamError, ParamError

if TYPE_CHECKING:
    from fusion_stream.runtime.node import Node

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MISSING_OPENCV = "camera sources need OpenCV: pip install 'fusion-stream[camera]'"


def cv2_module() -> Any:
    """OpenCV, or a :class:`FusionStreamError` naming the extra to install."""
    try:
        import cv2
    except ImportError as err:
        raise FusionStreamError(f"{MISSING_OPENCV} (import failed: {err})") from err
    return cv2


# --------------------------------------------------------------------------- frames → messages


Lend = Callable[[tuple[int, ...], type[np.uint8]], np.ndarray]
"""Where an rgb8 frame is converted into, asked for by shape: a publisher's ``loan``."""


def to_message(
    bgr: np.ndarray,
    stamp_ns: int,
    frame_id: str,
    *,
    jpeg: bool = False,
    quality: int = 90,
    out: Lend | None = None,
) -> Image | CompressedImage:
    """An OpenCV BGR frame as an rgb8 ``Image``, or as a JPEG ``CompressedImage`` of ``quality``.
    With ``out``, the colour conversion writes straight into the array it lends (a publisher's
    loan: the frame then goes to subscribers on this machine with no copy)."""
    cv2 = cv2_module()
    if bgr.ndim == 2:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
    if jpeg:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:
            raise FusionStreamError(f"OpenCV could not JPEG-encode a {bgr.shape} frame")
        return CompressedImage(stamp_ns=stamp_ns, frame_id=frame_id, data=buf.tobytes(), format="jpeg")
    dst = None if out is None else out(bgr.shape, np.uint8)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=dst)
    return Image(stamp_ns=stamp_ns, frame_id=frame_id, data=rgb, encoding="rgb8")


def check_quality(quality: int) -> None:
    if not 1 <= quality <= 100:
        raise ParamError("quality", f"JPEG quality is 1 … 100, got {quality}")


# --------------------------------------------------------------------------- image folders


def list_images(root: Path | str) -> list[Path]:
    """The frames of an image folder, in order: its .png/.jpg files sorted by name (zero-pad the
    numbers), or the image_2 pictures of a KITTI object folder in either layout."""
    from fusion_stream.core.kitti import KittiFolder

    root = Path(root)
    if not root.is_dir():
        raise FormatError(f"{root}: no such image folder")
    direct = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if direct:
        return direct
    try:
        kitti = KittiFolder(root)
    except FormatError:
        kitti = None
    if kitti is not None:  # the frames the LiDAR node plays too, so frame k is the same frame
        return [kitti.path(fid, "image_2") for fid in kitti.ids]
    # a camera-only KITTI tree (no velodyne folder to enumerate frames from)
    bench = sorted((root / "image_2").glob("*.png")) if (root / "image_2").is_dir() else []
    flat = sorted(root.glob("*/image_2.png"))
    if bench or flat:
        return bench or flat
    raise FormatError(
        f"{root}: no images (expected .png/.jpg files, or a KITTI object folder: "
        "image_2/NNNNNN.png or NNNNNN/image_2.png)"
    )


def read_image(path: Path | str) -> np.ndarray:
    """An image file as an H×W×3 BGR array (grey and 16-bit files are converted)."""
    cv2 = cv2_module()
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FormatError(f"{path}: not an image OpenCV can read (missing, damaged, or an unknown format)")
    return np.asarray(img)


class ImageFolder:
    """A folder of images (see :func:`list_images`), each decoded when asked for."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.paths = list_images(self.root)

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, i: int) -> np.ndarray:
        """Frame ``i`` as BGR."""
        return read_image(self.paths[i])

    def message(
        self, i: int, stamp_ns: int, frame_id: str = "", *, jpeg: bool = False, quality: int = 90
    ) -> Image | CompressedImage:
        """Frame ``i`` as a message. With ``jpeg``, a .jpg file is sent as it is (no second lossy
        generation; ``quality`` applies to what is encoded here)."""
        path = self.paths[i]
        if jpeg and path.suffix.lower() in (".jpg", ".jpeg"):
            try:
                data = path.read_bytes()
            except OSError as err:
                raise FormatError(f"{path}: cannot read ({err.strerror or err})") from err
            if data.startswith(b"\xff\xd8"):
                return CompressedImage(stamp_ns=stamp_ns, frame_id=frame_id, data=data, format="jpeg")
        return to_message(self.read(i), stamp_ns, frame_id, jpeg=jpeg, quality=quality)


# --------------------------------------------------------------------------- video files


class VideoFile:
    """A video file read frame by frame, each with its time offset in the file (ns)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FormatError(f"{self.path}: no such video file")
        cv2 = cv2_module()
        self._cv2 = cv2
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            self._cap.release()
            raise FormatError(f"{self.path}: OpenCV cannot open it as a video (unknown container or codec)")
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0 < fps < 10_000 else 0.0
        """Nominal frame rate from the container; 0 when it does not say."""
        self._last_ns: int | None = None
        self._count = 0

    @property
    def frame_period_ns(self) -> int:
        return round(1e9 / self.fps) if self.fps else 33_333_333

    def read(self) -> tuple[np.ndarray, int] | None:
        """The next frame (BGR) and its file time in ns; None at the end of the file."""
        ok, frame = self._cap.read()
        if not ok or frame is None:
            return None
        offset = round(float(self._cap.get(self._cv2.CAP_PROP_POS_MSEC)) * 1e6)
        if self._last_ns is not None and offset <= self._last_ns:  # a backend that gives no frame times
            offset = self._last_ns + self.frame_period_ns
        self._last_ns = offset
        self._count += 1
        return np.asarray(frame), offset

    def frames(self) -> list[tuple[np.ndarray, int]]:
        """Every remaining frame (for short files and tests)."""
        out = []
        while (f := self.read()) is not None:
            out.append(f)
        return out

    def close(self) -> None:
        self._cap.release()


class VideoPlayback:
    """A video file played in real time by its own frame times: a frame is due at playback start
    + its file time, and stamped so. Looping, each pass starts one frame period after the
    previous pass's last frame; once (``loop=False``), :attr:`finished` is set at the end."""

    def __init__(self, path: Path | str, *, loop: bool = True) -> None:
        self.path = Path(path)
        self.loop = loop
        self.video = VideoFile(self.path)
        first = self.video.read()
        if first is None:
            self.video.close()
            raise FormatError(f"{self.path}: OpenCV opens it but decodes no frames (unsupported codec?)")
        self._next: tuple[np.ndarray, int] | None = first
        self.start_ns: int | None = None
        self.pass_ns = 0
        """File time 0 of the current pass, relative to the playback start."""
        self.skipped = 0
        self.passes = 1
        self.finished = False

    def due(self, now_ns: int) -> tuple[np.ndarray, int] | None:
        """The newest frame due by ``now_ns`` (BGR, stamp) not yet returned; frames due earlier
        that were never returned (the process fell behind) are skipped and counted."""
        if self.start_ns is None:
            self.start_ns = now_ns
        newest = None
        while self._next is not None and self.start_ns + self.pass_ns + self._next[1] <= now_ns:
            if newest is not None:
                self.skipped += 1
            newest = (self._next[0], self.start_ns + self.pass_ns + self._next[1])
            self._advance()
        return newest

    def _advance(self) -> None:
        assert self._next is not None
        last_offset = self._next[1]
        nxt = self.video.read()
        if nxt is None:
            if not self.loop:
                self._next, self.finished = None, True
                self.video.close()
                return
            period = self.video.frame_period_ns
            self.video.close()
            self.video = VideoFile(self.path)
            self.pass_ns += last_offset + period
            self.passes += 1
            nxt = self.video.read()
            if nxt is None:
                raise FormatError(f"{self.path}: no frames on reopening the file to loop")
        self._next = nxt

    def close(self) -> None:
        self.video.close()


# --------------------------------------------------------------------------- live cameras


class CameraError(FusionStreamError):
    """A live camera could not be opened, or stopped delivering frames."""

    def __init__(self, camera: str, reason: str) -> None:
        self.camera = camera
        self.reason = reason
        super().__init__(f"{camera}: {reason}")


def _hide_password(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", url)


def describe(source: int | str) -> str:
    """How errors and logs name a live source: ``camera device 0 (/dev/video0)``, ``stream rtsp://…``."""
    if isinstance(source, int):
        dev = f" (/dev/video{source})" if sys.platform.startswith("linux") else ""
        return f"camera device {source}{dev}"
    if "://" in source:
        return f"stream {_hide_password(source)}"
    return f"camera device {source}"


def _open_failure(source: int | str) -> str:
    if isinstance(source, str) and "://" in source:
        return "cannot connect or decode the stream (check the address, the network and the credentials)"
    if sys.platform.startswith("linux"):
        node = Path(f"/dev/video{source}") if isinstance(source, int) else Path(source)
        if not node.exists():
            return f"cannot open it: {node} does not exist (unplugged? `v4l2-ctl --list-devices` lists the cameras)"
        return (
            f"cannot open it: {node} exists but OpenCV cannot read it (in use by another program, "
            "no permission — is the user in the video group? — or not a capture device)"
        )
    return "cannot open it (no such device, or in use by another program)"


def open_capture(source: int | str, *, fps: float = 0.0) -> Any:
    """An opened ``cv2.VideoCapture`` on a device index, device path or stream URL; a
    :class:`CameraError` naming the device and what to check when it does not open."""
    cv2 = cv2_module()
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        cap.release()
        raise CameraError(describe(source), _open_failure(source))
    if fps > 0 and not (isinstance(source, str) and "://" in source):
        cap.set(cv2.CAP_PROP_FPS, fps)  # a request; the driver picks the nearest mode it has
    return cap


@dataclass
class Backoff:
    """Retry delays: ``first_s``, doubling up to ``max_s``; :meth:`reset` after a success."""

    first_s: float = 0.5
    max_s: float = 10.0
    factor: float = 2.0
    _delay: float = field(default=0.0, repr=False)

    def next(self) -> float:
        delay = self._delay or self.first_s
        self._delay = min(delay * self.factor, self.max_s)
        return delay

    def reset(self) -> None:
        self._delay = 0.0


class LiveCamera:
    """A camera or stream read on a thread: frames (BGR, host time at grab) wait in a short
    queue for :meth:`take`; a camera that fails to open or stops delivering is released and
    reopened with :class:`Backoff`, and :attr:`error` says why meanwhile (None when streaming)."""

    def __init__(
        self,
        source: int | str,
        *,
        clock: Callable[[], int] = time.time_ns,
        stop: threading.Event | None = None,
        fps: float = 0.0,
        backoff: Backoff | None = None,
        queue_frames: int = 4,
        opener: Callable[[int | str, float], Any] | None = None,
    ) -> None:
        self.source = source
        self.name = describe(source)
        self._clock = clock
        self._stop = stop or threading.Event()
        self._fps = fps
        self._backoff = backoff or Backoff()
        self._open = opener or (lambda s, f: open_capture(s, fps=f))
        self._frames: deque[tuple[np.ndarray, int]] = deque()
        self._max = queue_frames
        self._lock = threading.Lock()
        self.error: str | None = f"{self.name}: opening"
        self.opens = 0
        self.failures = 0
        self.dropped = 0
        self.grabbed = 0
        self._thread = threading.Thread(target=self._run, name=f"camera {source}", daemon=True)

    @property
    def connected(self) -> bool:
        return self.error is None

    def start(self) -> LiveCamera:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def take(self) -> list[tuple[np.ndarray, int]]:
        """Frames grabbed since the last call, oldest first."""
        with self._lock:
            out = list(self._frames)
            self._frames.clear()
        return out

    def _put(self, frame: np.ndarray, stamp_ns: int) -> None:
        with self._lock:
            if len(self._frames) >= self._max:
                self._frames.popleft()
                self.dropped += 1
            self._frames.append((frame, stamp_ns))
            self.grabbed += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                cap = self._open(self.source, self._fps)
            except CameraError as err:
                self.error = f"{err}; retrying"
                self.failures += 1
                self._stop.wait(self._backoff.next())
                continue
            self.opens += 1
            try:
                self._stream(cap)
            except (cv2_module().error, OSError) as err:  # a driver error mid-stream: reopen like an unplug
                self.error = f"{self.name}: capture failed ({err}); reopening"
            finally:
                cap.release()
            if not self._stop.is_set():
                self.failures += 1
                self._stop.wait(self._backoff.next())

    def _stream(self, cap: Any) -> None:
        while not self._stop.is_set():
            ok = cap.grab()
            stamp = self._clock()
            frame = cap.retrieve()[1] if ok else None
            if frame is None:
                self.error = f"{self.name}: stopped delivering frames (unplugged, or the stream ended); reopening"
                return
            if self.error is not None:
                self.error = None
                self._backoff.reset()
            self._put(np.asarray(frame), stamp)


# --------------------------------------------------------------------------- playback on the grid


def publish_video(
    node: Node, topic: str, path: Path | str, frame_id: str, *, loop: bool = True, jpeg: bool = False, quality: int = 90
) -> VideoPlayback:
    """Play a video file on ``topic`` in real time (see :class:`VideoPlayback`); played once,
    the node stops after the last frame."""
    playback = VideoPlayback(path, loop=loop)
    pub = node.publisher(topic, CompressedImage if jpeg else Image)
    node.add_diagnostics(lambda: {"frames_skipped": playback.skipped, "passes": playback.passes})

    def tick() -> None:
        due = playback.due(node.clock.now_ns())
        if due is not None:
            pub.publish(to_message(due[0], due[1], frame_id, jpeg=jpeg, quality=quality, out=pub.loan))
        if playback.finished:
            node.request_stop(f"played {playback.path.name} once")

    # poll a few times per frame: frames are due at their own (possibly variable) times
    node.timer(min(0.02, max(0.002, playback.video.frame_period_ns / 4e9)), tick)
    return playback


def publish_live(
    node: Node,
    topic: str,
    source: int | str,
    frame_id: str,
    *,
    fps: float = 0.0,
    jpeg: bool = False,
    quality: int = 90,
) -> LiveCamera:
    """Publish every frame of a live camera or stream on ``topic``. While it is not streaming
    (failed to open, unplugged), the node keeps running, retries, and reports WARN with the
    reason in ``/diagnostics``."""
    from fusion_stream.core.msgs import Level

    cv2_module()  # a missing OpenCV is a setup error, not something to retry
    if isinstance(source, str) and source.isdigit():
        source = int(source)  # "0" from a launch file is the device index, not a file named 0
    camera = LiveCamera(source, clock=node.clock.now_ns, stop=node.stop_event, fps=fps)
    shown: list[str | None] = [camera.error]
    node.log.info("opening %s", camera.name)
    node.set_status(Level.WARN, camera.error or "")
    camera.start()
    pub = node.publisher(topic, CompressedImage if jpeg else Image)
    node.add_diagnostics(
        lambda: {
            "connected": camera.connected,
            "opens": camera.opens,
            "open_failures": camera.failures,
            "frames_dropped": camera.dropped,
        }
    )

    def tick() -> None:
        for frame, stamp in camera.take():
            pub.publish(to_message(frame, stamp, frame_id, jpeg=jpeg, quality=quality, out=pub.loan))
        error = camera.error
        if error != shown[0]:
            shown[0] = error
            if error is None:
                node.log.info("%s: streaming", camera.name)
                node.set_status(Level.OK, "")
            else:
                node.log.warning("%s", error)
                node.set_status(Level.WARN, error)

    node.timer(0.005, tick)
    return camera

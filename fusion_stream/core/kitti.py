"""KITTI object-detection folders: calibration → rig, labels → boxes in the rig frame, frames →
sensor messages.

Two layouts are read: the benchmark's (``velodyne/000000.bin``, ``image_2/000000.png``,
``calib/000000.txt``, ``label_2/000000.txt``) and one folder per frame (``000000/velodyne.bin``,
``000000/image_2.png``, ...). The rig frame is the Velodyne's, moved down to the ground
(``lidar_height``), like the simulated rig's: x forward, y left, z up."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fusion_stream.core import calib, msgs
from fusion_stream.errors import FormatError

LIDAR_HEIGHT = 1.73
"""Height of the KITTI car's Velodyne above the road (m)."""
CLASS_MAP = {
    "Car": "car",
    "Van": "car",
    "Truck": "truck",
    "Pedestrian": "pedestrian",
    "Person_sitting": "pedestrian",
    "Cyclist": "cyclist",
}
"""KITTI label types we detect; Tram, Misc and DontCare are left out."""


@dataclass(frozen=True)
class KittiCalib:
    p2: np.ndarray
    """3×4 projection of rectified camera-0 coordinates into image_2."""
    r0_rect: np.ndarray
    tr_velo_to_cam: np.ndarray

    def velo_to_rect(self) -> np.ndarray:
        """4×4: Velodyne → rectified camera-0 coordinates."""
        m = np.eye(4)
        m[:3, :4] = self.r0_rect @ self.tr_velo_to_cam
        return m


def read_calib(path: Path) -> KittiCalib:
    """A KITTI ``calib/*.txt``; a missing or malformed key is a :class:`FormatError` naming it."""
    values: dict[str, np.ndarray] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise FormatError(f"{path}: cannot read KITTI calibration ({err})") from err
    for line in lines:
        if ":" not in line:
            continue
        key, _, rest = line.partition(":")
        try:
            values[key.strip()] = np.array([float(v) for v in rest.split()])
        except ValueError as err:
            raise FormatError(f"{path}: {key.strip()}: not a list of numbers") from err
    need = {"P2": 12, "R0_rect": 9, "Tr_velo_to_cam": 12}
    for key, n in need.items():
        if key not in values:
            raise FormatError(f"{path}: no {key} (a KITTI calib file has P0..P3, R0_rect, Tr_velo_to_cam)")
        if values[key].size != n:
            raise FormatError(f"{path}: {key} has {values[key].size} numbers, expected {n}")
    return KittiCalib(
        values["P2"].reshape(3, 4), values["R0_rect"].reshape(3, 3), values["Tr_velo_to_cam"].reshape(3, 4)
    )


def _rigid(m: np.ndarray) -> calib.Transform:
    """The nearest rigid transform (KITTI's rotations are orthonormal only to ~1e-4)."""
    u, _, vt = np.linalg.svd(m[:3, :3])
    out = np.eye(4)
    out[:3, :3] = u @ vt
    out[:3, 3] = m[:3, 3]
    return calib.Transform(out)


def rig_from_calib(kc: KittiCalib, image_size: tuple[int, int], lidar_height: float = LIDAR_HEIGHT) -> calib.Rig:
    """A rig with the Velodyne (``velodyne``) and the left colour camera (``camera_left``).

    ``image_size`` is (width, height) of image_2."""
    k = kc.p2[:, :3]
    offset = np.linalg.solve(k, kc.p2[:, 3])  # image_2's optical centre, in rectified cam-0 coordinates
    rig_to_velo = np.eye(4)
    rig_to_velo[2, 3] = -lidar_height
    rect_to_cam2 = np.eye(4)
    rect_to_cam2[:3, 3] = offset
    rig_to_cam2 = rect_to_cam2 @ kc.velo_to_rect() @ rig_to_velo
    lidar = calib.Sensor("velodyne", "lidar", calib.Transform(np.linalg.inv(rig_to_velo)))
    camera = calib.Sensor(
        "camera_left",
        "camera",
        _rigid(np.linalg.inv(rig_to_cam2)),
        intrinsics=calib.Intrinsics(image_size[0], image_size[1], k[0, 0], k[1, 1], k[0, 2], k[1, 2]),
        distortion=(0.0, 0.0, 0.0, 0.0, 0.0),
    )
    return calib.Rig("kitti", "base_link", {"velodyne": lidar, "camera_left": camera})


def image_beside(calib_path: Path) -> Path | None:
    """The image_2 picture of the frame a calib file belongs to, in either layout, if present."""
    flat = calib_path.with_name("image_2.png")
    bench = calib_path.parent.parent / "image_2" / f"{calib_path.stem}.png"
    return next((p for p in (flat, bench) if p.exists()), None)


def rig_file_from_kitti(
    calib_path: Path, out: Path, image_size: tuple[int, int] | None = None, lidar_height: float = LIDAR_HEIGHT
) -> calib.Rig:
    """``fusion-stream calib from-kitti``: a rig file from a KITTI calib file. The image size
    comes from ``image_size`` or from the frame's image_2 picture next to the calib file."""
    kc = read_calib(calib_path)
    if image_size is None:
        image = image_beside(calib_path)
        if image is None:
            raise FormatError(
                f"{calib_path}: no image_2 picture beside it to take the image size from; "
                "pass --image-size WIDTHxHEIGHT"
            )
        from PIL import Image as PILImage

        with PILImage.open(image) as im:
            image_size = im.size
    rig = rig_from_calib(kc, image_size, lidar_height)
    comment = (
        f"Converted from KITTI {calib_path} by `fusion-stream calib from-kitti`.\n"
        f"Rig frame: the Velodyne's axes, {lidar_height} m lower (on the road); camera_left is image_2 "
        f"({image_size[0]}x{image_size[1]}, rectified: no distortion)."
    )
    calib.save(rig, out, comment)
    return rig


def read_labels(path: Path, kc: KittiCalib, lidar_height: float = LIDAR_HEIGHT) -> tuple[msgs.Box3D, ...]:
    """``label_2`` boxes of the classes we detect, in the rig frame (centre, l/w/h, yaw)."""
    rect_to_velo = np.linalg.inv(kc.velo_to_rect())
    boxes = []
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise FormatError(f"{path}: cannot read KITTI labels ({err})") from err
    for n, line in enumerate(lines, 1):
        f = line.split()
        if not f:
            continue
        if len(f) < 15:
            raise FormatError(f"{path}:{n}: {len(f)} fields, a KITTI label has 15")
        label = CLASS_MAP.get(f[0])
        if label is None:
            continue
        h, w, length = (float(v) for v in f[8:11])
        x, y, z, ry = (float(v) for v in f[11:15])
        centre = rect_to_velo @ np.array([x, y - h / 2, z, 1.0])
        heading = rect_to_velo[:3, :3] @ np.array([math.cos(ry), 0.0, -math.sin(ry)])
        boxes.append(
            msgs.Box3D(
                center=(float(centre[0]), float(centre[1]), float(centre[2] + lidar_height)),
                size=(length, w, h),
                yaw=math.atan2(heading[1], heading[0]),
                label=label,
                attributes={"siren": False, "occluded": int(f[2]), "truncated": float(f[1])},
            )
        )
    return tuple(boxes)


def read_velodyne(path: Path) -> np.ndarray:
    """N×4 float32 (x, y, z, reflectance) in the Velodyne frame."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise FormatError(f"{path}: cannot read ({err})") from err
    if len(raw) % 16:
        raise FormatError(f"{path}: {len(raw)} bytes is not a whole number of 16-byte (x, y, z, r) points")
    return np.frombuffer(raw, dtype="<f4").reshape(-1, 4)


@dataclass(frozen=True)
class KittiFrame:
    id: str
    rig: calib.Rig
    members: dict[str, tuple[msgs.SensorMessage, ...]]
    """``lidar`` (PointCloud, Velodyne frame) and ``camera`` (Image, rgb8)."""
    boxes: tuple[msgs.Box3D, ...]


class KittiFolder:
    """The frames of a KITTI object folder (either layout), loaded one at a time."""

    def __init__(self, root: Path | str, lidar_height: float = LIDAR_HEIGHT) -> None:
        self.root = Path(root)
        self.lidar_height = lidar_height
        if (self.root / "velodyne").is_dir():
            self.ids = sorted(p.stem for p in (self.root / "velodyne").glob("*.bin"))
            self._flat = False
        else:
            self.ids = sorted(p.parent.name for p in self.root.glob("*/velodyne.bin"))
            self._flat = True
        if not self.ids:
            raise FormatError(f"{self.root}: no KITTI frames (expected velodyne/NNNNNN.bin or NNNNNN/velodyne.bin)")

    def __len__(self) -> int:
        return len(self.ids)

    def path(self, frame_id: str, part: str) -> Path:
        ext = {"velodyne": "bin", "image_2": "png", "calib": "txt", "label_2": "txt"}[part]
        p = self.root / frame_id / f"{part}.{ext}" if self._flat else self.root / part / f"{frame_id}.{ext}"
        if not p.exists():
            raise FormatError(f"{p}: missing (KITTI frame {frame_id} needs its {part} file)")
        return p

    def boxes(self, i: int) -> tuple[msgs.Box3D, ...]:
        """Frame ``i``'s labelled objects in the rig frame (the ground truth of that frame)."""
        fid = self.ids[i]
        return read_labels(self.path(fid, "label_2"), read_calib(self.path(fid, "calib")), self.lidar_height)

    def load(self, i: int) -> KittiFrame:
        from PIL import Image as PILImage

        fid = self.ids[i]
        kc = read_calib(self.path(fid, "calib"))
        try:
            rgb = np.asarray(PILImage.open(self.path(fid, "image_2")).convert("RGB"))
        except OSError as err:
            raise FormatError(f"{self.path(fid, 'image_2')}: not a readable image ({err})") from err
        rig = rig_from_calib(kc, (rgb.shape[1], rgb.shape[0]), self.lidar_height)
        points = read_velodyne(self.path(fid, "velodyne"))
        stamp = i * 100_000_000
        members: dict[str, tuple[msgs.SensorMessage, ...]] = {
            "lidar": (
                msgs.PointCloud(stamp_ns=stamp, frame_id="velodyne", data=points, fields=("x", "y", "z", "intensity")),
            ),
            "camera": (msgs.Image(stamp_ns=stamp, frame_id="camera_left", data=np.ascontiguousarray(rgb)),),
        }
        return KittiFrame(fid, rig, members, read_labels(self.path(fid, "label_2"), kc, self.lidar_height))

"""Radar sources: decoded detection lists (CSV or YAML files) replayed as ``RadarScan``.

Automotive radars report detections in polar form; fusion wants Cartesian points in the sensor
frame. Decoding the sensor's UDP protocol is the driver's job (nebula, the vendor's tools); what
they write out — one row or mapping per detection — is read here.

Conventions (ISO 8855 / ROS REP 103, the same as the Continental ARS548 interface and the nebula
driver that wrote the shared recording): x forward, y left, z up; azimuth counter-clockwise seen
from above (positive = left), elevation positive upwards; radial velocity (range rate) positive
moving away; RCS in dBsm. So::

    x = r·cos(el)·cos(az)    y = r·cos(el)·sin(az)    z = r·sin(el)

Points stay in the radar's own frame (the ARS548 ``origin_pos`` mounting position is the rig
calibration's business, not the source's).

**CSV** — a header row is required; these columns, in any order (extra columns are ignored)::

    range_m,azimuth_deg,elevation_deg,radial_velocity_mps,rcs_dbsm

Optional ``frame`` and/or ``stamp_ns`` columns split one file into several scans: consecutive
rows with the same values form one scan (``stamp_ns`` is kept as the recorded stamp). Without
them, the file is one scan. Blank lines and lines starting with ``#`` are skipped.

**YAML** — one scan per YAML document (``---`` separates them, as ``ros2 topic echo`` writes):

* a ``continental_msgs/ContinentalArs548DetectionList`` (``header.stamp``, ``detections`` with
  ``range`` m, ``azimuth_angle``/``elevation_angle`` rad, ``range_rate`` m/s, ``rcs`` dBsm;
  detections flagged ``invalid_distance/azimuth/elevation/range_rate`` are left out), or
* the simple form: a list of mappings with the CSV column names (or a mapping whose
  ``detections`` is such a list, with an optional ``stamp_ns``).

Scans carry :data:`FIELDS` (as the simulated radar: angles in radians).
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fusion_stream.core import yamlio
from fusion_stream.core.msgs import RadarScan
from fusion_stream.errors import FormatError

FIELDS = ("x", "y", "z", "radial_velocity", "rcs", "range", "azimuth", "elevation")
"""Fields of every scan: Cartesian position (m), radial velocity (m/s), RCS (dBsm), and the polar
measurement it came from (m, rad, rad)."""
CSV_COLUMNS = ("range_m", "azimuth_deg", "elevation_deg", "radial_velocity_mps", "rcs_dbsm")
ARS548_KEYS = ("range", "azimuth_angle", "elevation_angle", "range_rate", "rcs")
ARS548_INVALID = ("invalid_distance", "invalid_azimuth", "invalid_elevation", "invalid_range_rate")
SUFFIXES = (".csv", ".yaml", ".yml")


def polar_to_scan(
    range_m: Any,
    azimuth_rad: Any,
    elevation_rad: Any,
    radial_velocity: Any,
    rcs: Any,
    *,
    stamp_ns: int = 0,
    frame_id: str = "",
) -> RadarScan:
    """Detections in polar form (1-D arrays, radians) → a ``RadarScan`` in the sensor frame."""
    r = np.asarray(range_m, np.float64).reshape(-1)
    az = np.asarray(azimuth_rad, np.float64).reshape(-1)
    el = np.asarray(elevation_rad, np.float64).reshape(-1)
    ground = r * np.cos(el)
    data = np.empty((len(r), len(FIELDS)), np.float32)
    data[:, 0] = ground * np.cos(az)
    data[:, 1] = ground * np.sin(az)
    data[:, 2] = r * np.sin(el)
    data[:, 3] = np.asarray(radial_velocity, np.float64).reshape(-1)
    data[:, 4] = np.asarray(rcs, np.float64).reshape(-1)
    data[:, 5], data[:, 6], data[:, 7] = r, az, el
    return RadarScan(stamp_ns=stamp_ns, frame_id=frame_id, data=data, fields=FIELDS)


def _number(value: Any, where: str, name: str) -> float:
    if isinstance(value, bool):
        raise FormatError(f"{where}: {name} is {value!r}, expected a number")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise FormatError(f"{where}: {name} is {value!r}, expected a number") from None
    if not math.isfinite(x):
        raise FormatError(f"{where}: {name} is {value!r}, expected a finite number")
    return x


def _check_polar(where: str, r: float, az_deg: float, el_deg: float) -> None:
    if r < 0:
        raise FormatError(f"{where}: range {r} m is negative")
    if not -180.0 <= az_deg <= 360.0 or not -90.0 <= el_deg <= 90.0:
        raise FormatError(
            f"{where}: azimuth {az_deg:g}° / elevation {el_deg:g}° out of range "
            "(are the angles in the units the format says: degrees for CSV and the simple YAML form, "
            "radians for ARS548?)"
        )


# --------------------------------------------------------------------------- CSV


def read_csv(path: Path | str, *, frame_id: str = "") -> list[RadarScan]:
    """Scans of a detection CSV (see the module docstring); a bad row is a :class:`FormatError`
    naming the file and the row."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise FormatError(f"{path}: cannot read the radar CSV ({err})") from err
    lines = [
        (n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        raise FormatError(f"{path}: empty; a radar CSV needs a header row {','.join(CSV_COLUMNS)}")
    rows = csv.reader(line for _, line in lines)
    header = [h.strip() for h in next(rows)]
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise FormatError(
            f"{path}: line {lines[0][0]}: the header has no {missing}; "
            f"a radar CSV starts with the header row {','.join(CSV_COLUMNS)} (first row read: {','.join(header)})"
        )
    cols = [header.index(c) for c in CSV_COLUMNS]
    keys = [header.index(c) for c in ("frame", "stamp_ns") if c in header]
    stamp_col = header.index("stamp_ns") if "stamp_ns" in header else None
    groups: list[tuple[tuple[str, ...], int, list[list[float]]]] = []
    for row_no, ((line_no, _), row) in enumerate(zip(lines[1:], rows, strict=True), 1):
        where = f"{path}: row {row_no} (line {line_no})"
        if len(row) != len(header):
            raise FormatError(f"{where}: {len(row)} values, the header has {len(header)} columns")
        values = [_number(row[c].strip(), where, name) for c, name in zip(cols, CSV_COLUMNS, strict=True)]
        _check_polar(where, values[0], values[1], values[2])
        key = tuple(row[k].strip() for k in keys)
        if not groups or groups[-1][0] != key:
            stamp = 0
            if stamp_col is not None:
                try:
                    stamp = int(row[stamp_col].strip())
                except ValueError:
                    raise FormatError(
                        f"{where}: stamp_ns is {row[stamp_col]!r}, expected integer nanoseconds"
                    ) from None
            groups.append((key, stamp, []))
        groups[-1][2].append(values)
    if not groups:  # a header and no detections: one empty scan (the radar saw nothing)
        groups.append(((), 0, []))
    return [_from_degrees(np.asarray(v, np.float64).reshape(-1, 5), stamp, frame_id) for _, stamp, v in groups]


def _from_degrees(v: np.ndarray, stamp_ns: int, frame_id: str) -> RadarScan:
    return polar_to_scan(
        v[:, 0], np.radians(v[:, 1]), np.radians(v[:, 2]), v[:, 3], v[:, 4], stamp_ns=stamp_ns, frame_id=frame_id
    )


# --------------------------------------------------------------------------- YAML


def _header_stamp(doc: Mapping[str, Any]) -> int:
    header = doc.get("header")
    stamp = header.get("stamp") if isinstance(header, Mapping) else None
    if isinstance(stamp, Mapping):
        return int(stamp.get("sec", 0)) * 1_000_000_000 + int(stamp.get("nanosec", 0))
    return int(doc.get("stamp_ns", 0) or 0)


def _scan_from_detections(items: Sequence[Any], where: str, stamp_ns: int, frame_id: str) -> RadarScan:
    rows: list[list[float]] = []
    for i, det in enumerate(items):
        at = f"{where}, detection {i}"
        if not isinstance(det, Mapping):
            raise FormatError(f"{at}: expected a mapping of detection values, got {type(det).__name__}")
        if "azimuth_angle" in det:  # ARS548: radians, range_rate
            missing = [k for k in ARS548_KEYS if k not in det]
            if missing:
                raise FormatError(f"{at}: ARS548 detection without {missing}")
            if any(det.get(flag) for flag in ARS548_INVALID):
                continue
            r, az, el, v, rcs = (_number(det[k], at, k) for k in ARS548_KEYS)
            _check_polar(at, r, math.degrees(az), math.degrees(el))
            rows.append([r, az, el, v, rcs])
        else:
            missing = [k for k in CSV_COLUMNS if k not in det]
            if missing:
                raise FormatError(
                    f"{at}: no {missing}; a detection has {list(CSV_COLUMNS)} (or the ARS548 {list(ARS548_KEYS)})"
                )
            r, az_deg, el_deg, v, rcs = (_number(det[k], at, k) for k in CSV_COLUMNS)
            _check_polar(at, r, az_deg, el_deg)
            rows.append([r, math.radians(az_deg), math.radians(el_deg), v, rcs])
    a = np.asarray(rows, np.float64).reshape(-1, 5)
    return polar_to_scan(a[:, 0], a[:, 1], a[:, 2], a[:, 3], a[:, 4], stamp_ns=stamp_ns, frame_id=frame_id)


def scans_from_documents(docs: Iterable[Any], source: str, *, frame_id: str = "") -> list[RadarScan]:
    """One scan per YAML document (already parsed); ``source`` names the file in errors."""
    scans = []
    for d, doc in enumerate(docs):
        where = f"{source}: document {d}"
        if doc is None:  # an empty document, e.g. after a trailing ---
            continue
        if isinstance(doc, Mapping):
            items = doc.get("detections")
            if not isinstance(items, list):
                raise FormatError(
                    f"{where}: a mapping without a detections list; expected an ARS548 detection list "
                    "or a list of detections"
                )
            try:
                stamp = _header_stamp(doc)
            except (TypeError, ValueError) as err:
                raise FormatError(f"{where}: header.stamp is not integer sec/nanosec ({err})") from err
            scans.append(_scan_from_detections(items, where, stamp, frame_id))
        elif isinstance(doc, list):
            scans.append(_scan_from_detections(doc, where, 0, frame_id))
        else:
            raise FormatError(f"{where}: a {type(doc).__name__}, expected a detection list")
    if not scans:
        raise FormatError(f"{source}: no detection lists in the file")
    return scans


_PLAIN_SCALAR = re.compile(r"""^[^'"\[\]{}&*!|>#%@`]+$""")


def fast_detection_list(text: str) -> dict[str, Any] | None:
    """A single detection-list document as written by ROS ``to_yaml`` (``detections:`` last, a
    flat mapping of plain scalars per detection), parsed line by line — ten times faster than a
    YAML parser, which takes longer than the radar's 50 ms cycle on a 300-detection ARS548 list.
    None when the text is anything else; the caller then parses it as YAML."""
    head, sep, body = text.partition("\ndetections:\n")
    if not sep or "\n---" in body or "\ndetections:" in body:
        return None
    items: list[dict[str, Any]] = []
    for line in body.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):  # another top-level key after the list
            return None
        entry = line.strip()
        if entry.startswith("- "):
            items.append({})
            entry = entry[2:]
        key, sep, value = entry.partition(": ")
        if not items or not sep or not _PLAIN_SCALAR.match(value) or " #" in value:
            return None
        items[-1][key] = True if value == "true" else False if value == "false" else value
    try:
        header = yamlio.load(head, FormatError, yamlio.DATA) if head.strip() else {}
    except FormatError:  # the full parse below says what is wrong
        return None
    if not isinstance(header, dict) or "detections" in header:
        return None
    return {**header, "detections": items}


def read_yaml(path: Path | str, *, frame_id: str = "") -> list[RadarScan]:
    """Scans of a detection YAML file (see the module docstring)."""
    path = Path(path)

    def fail(reason: str) -> FormatError:
        return FormatError(f"{path}: {reason}")

    # bounded like every YAML the package reads: regular files, size, depth and aliases
    text = yamlio.read_text(path, fail, max_bytes=yamlio.DATA.max_bytes, missing="no such radar file")
    fast = fast_detection_list(text)
    if fast is not None:
        return scans_from_documents([fast], str(path), frame_id=frame_id)
    docs = list(yamlio.load_all(text, fail, yamlio.DATA))
    return scans_from_documents(docs, str(path), frame_id=frame_id)


def read_file(path: Path | str, *, frame_id: str = "") -> list[RadarScan]:
    """Scans of one CSV or YAML detection file, chosen by its suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_csv(path, frame_id=frame_id)
    if suffix in (".yaml", ".yml"):
        return read_yaml(path, frame_id=frame_id)
    raise FormatError(f"{path}: unknown radar file type {suffix!r}; expected {', '.join(SUFFIXES)}")


def natural_key(path: Path) -> list[Any]:
    """Sort key that puts ``scan2`` before ``scan10`` (zero-padded names sort as usual)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


class RadarRecording:
    """Every scan of a detection file, or of a folder of them (name order, then file order)."""

    def __init__(self, path: Path | str, *, frame_id: str = "") -> None:
        self.path = Path(path)
        if self.path.is_dir():
            files = sorted((p for p in self.path.iterdir() if p.suffix.lower() in SUFFIXES), key=natural_key)
            if not files:
                raise FormatError(f"{self.path}: no radar files ({', '.join(SUFFIXES)}) in the folder")
        elif self.path.exists():
            files = [self.path]
        else:
            raise FormatError(f"{self.path}: no such radar file or folder")
        self.files = files
        self.scans = [scan for f in files for scan in read_file(f, frame_id=frame_id)]

    def __len__(self) -> int:
        return len(self.scans)

    def scan(self, i: int, stamp_ns: int) -> RadarScan:
        """Scan ``i`` stamped ``stamp_ns`` (playback time; the recorded stamp is not reused)."""
        s = self.scans[i]
        return RadarScan(stamp_ns=stamp_ns, frame_id=s.frame_id, data=s.data, fields=s.fields)

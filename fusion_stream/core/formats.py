"""Small file formats other tools open: PCD point clouds (PCL, Open3D, CloudCompare) and WAV.

Only what the project writes and reads back; decoders for sensor recordings live elsewhere.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from fusion_stream.errors import FormatError, ParamError


def write_pcd(path: Path | str, data: np.ndarray, fields: tuple[str, ...]) -> Path:
    """N×F float32 ``data`` as a binary PCD v0.7 file with the given field names."""
    path = Path(path)
    data = np.ascontiguousarray(data, dtype=np.float32)
    if data.ndim != 2 or data.shape[1] != len(fields):
        raise ParamError("data", f"is {data.shape}, expected N×{len(fields)} for fields {fields}")
    n, f = data.shape
    header = (
        "# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\n"
        f"FIELDS {' '.join(fields)}\nSIZE {' '.join(['4'] * f)}\nTYPE {' '.join(['F'] * f)}\n"
        f"COUNT {' '.join(['1'] * f)}\nWIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA binary\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header.encode("ascii") + data.tobytes())
    return path


def read_pcd(path: Path | str) -> tuple[np.ndarray, tuple[str, ...]]:
    """An uncompressed PCD (ascii or binary, float fields) as (N×F float32, field names)."""
    path = Path(path)
    raw = path.read_bytes()
    header: dict[str, list[str]] = {}
    offset = 0
    while True:
        end = raw.find(b"\n", offset)
        if end < 0:
            raise FormatError(f"{path}: PCD header has no DATA line")
        line = raw[offset:end].decode("ascii", "replace").strip()
        offset = end + 1
        if not line or line.startswith("#"):
            continue
        key, *values = line.split()
        header[key.upper()] = values
        if key.upper() == "DATA":
            break
    try:
        fields = tuple(header["FIELDS"])
        n = int(header["POINTS"][0])
        types, sizes = header["TYPE"], [int(s) for s in header["SIZE"]]
    except (KeyError, IndexError, ValueError) as err:
        raise FormatError(f"{path}: PCD header is missing or has a bad {err}") from err
    if any(t != "F" or s != 4 for t, s in zip(types, sizes, strict=False)):
        raise FormatError(f"{path}: only float32 fields are supported, got TYPE {types} SIZE {sizes}")
    mode = header["DATA"][0]
    if mode == "binary":
        body = raw[offset:]
        if len(body) < n * len(fields) * 4:
            raise FormatError(f"{path}: truncated: {n} points need {n * len(fields) * 4} bytes, found {len(body)}")
        data = np.frombuffer(body, np.float32, n * len(fields)).reshape(n, len(fields)).copy()
    elif mode == "ascii":
        data = np.loadtxt(raw[offset:].decode("ascii").splitlines(), dtype=np.float32, ndmin=2)
        if data.shape != (n, len(fields)):
            raise FormatError(f"{path}: expected {n}×{len(fields)} values, found {data.shape}")
    else:
        raise FormatError(f"{path}: DATA {mode} is not supported (use binary or ascii)")
    return data, fields


def write_wav(path: Path | str, samples: np.ndarray, sample_rate: int) -> Path:
    """Channels × samples float audio (full scale ±1) as a 16-bit PCM WAV, clipping beyond."""
    path = Path(path)
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).round().astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(pcm.shape[0])
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(np.ascontiguousarray(pcm.T).tobytes())
    return path

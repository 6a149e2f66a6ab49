"""Benchmark: how fast each real-sensor source decodes on one core, against the sensor's own rate.

A source that decodes N times faster than its sensor produces data leaves (N − 1)/N of a core for
everything else in that process; below 1× it cannot keep up live. Each row decodes a recording
from ``../shared/data`` again and again for ``--seconds`` with the process pinned to one CPU, all
the way to the PointClouds the node publishes (pcap parsing included for file playback; the
"live path" rows feed datagrams already in memory, as :class:`~fusion_stream.sources.pointfiles.UdpReceiver`
hands them over). A velodyne-decoder ``read_pcap`` row shows what the library costs on its own.

Sensor rates (10 Hz): VLP-16 ≈ 300k points/s (single return), HDL-32E ≈ 700k, OS-1-32 1024x10
≈ 330k, OS-0-128 1024x10 ≈ 1.3M, HDL-64E (KITTI) ≈ 1.3M. One function per source family; other
families (camera, audio, radar) add their own rows the same way.

    python bench/sources.py                 # every family, 1.5 s per row, pinned to one CPU
    python bench/sources.py --seconds 5 --cpu 1
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fusion_stream.errors import FusionStreamError
from fusion_stream.sources.pointfiles import kitti_sweeps, pcd_files

console = Console(width=None if sys.stdout.isatty() else 150)
DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


@dataclass(frozen=True)
class Row:
    """One measured source: its decode rate next to its sensor's real rate."""

    source: str
    sensor: str
    rotations_per_s: float = 0.0
    points_per_s: float = 0.0
    sensor_points_per_s: float = 0.0
    sensor_hz: float = 10.0
    note: str = ""

    @property
    def headroom(self) -> float:
        """Decode rate ÷ sensor rate (points), or rotations when the sensor rate is unknown."""
        if self.sensor_points_per_s:
            return self.points_per_s / self.sensor_points_per_s
        return self.rotations_per_s / self.sensor_hz if self.sensor_hz else 0.0


def measure(decode: Callable[[], Iterable[int]], seconds: float) -> tuple[float, float]:
    """(rotations/s, points/s) over repeated ``decode()`` calls (each yields points per rotation),
    after one warm-up call, for at least ``seconds``."""
    list(decode())
    rotations = points = 0
    t0 = time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        counts = list(decode())
        rotations += len(counts)
        points += sum(counts)
    if rotations == 0:
        raise FusionStreamError("no rotation decoded")
    return rotations / elapsed, points / elapsed


def _case(
    source: str,
    sensor: str,
    sensor_points_per_s: float,
    needs: list[Path],
    decode: Callable[[], Iterable[int]],
    seconds: float,
) -> Row:
    """A measured row, or one saying why it was skipped (data or decoder missing)."""
    missing = [p for p in needs if not p.exists()]
    if missing:
        return Row(source, sensor, sensor_points_per_s=sensor_points_per_s, note=f"skipped: no {missing[0]}")
    try:
        rot, pts = measure(decode, seconds)
    except FusionStreamError as err:
        return Row(source, sensor, sensor_points_per_s=sensor_points_per_s, note=f"skipped: {err}")
    return Row(source, sensor, rot, pts, sensor_points_per_s)


# --------------------------------------------------------------------------- families


def velodyne_rows(seconds: float) -> list[Row]:
    """VLP-16 and HDL-32E pcaps: file playback, the live path, and the library alone."""
    from fusion_stream.sources.velodyne import PACKET_SIZE, VelodyneDecoder, VelodynePcap, pcap_datagrams

    folder = DATA / "velodyne_pcap"
    rows = []
    for name, sensor, rate in (("velodyne_example.pcap", "VLP-16", 300e3), ("hdl32_example.pcap", "HDL-32E", 700e3)):
        path = folder / name

        def playback(path: Path = path) -> list[int]:
            return [len(c) for c in VelodynePcap(path)]  # cheap to build; one per pass as a fresh file

        rows.append(_case(f"pcap {name}", sensor, rate, [path], playback, seconds))
        if not path.exists():
            continue
        try:
            packets = [(d.stamp_s, d.payload) for d in pcap_datagrams(path) if len(d.payload) == PACKET_SIZE]
        except FusionStreamError as err:
            rows.append(Row(f"live path ({sensor})", sensor, sensor_points_per_s=rate, note=f"skipped: {err}"))
            continue

        decoder = VelodyneDecoder()  # a live decoder lives as long as the node

        def live(packets: list[tuple[float, bytes]] = packets, decoder: VelodyneDecoder = decoder) -> list[int]:
            return [len(c) for stamp, payload in packets for c in decoder.feed(payload, stamp)]

        rows.append(_case(f"live path ({sensor} packets in memory)", sensor, rate, [path], live, seconds))

        def library(path: Path = path) -> list[int]:
            import velodyne_decoder  # type: ignore[import-untyped]

            return [len(r.points) for r in velodyne_decoder.read_pcap(str(path))]

        rows.append(_case(f"  library alone: read_pcap {name}", sensor, rate, [path], library, seconds))
    return rows


def ouster_rows(seconds: float) -> list[Row]:
    """OS-1-32 and OS-0-128 pcaps with their metadata: file playback and the live path."""
    from fusion_stream.sources.ouster import OusterDecoder, OusterPcap

    folder = DATA / "ouster_pcap"
    rows = []
    for name, sensor, rate in (
        ("OS-1-32-G_v2.1.1_1024x10", "OS-1-32 1024x10", 32 * 1024 * 10.0),
        ("OS-0-128-U1_v2.3.0_1024x10", "OS-0-128 1024x10", 128 * 1024 * 10.0),
    ):
        pcap, meta = folder / f"{name}.pcap", folder / f"{name}.json"
        label = f"pcap {name}.pcap"
        if not (pcap.exists() and meta.exists()):
            rows.append(_case(label, sensor, rate, [pcap, meta], list, seconds))  # says which is missing
            continue
        try:
            recording = OusterPcap(pcap, meta)  # built once and replayed, as the node loops it
            decoder = OusterDecoder(recording.info)  # a live decoder lives as long as the node
            from fusion_stream.sources.velodyne import pcap_datagrams  # dpkt comes with the velodyne extra

            packets = [(d.stamp_s, d.payload) for d in pcap_datagrams(pcap) if d.port == 7502]
        except FusionStreamError as err:
            rows.append(Row(label, sensor, sensor_points_per_s=rate, note=f"skipped: {err}"))
            continue

        def playback(recording: OusterPcap = recording) -> list[int]:
            return [len(c) for c in recording]

        def live(packets: list[tuple[float, bytes]] = packets, decoder: OusterDecoder = decoder) -> list[int]:
            decoder.restart()  # the recording is one frame: replayed as is, its frame id would repeat
            return [len(c) for stamp, payload in packets for c in decoder.feed(payload, stamp)]

        rows.append(_case(label, sensor, rate, [pcap, meta], playback, seconds))
        rows.append(_case(f"live path ({sensor} packets in memory)", sensor, rate, [pcap], live, seconds))
    return rows


def point_file_rows(seconds: float) -> list[Row]:
    """KITTI velodyne .bin sweeps and a nebula VLP-16 PCD (mixed field types)."""
    kitti = DATA / "kitti"
    pcd = DATA / "velodyne_rosbag2_nebula" / "vlp16" / "1673400472138016708.pcd"

    def bins() -> list[int]:
        files = kitti_sweeps(kitti)
        return [len(files.cloud(i, stamp_ns=0, frame_id="velodyne")) for i in range(len(files))]

    def pcds() -> list[int]:
        files = pcd_files(pcd)
        return [len(files.cloud(i, stamp_ns=0, frame_id="velodyne")) for i in range(len(files))]

    return [
        _case("kitti velodyne .bin (3 frames)", "HDL-64E (KITTI)", 1.3e6, [kitti], bins, seconds),
        _case("pcd (nebula VLP-16, dual return)", "VLP-16 dual return", 600e3, [pcd], pcds, seconds),
    ]


FAMILIES: dict[str, Callable[[float], list[Row]]] = {
    "lidar: velodyne": velodyne_rows,
    "lidar: ouster": ouster_rows,
    "lidar: point files": point_file_rows,
}
"""Source family → its rows; camera, audio and radar families add entries here."""


def table(rows_by_family: dict[str, list[Row]], cpu: str) -> Table:
    t = Table(
        "source",
        "sensor",
        "rotations/s",
        "points/s",
        "sensor points/s",
        "headroom",
        "note",
        title=f"decode rate on one core ({cpu})",
        box=None,
    )
    for family, rows in rows_by_family.items():
        t.add_row(f"[bold]{family}[/bold]")
        for r in rows:
            if r.note:
                t.add_row(r.source, r.sensor, "-", "-", f"{r.sensor_points_per_s / 1e3:,.0f}k", "-", r.note)
                continue
            colour = "green" if r.headroom >= 10 else "yellow" if r.headroom >= 1 else "red"
            t.add_row(
                r.source,
                r.sensor,
                f"{r.rotations_per_s:,.1f}",
                f"{r.points_per_s / 1e6:,.2f}M",
                f"{r.sensor_points_per_s / 1e3:,.0f}k",
                f"[{colour}]{r.headroom:,.1f}×[/{colour}]",
                "",
            )
    return t


def pin_to_one_cpu(cpu: int | None) -> str:
    """Run this process (every thread of it) on one CPU; which one, in words."""
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned: no sched_setaffinity here"
    allowed = sorted(os.sched_getaffinity(0))
    chosen = allowed[-1] if cpu is None else cpu
    os.sched_setaffinity(0, {chosen})
    return f"CPU {chosen} of {os.cpu_count()}, {platform.processor() or platform.machine()}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=1.5, help="time per row (default 1.5)")
    ap.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: the last allowed one)")
    ap.add_argument("--family", action="append", choices=sorted(FAMILIES), help="only these families")
    args = ap.parse_args(argv)
    cpu = pin_to_one_cpu(args.cpu)
    results = {}
    for family in args.family or list(FAMILIES):
        with console.status(f"{family} ..."):
            results[family] = FAMILIES[family](args.seconds)
    console.print(table(results, cpu))
    console.print(f"data: {DATA}; headroom = decode points/s ÷ sensor points/s (green ≥ 10×, red < 1×)")


if __name__ == "__main__":
    main()

"""A fleet evaluation's output folder: ``metrics.json`` and ``report.html`` for the fleet, each
bag's own report in a folder of its own, each bag's log under ``logs/``."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fusion_stream.eval.fleet_metrics import BagOutcome, scored_frames
from fusion_stream.eval.html import STYLE, _class_table, _fmt, _latency_table, curves_section, jsonable
from fusion_stream.model.decode import DEFAULT_THRESHOLD


def write_outcome(outcome: BagOutcome, out_dir: Path) -> None:
    """A bag's report files (sent back as bytes) under ``out_dir/<name>/``, its log in ``logs/``."""
    for rel, data in outcome.files.items():
        path = out_dir / outcome.name / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    logs = out_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    (logs / f"{outcome.name}.log").write_text(outcome.log or f"{outcome.path}: {outcome.error}\n")


def write_fleet_report(
    metrics: dict[str, Any], outcomes: Sequence[BagOutcome], out_dir: Path | str, classes: Sequence[str]
) -> tuple[Path, Path]:
    """``metrics.json`` and ``report.html`` of the fleet in ``out_dir`` (the bags' own reports,
    written by :func:`write_outcome`, are linked from it)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics_path = out / "metrics.json"
    metrics_path.write_text(json.dumps(jsonable(metrics), indent=2, sort_keys=True) + "\n")
    m = metrics
    sections = [
        f"<h1>fusion_stream fleet evaluation — {m['bags']} bags</h1>",
        f"<p>{m['evaluated']} evaluated, {len(m['failed'])} failed; {m['sets']} synced sets "
        f"({m['partial_sets']} partial) from {m['bag_duration_s']:.1f} s of bags, evaluated in "
        f"{_fmt(m.get('wall_s'), 1)} s {_where(m)} "
        f"({_fmt(m.get('speed_x_realtime'), 1)}× real time, {_fmt(m.get('frames_per_s'), 1)} sets/s).</p>",
    ]
    if "nuscenes" in m:
        nus = m["nuscenes"]
        sections.append(
            f"<p class=big>mAP {_fmt(nus['mAP'])} · NDS {_fmt(nus['NDS'])} · "
            f"KITTI BEV mAP|R40 {_fmt(m['kitti_bev']['mAP'])} · 3D {_fmt(m['kitti_3d']['mAP'])} · "
            f"siren accuracy {_fmt(m['siren']['accuracy'])} — over every frame of every bag</p>"
        )
        sections.append("<h2>Per class</h2>" + _class_table(m))
        sections.append(curves_section(scored_frames(outcomes), classes))
    else:
        sections.append(f"<p class=warn>{html.escape(m.get('ground_truth', 'no ground truth'))}</p>")
    if m["failed"]:
        rows = "".join(
            f"<tr><td>{html.escape(f['bag'])}</td><td>{html.escape(f['reason'])}</td>"
            f'<td><a href="logs/{html.escape(f["name"])}.log">log</a></td></tr>'
            for f in m["failed"]
        )
        sections.append(
            f"<h2 class=warn>Failed bags ({len(m['failed'])})</h2>"
            f"<table><tr><th>bag</th><th>reason</th><th></th></tr>{rows}</table>"
        )
    sections.append("<h2>Bags</h2>" + _bag_table(m["per_bag"]))
    sections.append("<h2>Latency (all sets)</h2>" + _latency_table(m["latency_ms"]))
    if m["worst_frames"]:
        items = []
        for w in m["worst_frames"]:
            pics = "".join(f'<img src="{html.escape(p)}" alt="{html.escape(p)}">' for p in w["pictures"])
            items.append(
                f"<h3>{html.escape(w['name'])}, set {w['set']} ({w['offset_s']:.1f} s in): {w['misses']} missed, "
                f"{w['false_alarms']} false alarms</h3><div class=row>{pics}</div>"
            )
        sections.append(
            "<h2>Worst frames</h2><p>Most missed objects plus false alarms (detections with score ≥ "
            f"{DEFAULT_THRESHOLD}, matched within 2 m); detections in class colours, ground truth grey.</p>"
            + "".join(items)
        )
    page = (
        "<!doctype html><html><head><meta charset=utf-8><title>fusion_stream fleet eval</title>"
        f"<style>{STYLE}</style></head><body>{''.join(sections)}</body></html>\n"
    )
    report_path = out / "report.html"
    report_path.write_text(page)
    return metrics_path, report_path


def _bag_table(rows: Sequence[dict[str, Any]]) -> str:
    head = (
        "<tr><th>bag</th><th>sets</th><th>partial</th><th>with GT</th><th>mAP</th><th>NDS</th>"
        "<th>latency p50 ms</th><th>p99 ms</th><th>bag s</th><th>wall s</th><th>worker</th></tr>"
    )
    body = []
    for r in rows:
        name = html.escape(r["name"])
        if not r["ok"]:
            body.append(
                f'<tr><td><a href="logs/{name}.log">{name}</a></td>'
                f"<td colspan=10 class=warn>failed: {html.escape(r['error'])}</td></tr>"
            )
            continue
        body.append(
            f'<tr><td><a href="{name}/report.html" title="{html.escape(r["bag"])}">{name}</a></td>'
            f"<td>{r['sets']}</td><td>{r['partial_sets']}</td><td>{r['frames_with_ground_truth']}</td>"
            f"<td>{_fmt(r['mAP'])}</td><td>{_fmt(r['NDS'])}</td><td>{_fmt(r['latency_p50_ms'], 1)}</td>"
            f"<td>{_fmt(r['latency_p99_ms'], 1)}</td><td>{_fmt(r['bag_duration_s'], 1)}</td>"
            f"<td>{_fmt(r['wall_s'], 1)}</td><td>{html.escape(r['worker'])}</td></tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"


def _where(m: dict[str, Any]) -> str:
    ray = m.get("ray")
    if not ray:
        return "in one process"
    return f"on {m.get('workers')} Ray workers ({html.escape(str(ray.get('address')))})"

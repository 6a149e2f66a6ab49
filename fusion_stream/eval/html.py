"""``metrics.json`` and a self-contained HTML report for a bag evaluation.

Precision–recall curves are inline SVG (no plotting dependency, opens anywhere); rendered frames
are PNG files beside the report: the camera with detections projected, and a bird's-eye view
with LiDAR points, radar returns, detections and the ground truth in grey.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fusion_stream.core import calib
from fusion_stream.core.render import CLASS_COLORS
from fusion_stream.eval import kitti
from fusion_stream.eval.bag_eval import BagEvaluation
from fusion_stream.eval.metrics import TP_THRESHOLD, FrameResult, match_class, precision_recall
from fusion_stream.eval.report import render_frame
from fusion_stream.model.config import MODALITIES
from fusion_stream.model.decode import DEFAULT_THRESHOLD

STYLE = (
    "body{font-family:system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f0f0f0}"
    "td:first-child{text-align:left}.row{display:flex;flex-wrap:wrap;gap:12px}"
    ".row img{max-width:48%;border:1px solid #ccc}"
    ".big{font-size:1.2em;font-weight:600}.warn{color:#a40}"
)
"""The reports' stylesheet (a bag's and a fleet's)."""


def jsonable(value: Any) -> Any:
    """NaN and infinities become null: strict JSON readers (browsers, jq) reject them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return jsonable(value.item())
    return value


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _svg_curves(title: str, curves: Sequence[tuple[str, np.ndarray, np.ndarray]], size: int = 260) -> str:
    pad = 34
    w = h = size
    inner = size - pad - 10

    def px(r: float, p: float) -> tuple[float, float]:
        return pad + r * inner, 10 + (1 - p) * inner

    parts = [
        f'<svg width="{w}" height="{h + 18}" viewBox="0 0 {w} {h + 18}" role="img" aria-label="{html.escape(title)}">'
    ]
    parts.append(f'<rect x="{pad}" y="10" width="{inner}" height="{inner}" fill="#fafafa" stroke="#999"/>')
    for t in (0.25, 0.5, 0.75):
        x, _ = px(t, 0)
        _, y = px(0, t)
        parts.append(f'<line x1="{x}" y1="10" x2="{x}" y2="{10 + inner}" stroke="#e4e4e4"/>')
        parts.append(f'<line x1="{pad}" y1="{y}" x2="{pad + inner}" y2="{y}" stroke="#e4e4e4"/>')
    parts.append(f'<text x="{pad + inner / 2}" y="{h + 2}" font-size="11" text-anchor="middle">recall</text>')
    parts.append(
        f'<text x="10" y="{10 + inner / 2}" font-size="11" transform="rotate(-90 10 {10 + inner / 2})" '
        'text-anchor="middle">precision</text>'
    )
    for i, (label, precision, recall) in enumerate(curves):
        if not len(precision):
            continue
        color = CLASS_COLORS.get(label, (80, 80, 80))
        pts = " ".join(
            f"{x:.1f},{y:.1f}" for x, y in (px(float(r), float(p)) for r, p in zip(recall, precision, strict=True))
        )
        parts.append(f'<polyline fill="none" stroke="rgb{color}" stroke-width="1.6" points="{pts}"/>')
        parts.append(
            f'<text x="{pad + inner - 4}" y="{24 + 13 * i}" font-size="11" text-anchor="end" '
            f'fill="rgb{color}">{html.escape(label)}</text>'
        )
    parts.append(f'<text x="{pad}" y="{h + 16}" font-size="11">{html.escape(title)}</text></svg>')
    return "".join(parts)


def _class_table(metrics: dict[str, Any]) -> str:
    nus = metrics["nuscenes"]["per_class"]
    bev = metrics["kitti_bev"]["per_class"]
    d3 = metrics["kitti_3d"]["per_class"]
    columns = (
        "class",
        "GT",
        "AP (nuScenes)",
        "AP@0.5/1/2/4 m",
        "ATE",
        "ASE",
        "AOE",
        "AVE",
        "BEV AP|R40",
        "3D AP|R40",
        "IoU",
    )
    head = "<tr>" + "".join(f"<th>{c}</th>" for c in columns) + "</tr>"
    rows = []
    for cls, r in nus.items():
        aps = " / ".join(_fmt(r.get(f"ap@{t}"), 2) for t in ("0.5", "1", "2", "4"))
        rows.append(
            f"<tr><td>{html.escape(cls)}</td><td>{r.get('gt', 0)}</td><td>{_fmt(r['ap'])}</td><td>{aps}</td>"
            + "".join(f"<td>{_fmt(r.get(k))}</td>" for k in ("ate", "ase", "aoe", "ave"))
            + f"<td>{_fmt(bev[cls]['ap'])}</td><td>{_fmt(d3[cls]['ap'])}</td><td>{bev[cls]['iou_threshold']}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def curves_section(scored: Sequence[FrameResult], classes: Sequence[str]) -> str:
    """Precision–recall curves per class: nuScenes centre distance and KITTI BEV IoU."""
    nus_curves = []
    bev_curves = []
    for cls in classes:
        matches, n_gt = match_class(scored, cls, TP_THRESHOLD)
        if n_gt:
            p, r = precision_recall(matches, n_gt)
            nus_curves.append((cls, p, r))
            bp, br = kitti.precision_recall_curve(scored, cls, "bev")
            bev_curves.append((cls, bp, br))
    return (
        "<h2>Precision–recall</h2><div class=row>"
        + _svg_curves(f"centre distance ≤ {TP_THRESHOLD:g} m", nus_curves)
        + _svg_curves("BEV IoU (KITTI thresholds)", bev_curves)
        + "</div>"
    )


def _latency_table(latency: dict[str, dict[str, float]]) -> str:
    rows = "".join(
        f"<tr><td>{stage}</td>"
        + "".join(f"<td>{_fmt(v.get(q), 2)}</td>" for q in ("p50", "p90", "p99", "max"))
        + "</tr>"
        for stage, v in latency.items()
    )
    return f"<table><tr><th>stage (ms)</th><th>p50</th><th>p90</th><th>p99</th><th>max</th></tr>{rows}</table>"


def _render_frames(
    result: BagEvaluation, rig: calib.Rig, inputs: dict[str, str], out_dir: Path, count: int
) -> list[str]:
    if not result.frames or count <= 0:
        return []
    picks = sorted({round(i) for i in np.linspace(0, len(result.frames) - 1, min(count, len(result.frames)))})
    return [name for i in picks for name in render_set(result, i, rig, inputs, out_dir)]


def render_set(
    result: BagEvaluation, i: int, rig: calib.Rig, inputs: dict[str, str], out_dir: Path, folder: str = "frames"
) -> list[str]:
    """Draw synced set ``i`` of ``result`` under ``out_dir/folder``; the pictures' names relative
    to ``out_dir``."""
    rec = result.frames[i]
    members = {m: rec.frame.members[inputs.get(m, m)] for m in MODALITIES if rec.frame.members.get(inputs.get(m, m))}
    shown = [d for d in rec.detections if d.score >= DEFAULT_THRESHOLD]
    stem = out_dir / folder / f"set_{i:05d}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    render_frame(stem, members, rig, rec.gt or (), shown)
    return [
        f"{folder}/{stem.name}{suffix}"
        for suffix in ("_camera.png", "_bev.png")
        if stem.with_name(stem.name + suffix).exists()
    ]


def write_report(
    result: BagEvaluation,
    out_dir: Path | str,
    *,
    rig: calib.Rig,
    classes: Sequence[str],
    inputs: dict[str, str] | None = None,
    frames: int = 3,
) -> tuple[Path, Path]:
    """Write ``metrics.json`` and ``report.html`` (with rendered frames) to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics_path = out / "metrics.json"
    metrics_path.write_text(json.dumps(jsonable(result.metrics), indent=2, sort_keys=True) + "\n")
    m = result.metrics
    sections = [
        f"<h1>fusion_stream evaluation — {html.escape(result.path.name)}</h1>",
        f"<p>{m['sets']} synced sets ({m['partial_sets']} partial) from {m['bag_duration_s']:.1f} s of bag, "
        f"backend {html.escape(m['backend'])}, evaluated in {m['wall_s']:.1f} s "
        f"({_fmt(m['speed_x_realtime'], 1)}× real time).</p>",
    ]
    if m.get("model_warning"):
        sections.append(f"<p><b>Warning:</b> {html.escape(m['model_warning'])}</p>")
    if "nuscenes" in m:
        nus = m["nuscenes"]
        sections.append(
            f"<p class=big>mAP {_fmt(nus['mAP'])} · NDS {_fmt(nus['NDS'])} · "
            f"KITTI BEV mAP|R40 {_fmt(m['kitti_bev']['mAP'])}"
            f" · 3D {_fmt(m['kitti_3d']['mAP'])} · siren accuracy {_fmt(m['siren']['accuracy'])}</p>"
        )
        sections.append("<h2>Per class</h2>" + _class_table(m))
        scored = [FrameResult(f.gt, f.detections) for f in result.frames if f.gt is not None]
        sections.append(curves_section(scored, classes))
    else:
        sections.append(f"<p class=warn>{html.escape(m.get('ground_truth', 'no ground truth'))}</p>")
    sections.append("<h2>Latency</h2>" + _latency_table(m["latency_ms"]))
    images = _render_frames(result, rig, inputs or {}, out, frames)
    if images:
        sections.append(
            "<h2>Frames</h2><p>Detections in class colours (score ≥ "
            f"{DEFAULT_THRESHOLD}); ground truth grey.</p><div class=row>"
            + "".join(f'<img src="{html.escape(n)}" alt="{html.escape(n)}">' for n in images)
            + "</div>"
        )
    if m.get("skipped_types") or m.get("failed_messages"):
        sections.append(
            "<h2>Not used</h2><pre>"
            + html.escape(json.dumps({"skipped": m.get("skipped_types"), "failed": m.get("failed_messages")}, indent=1))
            + "</pre>"
        )
    page = (
        "<!doctype html><html><head><meta charset=utf-8><title>fusion_stream eval</title>"
        f"<style>{STYLE}</style></head><body>{''.join(sections)}</body></html>\n"
    )
    report_path = out / "report.html"
    report_path.write_text(page)
    return metrics_path, report_path

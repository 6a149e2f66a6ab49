"""`fusion-stream train`, `eval-sim` and `export-onnx` as a user runs them, on a tiny dataset."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from fusion_stream.model.train import load_weights

from .conftest import cli_here


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fusion_stream.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "FUSION_STREAM_CACHE": str(tmp_path / "cache"), "COLUMNS": "160"}


def test_train_then_evaluate_then_export(tmp_path: Path, env: dict[str, str]) -> None:
    weights = tmp_path / "w.pt"
    r = cli(
        "train",
        "--seeds",
        "1",
        "--per-seed",
        "3",
        "--epochs",
        "2",
        "--batch-size",
        "3",
        "--val-seeds",
        "1",
        "--modalities",
        "lidar,radar",
        "-o",
        str(weights),
        env=env,
    )
    assert r.returncode == 0, r.stderr[-2000:] + r.stdout[-2000:]
    assert "epoch 2:" in r.stdout and f"wrote {weights}" in r.stdout
    net, record = load_weights(weights)
    assert net.cfg.modalities == ("lidar", "radar")
    assert [e["epoch"] for e in record["history"]] == [1, 2] and "val_total" in record["history"][-1]
    # the rendered samples are cached: a second run renders nothing
    assert len(list((tmp_path / "cache" / "sim").glob("*/*.npz"))) == 3 + 8

    out = tmp_path / "metrics.json"
    r = cli("eval-sim", "--weights", str(weights), "--seeds", "1", "--per-seed", "2", "-o", str(out), env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads(out.read_text())
    assert metrics["frames"] == 2 and 0.0 <= metrics["mAP"] <= 1.0 and "NDS" in metrics
    assert set(metrics["per_class"]) == {"car", "truck", "pedestrian", "cyclist"}
    assert 0.0 <= metrics["camera_view"]["mAP"] <= 1.0 or math.isnan(metrics["camera_view"]["mAP"])

    onnx_path = tmp_path / "m.onnx"
    r = cli("export-onnx", "--weights", str(weights), "-o", str(onnx_path), env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    onnx.checker.check_model(onnx.load(str(onnx_path)))


def test_bad_arguments_say_what_is_wrong(tmp_path: Path, env: dict[str, str]) -> None:
    r = cli_here("train", "--modalities", "lidar,sonar", "-o", str(tmp_path / "w.pt"), env=env)
    assert r.returncode == 2 and "sonar" in r.stderr
    for size in ("385x640", "big"):
        r = cli_here("train", "--image-size", size, "-o", str(tmp_path / "w.pt"), env=env)
        assert r.returncode == 2 and "--image-size" in r.stderr and not (tmp_path / "w.pt").exists()
    r = cli_here("eval-sim", "--weights", str(tmp_path / "missing.pt"), "--seeds", "1", "--per-seed", "1", env=env)
    assert r.returncode != 0 and "missing.pt" in r.stderr
    r = cli_here("export-onnx", "--weights", str(tmp_path / "missing.pt"), env=env)
    assert r.returncode != 0 and "missing.pt" in r.stderr
    r = cli_here("build-engine", str(tmp_path / "m.onnx"), env=env)
    assert r.returncode != 0 and ("tensorrt" in r.stderr.lower() or "TensorRT" in r.stderr)


KITTI = Path(__file__).resolve().parents[2] / "shared" / "data" / "kitti"


@pytest.mark.skipif(not KITTI.exists(), reason="../shared/data/kitti not present")
def test_train_on_a_kitti_folder(tmp_path: Path, env: dict[str, str]) -> None:
    weights = tmp_path / "kitti.pt"
    r = cli("train", "--kitti", str(KITTI), "--epochs", "1", "--batch-size", "3", "-o", str(weights), env=env)
    assert r.returncode == 0, r.stderr[-2000:] + r.stdout[-2000:]
    assert "3 frames" in r.stdout
    net, _ = load_weights(weights)
    assert net.cfg.modalities == ("lidar", "camera")  # KITTI has neither radar nor audio

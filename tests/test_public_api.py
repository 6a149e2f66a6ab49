"""The public surface, pinned: what ``fusion_stream`` and each subpackage export in ``__all__``.

Adding or removing a public name is a deliberate change of this list (and a CHANGELOG.md entry),
never a side effect; every exported name resolves and says in a docstring what it is for; and
importing any package stays light (heavy names load on first use)."""

from __future__ import annotations

import ast
import importlib
import inspect
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

EXPORTS: dict[str, list[str]] = {
    "fusion_stream": [
        "AudioChunk",
        "Box3D",
        "ClockTick",
        "CompressedImage",
        "Detections",
        "Diagnostics",
        "FusionStreamError",
        "Image",
        "Level",
        "Message",
        "MessageError",
        "ParamError",
        "PointCloud",
        "Publisher",
        "RadarScan",
        "Registry",
        "Subscriber",
        "SyncedFrame",
        "TopicNameError",
        "TopicNotFoundError",
        "TransportError",
        "WireError",
        "__version__",
    ],
    "fusion_stream.core": [
        "AudioChunk",
        "Box3D",
        "ClockTick",
        "CompressedImage",
        "Detections",
        "Diagnostics",
        "Envelope",
        "Image",
        "Intrinsics",
        "KittiFolder",
        "Level",
        "Message",
        "PointCloud",
        "RadarScan",
        "Rig",
        "Sensor",
        "SensorMessage",
        "SyncedFrame",
        "Transform",
        "WIRE_VERSION",
        "box_corners",
        "check_topic",
        "quaternion_to_yaw",
        "read_pcd",
        "write_pcd",
        "write_wav",
        "yaw_to_quaternion",
    ],
    "fusion_stream.runtime": [
        "Clock",
        "CurveKeys",
        "DIAGNOSTICS_TOPIC",
        "Node",
        "NodeHarness",
        "NodeTopics",
        "NodeType",
        "Publisher",
        "PublisherStats",
        "Registry",
        "ReplayClock",
        "Subscriber",
        "SubscriberStats",
        "TopicClock",
        "TopicEntry",
        "WallClock",
        "run_node",
    ],
    "fusion_stream.graph": [
        "LaunchFile",
        "NodeSpec",
        "Supervisor",
    ],
    "fusion_stream.cli": [
        "main",
    ],
    "fusion_stream.sync": [
        "ApproximateTimePolicy",
        "EmbeddedParams",
        "Emitted",
        "InputConfig",
        "InputParams",
        "InputStats",
        "NewestSet",
        "ReferenceWindowPolicy",
        "SyncConfig",
        "SyncInput",
        "SyncReport",
        "SyncStage",
        "SyncedSet",
        "config_from",
    ],
    "fusion_stream.sim": [
        "Actor",
        "ActorState",
        "CameraModel",
        "LidarSpec",
        "RadarSpec",
        "Scenario",
        "SimParams",
        "World",
        "ground_truth",
        "record_sim",
        "write_snapshot",
    ],
    "fusion_stream.sources": [
        "ImageFolder",
        "LiveCamera",
        "LiveLidar",
        "Microphone",
        "OusterDecoder",
        "OusterPcap",
        "RadarRecording",
        "VelodyneDecoder",
        "VelodynePcap",
        "VideoFile",
        "WavFile",
        "kitti_sweeps",
        "pcd_files",
        "publish_recording",
        "sample_messages",
    ],
    "fusion_stream.model": [
        "DEFAULT_WEIGHTS",
        "FusionNet",
        "ModelConfig",
        "TrainConfig",
        "WeightsError",
        "load_weights",
        "save_weights",
        "to_boxes",
    ],
    "fusion_stream.infer": [
        "Backend",
        "Detector",
        "FusionPipeline",
        "OnnxRuntimeBackend",
        "PipelineReport",
        "StageTimes",
        "TensorRTBackend",
        "TorchBackend",
        "build_engine",
        "export_onnx",
    ],
    "fusion_stream.bag": [
        "Bag",
        "BagInfo",
        "BagLimitError",
        "BagTruncatedError",
        "BagWriter",
        "Recorder",
        "ReplayOptions",
        "Replayer",
        "TopicMap",
        "convert_bag",
        "load_map",
        "open_bag",
    ],
    "fusion_stream.eval": [
        "BagEvaluation",
        "EvalSetup",
        "FrameResult",
        "average_precision",
        "detection_metrics",
        "evaluate_bag",
        "evaluate_split",
        "kitti_metrics",
        "setup_from_launch",
        "write_report",
    ],
    "fusion_stream.viewer": [
        "FoxgloveBridge",
        "GraphWatcher",
        "TopicTap",
        "serve",
        "write_pngs",
    ],
}
HEAVY = ("torch", "onnxruntime", "tensorrt", "open3d", "numba", "rosbags", "mcap", "cv2", "foxglove")
"""What no package's ``__init__`` may import: each is loaded by the submodule that needs it."""


def _data_docstrings(package: str) -> set[str]:
    """Names assigned at a module's top level under ``package`` that are followed by a docstring."""
    top = Path(importlib.import_module(package).__file__ or "").parent
    files = top.rglob("*.py") if package == "fusion_stream" else top.glob("*.py")
    documented: set[str] = set()
    for path in files:
        body = ast.parse(path.read_text()).body
        for stmt, nxt in itertools.pairwise(body):
            documented_next = (
                isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)
            )
            if not documented_next:
                continue
            targets = (
                stmt.targets
                if isinstance(stmt, ast.Assign)
                else [stmt.target]
                if isinstance(stmt, ast.AnnAssign)
                else []
            )
            documented.update(t.id for t in targets if isinstance(t, ast.Name))
    return documented


@pytest.mark.parametrize("package", sorted(EXPORTS))
def test_exported_names_are_pinned(package: str) -> None:
    exported = importlib.import_module(package).__all__
    assert len(set(exported)) == len(exported), f"{package}.__all__ names something twice"
    assert sorted(exported) == EXPORTS[package], (
        f"the public surface of {package} changed; if on purpose, update EXPORTS in this test and CHANGELOG.md"
    )


@pytest.mark.parametrize("package", sorted(EXPORTS))
def test_every_exported_name_resolves_and_has_a_docstring(package: str) -> None:
    module = importlib.import_module(package)
    assert set(module.__all__) <= set(dir(module)), f"{package}: dir() misses lazy names"
    data_docs = _data_docstrings(package)
    undocumented = []
    for name in module.__all__:
        value = getattr(module, name)  # a lazy name imports its module here
        if name.startswith("__"):
            continue
        if inspect.isclass(value) or inspect.isfunction(value):
            doc = value.__doc__ or ""
            if not doc.strip() or doc.startswith(f"{value.__name__}("):  # a dataclass's generated signature
                undocumented.append(name)
        elif name not in data_docs:
            undocumented.append(name)
    assert undocumented == [], f"{package}: exported without a docstring: {undocumented}"


def test_importing_every_package_loads_nothing_heavy() -> None:
    code = (
        "import importlib, json, sys\n"
        f"for p in {sorted(EXPORTS)!r}: importlib.import_module(p)\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & set(heavy))))"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(run.stdout) == []


def test_a_lazy_name_loads_its_module_on_first_use_only() -> None:
    code = (
        "import json, sys\n"
        "import fusion_stream.model as m\n"
        "before = 'torch' in sys.modules\n"
        "cfg = m.ModelConfig()\n"
        "after_config = 'torch' in sys.modules\n"
        "net = m.FusionNet\n"
        "print(json.dumps([before, after_config, 'torch' in sys.modules, net.__module__]))"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(run.stdout) == [False, False, True, "fusion_stream.model.net"]


def test_a_submodule_is_still_importable_by_name_through_a_lazy_package() -> None:
    from fusion_stream.sim import lidar
    from fusion_stream.sources import testpattern

    assert lidar.__name__ == "fusion_stream.sim.lidar"
    assert testpattern.__name__ == "fusion_stream.sources.testpattern"
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        _ = importlib.import_module("fusion_stream.infer").not_a_name

"""`fusion-stream train | export-onnx | build-engine | eval-sim`: the fusion network's commands.

Kept apart from cli/main.py so the other commands never import torch."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from fusion_stream.cli.common import progress_bar
from fusion_stream.core import resources
from fusion_stream.errors import UsageError
from fusion_stream.infer.artifacts import PRECISIONS


def _render(progress: Progress, ds: Any, name: str, workers: int) -> None:
    todo = len(ds.missing())
    if todo:
        task = progress.add_task(f"rendering {name} samples", total=todo, info=str(ds.dir))
        for n in ds.ensure(workers):
            progress.advance(task, n)


def _modalities(text: str) -> tuple[str, ...]:
    from fusion_stream.model.config import MODALITIES

    chosen = tuple(m.strip() for m in text.split(",") if m.strip())
    bad = [m for m in chosen if m not in MODALITIES]
    if bad or not chosen:
        raise UsageError(f"--modalities: unknown {bad or 'empty'}; choose from {','.join(MODALITIES)}")
    return chosen


def _image_size(text: str) -> tuple[int, int]:
    """``HxW`` (pixels the camera image is resized to) → (height, width)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--image-size {text!r}: expected HEIGHTxWIDTH, e.g. 384x640") from None
    if h <= 0 or w <= 0 or h % 16 or w % 16:
        raise UsageError(f"--image-size {text}: height and width must be positive multiples of 16")
    return h, w


def cmd_train(args: argparse.Namespace, console: Console) -> int:
    from fusion_stream.model import splits
    from fusion_stream.model.config import ModelConfig
    from fusion_stream.model.train import TrainConfig, train

    modalities = _modalities(args.modalities)
    train_ds: Any
    val_ds: Any
    if args.kitti:
        from fusion_stream.model.train import KittiSource

        modalities = tuple(m for m in modalities if m in ("lidar", "camera"))  # KITTI has no radar or audio
        train_ds, val_ds = KittiSource(Path(args.kitti)), None
    else:
        train_ds = splits.dataset("train", args.calib, per_seed=args.per_seed, seeds=args.seeds)
        val_ds = splits.dataset("val", args.calib, seeds=args.val_seeds) if args.val_seeds else None
    cfg = ModelConfig(width=args.width, modalities=modalities, image_size=_image_size(args.image_size))
    tc = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        drop_modality=args.drop_modality, drop_lidar=args.drop_lidar,
    )  # fmt: skip
    with progress_bar(console) as progress:
        if not args.kitti:
            _render(progress, train_ds, "training", args.workers)
        if val_ds is not None:
            _render(progress, val_ds, "validation", args.workers)
        task = progress.add_task("training", total=None, info="")

        def on_step(step: int, total: int, losses: dict[str, float]) -> None:
            progress.update(task, completed=step, total=total, info=f"loss {losses['total']:.3f}")
            if not console.is_terminal and step % 50 == 0:  # a log file gets a line now and then
                console.print(f"step {step}/{total}: loss {losses['total']:.3f}")

        def on_epoch(epoch: int, record: dict[str, float]) -> None:
            shown = ", ".join(f"{k} {v:.3f}" for k, v in record.items() if k != "epoch")
            progress.console.print(f"epoch {epoch}: {shown}")

        history = train(
            cfg,
            tc,
            train_ds,
            val_ds,
            Path(args.out),
            on_step=on_step,
            on_epoch=on_epoch,
            initial=Path(args.init) if args.init else None,
        )
    console.print(f"wrote {args.out} ({len(train_ds)} frames, {tc.epochs} epochs, {history.seconds / 60:.1f} min)")
    return 0


def cmd_eval_sim(args: argparse.Namespace, console: Console) -> int:
    from fusion_stream.eval.report import evaluate_split
    from fusion_stream.infer.open import locate

    with progress_bar(console) as progress:
        from fusion_stream.model import splits

        ds = splits.dataset(args.split, args.calib, seeds=args.seeds, per_seed=args.per_seed)
        _render(progress, ds, args.split, args.workers)
        task = progress.add_task(f"evaluating on {args.split}", total=len(ds), info="")
        result = evaluate_split(
            locate(args.model),
            ds,
            backend=args.backend,
            drop=tuple(args.drop or ()),
            on_frame=lambda: progress.advance(task),
            render_dir=args.render,
            precision=args.precision,
        )
    table = Table("class", "AP", "ATE m", "ASE", "AOE rad", "AVE m/s", "AAE", box=None)
    for cls, row in result["per_class"].items():
        table.add_row(
            cls, *(f"{row[k]:.3f}" if row[k] == row[k] else "-" for k in ("ap", "ate", "ase", "aoe", "ave", "aae"))
        )
    console.print(table)
    console.print(
        f"mAP {result['mAP']:.3f}  NDS {result['NDS']:.3f}  siren accuracy {result['siren_accuracy']:.3f} "
        f"(over {result['siren_matches']} detected cars/trucks where a siren sounds)  frames {result['frames']}"
    )
    if "model_warning" in result:
        console.print(f"warning: {result['model_warning']}")
    if "camera_view" in result:
        console.print(f"in the camera's field of view: mAP {result['camera_view']['mAP']:.3f}")
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=1))
        console.print(f"wrote {args.output}")
    if args.render:
        console.print(f"pictures in {args.render}/")
    return 0


def cmd_export_onnx(args: argparse.Namespace, console: Console) -> int:
    from fusion_stream.infer.export import export_onnx

    path = export_onnx(resources.resolve(args.weights), args.output, opset=args.opset)
    console.print(f"wrote {path}")
    return 0


def cmd_build_engine(args: argparse.Namespace, console: Console) -> int:
    from fusion_stream.infer.tensorrt_backend import build_engine

    path, built = build_engine(args.onnx, cache_dir=args.cache_dir, precision=args.precision)
    console.print(f"{'built' if built else 'cached engine is current'}: {path}")
    return 0


def add_parsers(sub: Any) -> None:
    from fusion_stream.model.config import DEFAULT_WEIGHTS

    p = sub.add_parser("train", help="train the fusion network on simulated data (cached) and save weights")
    p.add_argument("-o", "--out", default=str(DEFAULT_WEIGHTS), help="weights file to write")
    p.add_argument("--epochs", type=int, default=4, help="passes over the training set (default 4)")
    p.add_argument("--batch-size", type=int, default=8, help="samples per step (default 8)")
    p.add_argument("--lr", type=float, default=2e-3, help="learning rate (default 2e-3)")
    p.add_argument("--seed", type=int, default=0, help="random seed of initialisation and sampling")
    p.add_argument("--drop-modality", type=float, default=0.15, help="chance of dropping camera/radar/audio per sample")
    p.add_argument(
        "--drop-lidar", type=float, default=None, help="chance of dropping the LiDAR (default: half the above)"
    )
    p.add_argument("--width", type=int, default=32, help="backbone channels")
    p.add_argument(
        "--image-size", default="192x320", metavar="HxW", help="camera image size the network sees (multiples of 16)"
    )
    p.add_argument("--modalities", default="lidar,camera,radar,audio", help="e.g. lidar for a LiDAR-only model")
    p.add_argument("--seeds", type=int, default=None, help="use only the first N training scenarios")
    p.add_argument("--per-seed", type=int, default=8, help="samples per scenario")
    p.add_argument("--val-seeds", type=int, default=5, help="held-out scenarios for validation loss (0: none)")
    p.add_argument("--workers", type=int, default=2, help="processes rendering samples")
    p.add_argument("--calib", default="calib/sim_rig.yaml", help="rig to render samples with (default: %(default)s)")
    p.add_argument("--init", default=None, metavar="WEIGHTS", help="start from these weights")
    p.add_argument(
        "--kitti", default=None, metavar="DIR", help="train on a KITTI object folder (LiDAR + camera) instead"
    )
    p.set_defaults(model_cmd=cmd_train)

    p = sub.add_parser("eval-sim", help="score a model on held-out simulated scenarios (nuScenes-style mAP/NDS)")
    p.add_argument(
        "--model",
        "--weights",
        dest="model",
        default=str(DEFAULT_WEIGHTS),
        help="weights (.pt), a model card (.yaml) or a built-in name (fusion_sim, lidar_only, cluster) "
        "(default: %(default)s)",
    )
    p.add_argument("--split", default="val", help="val, fog, rain, clear or night (held-out scenarios)")
    p.add_argument("--seeds", type=int, default=None, help="only the first N held-out scenarios")
    p.add_argument("--per-seed", type=int, default=8, help="samples per scenario")
    p.add_argument(
        "--backend", default=None, help="auto, tensorrt, onnxruntime or torch (default: torch; a card: onnxruntime)"
    )
    p.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS,
        help="fp32, or int8: the network quantized for ONNX Runtime on CPU (default: %(default)s)",
    )
    p.add_argument("--drop", nargs="*", metavar="MODALITY", help="run without these modalities, e.g. radar")
    p.add_argument("--workers", type=int, default=2, help="processes rendering samples (default 2)")
    p.add_argument("--calib", default="calib/sim_rig.yaml", help="rig to render samples with (default: %(default)s)")
    p.add_argument("-o", "--output", default=None, help="write the metrics as JSON")
    p.add_argument("--render", default=None, metavar="DIR", help="draw a few frames with their detections here")
    p.set_defaults(model_cmd=cmd_eval_sim)

    p = sub.add_parser("export-onnx", help="export the fusion network to ONNX (static shapes, decode included)")
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="weights to export (default: %(default)s)")
    p.add_argument("-o", "--output", default="fusion.onnx", help="the ONNX file to write (default: %(default)s)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.set_defaults(model_cmd=cmd_export_onnx)

    p = sub.add_parser("build-engine", help="build (or reuse) a TensorRT engine from an ONNX file")
    p.add_argument("onnx", help="the ONNX file (from `fusion-stream export-onnx`)")
    p.add_argument("--cache-dir", default=None, help="engine cache (default ~/.cache/fusion_stream/engines)")
    p.add_argument("--precision", default="fp16", choices=["fp16", "fp32"], help="engine precision (default fp16)")
    p.set_defaults(model_cmd=cmd_build_engine)

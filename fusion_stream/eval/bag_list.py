"""Which bags a fleet evaluation reads: files, directories searched for bags, and glob patterns.

A bag is our MCAP file (``*.mcap``), a ROS 1 ``*.bag`` or a ROS 2 bag folder (a directory with
``metadata.yaml``, taken whole). Whether a file really is one is checked when it is read, so a
damaged bag is a failed bag in the report rather than a reason to evaluate none."""

from __future__ import annotations

import glob
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from fusion_stream.errors import UsageError

BAG_SUFFIXES = (".mcap", ".bag")
_GLOB_CHARS = frozenset("*?[")


def is_ros2_bag(path: Path) -> bool:
    return path.is_dir() and (path / "metadata.yaml").is_file()


def _bags_under(folder: Path) -> list[Path]:
    """Bags in ``folder`` and below, in path order; a ROS 2 bag folder is not searched inside."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        kept = []
        for d in sorted(dirs):
            if is_ros2_bag(here / d):
                found.append(here / d)
            elif not d.startswith("."):
                kept.append(d)
        dirs[:] = kept
        found.extend(here / f for f in files if f.endswith(BAG_SUFFIXES))
    return sorted(found)


def _expand_one(spec: str) -> list[Path]:
    if _GLOB_CHARS & set(spec):
        matches = sorted(glob.glob(spec, recursive=True))
        if not matches:
            raise UsageError(f"{spec}: no file or folder matches this pattern")
        out: list[Path] = []
        for m in matches:
            path = Path(m)
            if path.is_dir() and not is_ros2_bag(path):
                out.extend(_bags_under(path))
            else:
                out.append(path)
        return out
    path = Path(spec)
    if not path.exists():
        raise UsageError(f"{spec}: no such bag, folder or pattern")
    if path.is_dir() and not is_ros2_bag(path):
        bags = _bags_under(path)
        if not bags:
            raise UsageError(
                f"{spec}: no bag in this folder (looked for *.mcap, *.bag and ROS 2 bag folders with metadata.yaml)"
            )
        return bags
    return [path]


def expand_bags(specs: Sequence[str]) -> list[Path]:
    """The bags named by ``specs`` (paths, folders, glob patterns), each once, in the order given.
    UsageError for none at all, a path that does not exist, or a pattern or folder with no bag."""
    if not specs:
        raise UsageError("name at least one bag, folder of bags or pattern to evaluate")
    return _unique(p for spec in specs for p in _expand_one(spec))


def _unique(paths: Iterable[Path]) -> list[Path]:
    seen: set[Path] = set()
    out = []
    for p in paths:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def report_names(bags: Sequence[Path]) -> list[str]:
    """A folder name per bag for its report: the file's stem, with its parent folders' names
    prepended (``x__one``) only as far as needed to tell bags of the same name apart."""
    parts = [p.resolve().with_suffix("").parts if p.is_file() else p.resolve().parts for p in bags]
    depth = [1] * len(bags)
    while True:
        names = ["__".join(ps[-d:]) for ps, d in zip(parts, depth, strict=True)]
        counts = Counter(names)
        clashing = [i for i, n in enumerate(names) if counts[n] > 1 and depth[i] < len(parts[i])]
        if not clashing:
            break
        for i in clashing:
            depth[i] += 1
    seen: Counter[str] = Counter()
    out = []
    for n in names:  # only the same path twice could still clash; _unique removed those, but stay safe
        seen[n] += 1
        out.append(n if seen[n] == 1 else f"{n}_{seen[n]}")
    return out

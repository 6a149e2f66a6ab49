"""Reading the YAML files users write (launch files, calibration, parameters): one place that
turns a missing file, unreadable YAML or a non-mapping into the caller's own error type."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

Fail = Callable[[str], Exception]
"""Builds the caller's error from a reason (the caller knows the file and says ``<file>``)."""


def read_mapping(path: Path, fail: Fail, *, missing: str, expected: str, empty_ok: bool = False) -> Mapping[str, Any]:
    """The mapping at the top of the YAML file ``path``; ``fail(reason)`` for anything else."""
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise fail(missing) from None
    except (OSError, yaml.YAMLError) as err:
        raise fail(f"cannot read: {err}") from err
    if data is None and empty_ok:
        return {}
    if not isinstance(data, Mapping):
        raise fail(f"must hold a mapping {expected}, got {type(data).__name__}")
    return data

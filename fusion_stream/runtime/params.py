"""Node parameters: YAML files and ``key:=value`` overrides, converted once into a frozen dataclass.

Each node declares its parameters as a dataclass; anything unknown, missing or of the wrong type
is refused here with a :class:`~fusion_stream.errors.ParamError` naming the key and the file, so
a node never starts half-configured.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from fusion_stream.core import resources, yamlio
from fusion_stream.errors import ParamError

T = TypeVar("T")

_AT_RE = re.compile(r"at `\$\.?([^`]*)`")
_MISSING_RE = re.compile(r"missing required field `([^`]*)`")


def parse_override(text: str) -> tuple[str, Any]:
    """``"rate_hz:=10"`` → ``("rate_hz", 10)``; the value is read as YAML (``=`` also accepted)."""
    key, sep, value = text.partition(":=")
    if not sep:
        key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ParamError(text, "expected KEY:=VALUE")
    if not value.strip():
        return key, ""
    # bounded like a file: an alias bomb on the command line is one too
    return key, yamlio.load(value, lambda reason: ParamError(key, f"value {reason}"), yamlio.ARGUMENT)


def existing(key: str, value: str, what: str) -> Path:
    """The file or folder parameter ``key`` names, resolved as a node resolves it (the launch
    file's folder, the working directory, the shipped data); a :class:`ParamError` if it is empty
    or found nowhere. Shared by a node type's ``check`` and its ``setup``."""
    if not value:
        raise ParamError(key, f"needs {what}")
    path = resources.resolve(value)
    if not path.exists():
        raise ParamError(
            key,
            f"{value}: no such file or folder ({what}); a relative path is looked up in the launch "
            "file's folder, the working directory, then the shipped data",
        )
    return path


def read_yaml(path: Path | str) -> dict[str, Any]:
    """A YAML file holding a mapping; errors name the file."""
    path = Path(path)
    data = yamlio.read_mapping(
        path,
        lambda reason: ParamError("<file>", reason, path=str(path)),
        missing="file not found",
        expected="of parameters",
        empty_ok=True,
    )
    return dict(data)


def convert(cls: type[T], values: Mapping[str, Any], *, path: str | None = None) -> T:
    """Build the dataclass ``cls`` from ``values``; refuse unknown keys and bad types."""
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in values:
        if key not in known:
            raise ParamError(key, f"unknown parameter; known: {sorted(known)}", path=path)
    try:
        return msgspec.convert(dict(values), cls)
    except msgspec.ValidationError as err:
        # msgspec gives the place only in its message, in a fixed form: "... - at `$.inputs[1]`"
        # and "Object missing required field `topic`"; there is no attribute to read it from
        at = _AT_RE.search(str(err))
        place = at.group(1) if at else ""
        reason = str(err).split(" - at ")[0]
        if isinstance(err.__cause__, ParamError):  # a settings object's own check named its field
            field, reason = err.__cause__.key, err.__cause__.reason
        else:
            missing = _MISSING_RE.search(reason)
            field = missing.group(1) if missing else ""
        raise ParamError(".".join(k for k in (place, field) if k) or "?", reason, path=path) from err


def load(cls: type[T], *, files: Sequence[Path | str] = (), overrides: Sequence[str] = ()) -> T:
    """Merge YAML ``files`` in order, then ``key:=value`` overrides, and convert to ``cls``."""
    merged: dict[str, Any] = {}
    origin = None
    for f in files:
        merged.update(read_yaml(f))
        origin = str(f)
    for text in overrides:
        key, value = parse_override(text)
        merged[key] = value
    return convert(cls, merged, path=origin)

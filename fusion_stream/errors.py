"""One exception root for the whole package.

Every error fusion_stream raises on purpose is a :class:`FusionStreamError`, so a caller can catch
the package's failures without catching programming errors. Subclasses carry the field that
locates the problem (topic, endpoint, key, path) so messages and handlers need not parse text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

WHOLE_FILE: Final = "<file>"
"""The ``key`` of an error about a file as a whole (unreadable, too big, not a mapping)."""


class FusionStreamError(Exception):
    """Root of every error raised by fusion_stream."""


class MessageError(FusionStreamError, ValueError):
    """A message was constructed with fields that break its contract."""

    def __init__(self, message_type: str, field: str, reason: str) -> None:
        self.message_type = message_type
        self.field = field
        self.reason = reason
        super().__init__(f"{message_type}.{field}: {reason}")


class WireError(FusionStreamError):
    """Bytes received on the wire are not a valid fusion_stream message.

    ``reason`` is a short stable key (``"bad-magic"``, ``"truncated"`` ...) used to count and
    rate-limit the log lines; ``detail`` says what exactly was wrong.
    """

    def __init__(self, reason: str, detail: str, *, topic: str | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.topic = topic
        where = f" on topic {topic!r}" if topic else ""
        super().__init__(f"malformed message{where} ({reason}): {detail}")


class TopicNameError(FusionStreamError, ValueError):
    """A topic name does not follow the naming rules."""

    def __init__(self, topic: object, reason: str) -> None:
        self.topic = topic
        super().__init__(f"invalid topic name {topic!r}: {reason}")


class TransportError(FusionStreamError):
    """A socket could not be bound, connected or used."""

    def __init__(self, message: str, *, endpoint: str | None = None) -> None:
        self.endpoint = endpoint
        super().__init__(message)


class TopicNotFoundError(TransportError):
    """No running publisher is registered for a topic."""

    def __init__(
        self, topic: str, registry: str, *, published: Sequence[str] = (), similar: Sequence[str] = ()
    ) -> None:
        self.topic = topic
        self.registry = registry
        self.published = tuple(published)
        self.similar = tuple(similar)
        hint = f"did you mean {' or '.join(similar)}? " if similar else ""
        there = (
            f"published there: {', '.join(published[:12])}{' ...' if len(published) > 12 else ''}; "
            if published
            else "nothing is published there; "
        )
        super().__init__(
            f"no publisher for topic {topic!r} in the endpoint registry {registry}; {hint}{there}"
            "is the graph running (and with the same FUSION_STREAM_GRAPH)? "
            "`fusion-stream graphs` lists the running graphs, `fusion-stream topics` what is published"
        )


class GraphNotFoundError(TransportError):
    """No graph is running in the runtime directory (none was named, none could be found)."""

    def __init__(self, runtime_dir: str, waited_s: float | None = None) -> None:
        self.runtime_dir = runtime_dir
        waited = f" (waited {waited_s:g} s)" if waited_s else ""
        super().__init__(
            f"no graph is running: no live publisher under {runtime_dir}{waited}; start one "
            "(`fusion-stream launch sim`, `fusion-stream demo`), or name the graph with --graph NAME "
            "(FUSION_STREAM_GRAPH) if it runs with another FUSION_STREAM_RUNTIME_DIR"
        )


class GraphAmbiguousError(TransportError, ValueError):
    """Several graphs are running and none was named: which one is meant is the user's choice."""

    def __init__(self, graphs: Sequence[str], runtime_dir: str) -> None:
        self.graphs = tuple(graphs)
        self.runtime_dir = runtime_dir
        super().__init__(
            f"{len(graphs)} graphs are running in {runtime_dir}: {', '.join(graphs)}; name one with "
            "--graph NAME (or FUSION_STREAM_GRAPH; in Python: graph=NAME)"
        )


class ParamError(FusionStreamError, ValueError):
    """A parameter is missing or has a bad value: a node's (from YAML or the command line), a
    settings object's field (``key`` is the dotted path a user writes: ``inputs[1].mode``), or
    an argument a program passes to the library (``key`` is the argument's name)."""

    def __init__(self, key: str, reason: str, *, path: str | None = None) -> None:
        self.key = key
        self.path = path
        self.reason = reason
        where = f"{path}: " if path else ""
        what = "" if key == WHOLE_FILE else f"parameter {key!r}: "
        super().__init__(f"{where}{what}{reason}")


class UnknownNameError(FusionStreamError, KeyError):
    """A name that does not exist where it was looked up: a rig's sensor, a message's field, a
    synchronizer's input topic, a launch file's node. ``key`` says what kind of name, ``name``
    which; a KeyError, so ``except KeyError`` around a lookup still catches it."""

    def __init__(self, key: str, name: str, reason: str) -> None:
        self.key = key
        self.name = name
        self.reason = reason
        super().__init__(reason)

    def __str__(self) -> str:
        return self.reason  # not KeyError's repr of the argument


class MessageTypeError(FusionStreamError, TypeError):
    """A message of the wrong type was given: to a publisher of another type (``topic``), or to
    the encoder (not a fusion_stream message at all). ``got`` and ``expected`` are type names."""

    def __init__(self, got: str, expected: str, *, topic: str | None = None) -> None:
        self.got = got
        self.expected = expected
        self.topic = topic
        if topic is None:
            super().__init__(f"cannot encode {got}: not {expected}")
        else:
            super().__init__(f"{topic} publishes {expected}, not {got}")


class FileKeyError(FusionStreamError, ValueError):
    """A user-written file is invalid; ``path`` and ``key`` (``nodes[2].params.rate_hz``) say where."""

    def __init__(self, path: str, key: str, reason: str) -> None:
        self.path = path
        self.key = key
        self.reason = reason
        super().__init__(f"{path}: {reason}" if key == WHOLE_FILE else f"{path}: {key}: {reason}")


class LaunchError(FileKeyError):
    """A launch file is invalid."""


class NodeTypeError(FusionStreamError, LookupError):
    """A node type is not registered, cannot be imported, or does not keep the node contract."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        super().__init__(reason)


class CalibrationError(FileKeyError):
    """A calibration file is missing, malformed or physically impossible."""


class FormatError(FusionStreamError):
    """A file is not in the format its name says, or is damaged."""


class UsageError(FusionStreamError, ValueError):
    """A command-line value is out of range or inconsistent."""


class InferenceError(FusionStreamError):
    """A model could not be exported, built, loaded or run."""


class BackendUnavailableError(InferenceError):
    """The requested inference backend is unknown, not installed or has no usable device here:
    the choice of backend (or device) is at fault, not the model."""


def is_input_error(err: BaseException) -> bool:
    """Whether ``err`` is the package's report of bad user input (a value, a name, a file's
    content), which a command or a node answers with exit code 2 rather than 1."""
    return isinstance(err, FusionStreamError) and isinstance(err, (ValueError, LookupError))

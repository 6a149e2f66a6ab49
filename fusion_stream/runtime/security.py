"""CurveZMQ keys for TCP links between machines.

A key directory holds one key pair per host, as ZeroMQ certificates (``<host>.key`` with the
public key, ``<host>.key_secret`` with both). Every host's public key in the directory is
authorised: a publisher accepts only subscribers whose key is there, and a subscriber checks the
publisher's key, so a peer without an authorised key receives nothing and traffic is encrypted.
Generate them with ``fusion-stream keys generate DIR HOST ...`` and copy the directory to each
machine (each needs only its own ``.key_secret``). Only TCP links use it: nodes on the same machine
talk over ipc sockets in the private runtime directory. The supervisor hands its nodes the keys
through ``$FUSION_STREAM_CURVE_KEYS`` and ``$FUSION_STREAM_HOST_NAME``; set the same two for your
own programs (or ``fusion-stream echo``) to read another host's topics.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from fusion_stream.errors import TransportError

log = logging.getLogger(__name__)

ENV_KEYS = "FUSION_STREAM_CURVE_KEYS"
ENV_HOST = "FUSION_STREAM_HOST_NAME"


@dataclass(frozen=True)
class CurveKeys:
    """This host's key pair and the directory of authorised public keys."""

    directory: Path
    host: str
    public: bytes
    secret: bytes

    @classmethod
    def load(cls, directory: Path | str, host: str) -> CurveKeys:
        directory = Path(directory)
        secret_file = directory / f"{host}.key_secret"
        try:
            public, secret = zmq.auth.load_certificate(secret_file)
        except (OSError, ValueError) as err:
            raise TransportError(
                f"no CurveZMQ key pair for host {host!r} in {directory} ({err}); "
                f"create one with `fusion-stream keys generate {directory} {host}`"
            ) from err
        if secret is None:
            raise TransportError(f"{secret_file} holds no secret key")
        return cls(directory, host, public, secret)

    @classmethod
    def from_env(cls) -> CurveKeys | None:
        """The keys the supervisor handed this process, if any."""
        directory, host = os.environ.get(ENV_KEYS), os.environ.get(ENV_HOST)
        return cls.load(directory, host) if directory and host else None

    def public_key_of(self, host: str) -> bytes:
        try:
            public, _ = zmq.auth.load_certificate(self.directory / f"{host}.key")
        except (OSError, ValueError) as err:
            raise TransportError(f"no public key for host {host!r} in {self.directory}: {err}") from err
        return public


def generate(directory: Path | str, hosts: list[str]) -> list[Path]:
    """Create a key pair per host in ``directory`` (0700); existing pairs are kept."""
    directory = Path(directory)
    made = []
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for host in hosts:
            if not host or "/" in host or host.startswith("."):
                raise TransportError(f"invalid host name {host!r} for a key pair")
            if not (directory / f"{host}.key_secret").exists():
                zmq.auth.create_certificates(directory, host)
                (directory / f"{host}.key_secret").chmod(0o600)
                made.append(directory / f"{host}.key_secret")
    except OSError as err:
        raise TransportError(f"cannot write keys to {directory}: {err}") from err
    return made


_auth_lock = threading.Lock()
_authenticators: dict[int, ThreadAuthenticator] = {}


def serve_curve(sock: zmq.Socket[Any], keys: CurveKeys) -> None:
    """Make ``sock`` a CurveZMQ server that accepts only the authorised keys."""
    ctx = sock.context
    with _auth_lock:
        if id(ctx) not in _authenticators:
            auth = ThreadAuthenticator(ctx)
            auth.start()
            auth.configure_curve(domain="*", location=str(keys.directory))
            _authenticators[id(ctx)] = auth
            log.debug("CurveZMQ authenticator started with the keys in %s", keys.directory)
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_server = True


def curve_client(sock: zmq.Socket[Any], keys: CurveKeys, server_key: bytes) -> None:
    """Set ``sock`` up to connect to a CurveZMQ server with public key ``server_key``."""
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_serverkey = server_key

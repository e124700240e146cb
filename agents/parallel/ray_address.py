"""Checking a Ray cluster address before joining it: fail in seconds with one line, not hang for minutes.

``ray.init(address="127.0.0.1:1")`` retries its connection for minutes; ``"auto"`` without a cluster raises a
bare ``ConnectionError``. :func:`check_ray_address` instead resolves ``auto`` (Ray's own lookup), then needs
the port to accept a TCP connection and answer an HTTP/2 (gRPC) handshake within 5 s each, and a GCS
address to answer Ray's GCS client; otherwise :class:`RayUnreachable` (a ``ValueError``) names the address
and says how to start a cluster (``ray start --head``) or drop the option.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["RAY_CONNECT_TIMEOUT_S", "RayUnreachable", "check_ray_address", "connect_ray"]

RAY_CONNECT_TIMEOUT_S = 5.0
_START_HINT = (
    "start a cluster with `ray start --head` (then --ray-address auto), or drop --ray-address to run "
    "here (--workers N starts a local Ray)"
)


def _one_line(text, limit: int = 500) -> str:
    line = " ".join(part.strip() for part in str(text).splitlines() if part.strip())
    return line if len(line) <= limit else line[: limit - 3] + "..."


class RayUnreachable(ValueError):
    """``--ray-address`` names no reachable Ray cluster."""


def _host_port(address: str) -> tuple[str, int] | None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def check_ray_address(address: str, timeout: float = RAY_CONNECT_TIMEOUT_S) -> None:
    """:class:`RayUnreachable` unless ``address`` (``auto``, ``host:port`` or ``ray://host:port``) names a Ray
    cluster whose port accepts a TCP connection within ``timeout`` seconds. ``local`` (a new local Ray) passes."""
    if address == "local":
        return
    target = address[len("ray://") :] if address.startswith("ray://") else address
    if target == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address
        except ImportError:  # Ray moved its resolver: let ray.init resolve it
            return
        try:
            resolved = canonicalize_bootstrap_address("auto")
        except ConnectionError:
            raise RayUnreachable(
                f"--ray-address auto: no running Ray cluster found on this machine; {_START_HINT}"
            ) from None
        if resolved is None:
            raise RayUnreachable(f"--ray-address auto: no running Ray cluster found on this machine; {_START_HINT}")
        target = resolved
    hp = _host_port(target)
    if hp is None:
        raise RayUnreachable(f"--ray-address {address!r} is not 'auto', 'host:port' or 'ray://host:port'")
    try:
        answered = _grpc_handshake(hp, timeout)
    except OSError as exc:
        why = "timed out" if isinstance(exc, socket.timeout) else (exc.strerror or type(exc).__name__).lower()
        raise RayUnreachable(f"cannot reach a Ray cluster at {address} ({target}: {why}); {_START_HINT}") from None
    if not answered:
        raise RayUnreachable(
            f"no Ray cluster answers at {address} ({target} accepts connections but does not speak "
            f"gRPC within {timeout:g} s); {_START_HINT}"
        )
    if not address.startswith("ray://"):
        _check_gcs(address, target)


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _check_gcs(address: str, target: str) -> None:
    """A Ray GCS client to ``target`` (Ray's own, not public: skipped if Ray moved it): it fails at once when
    what answers is not a Ray GCS (another gRPC server, a proxy)."""
    try:
        from ray._raylet import GcsClient  # type: ignore[attr-defined]  # Ray's _raylet.pyi omits it; the .so has it
    except ImportError:
        return
    try:
        with _native_stderr_silenced():  # Ray's C++ logger prints its own lines for a failed connection
            GcsClient(address=target)
    except Exception as exc:
        raise RayUnreachable(
            f"no Ray cluster answers at {address} ({target}: {_one_line(exc, 160)}); {_START_HINT}"
        ) from None


_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # + empty SETTINGS


def _grpc_handshake(host_port: tuple[str, int], timeout: float) -> bool:
    """Whether the server at ``host_port`` answers an HTTP/2 client preface with a SETTINGS frame (gRPC
    servers do at once). ``OSError`` if the connection itself fails."""
    sock = socket.create_connection(host_port, timeout=timeout)
    try:
        sock.settimeout(timeout)
        sock.sendall(_HTTP2_PREFACE)
        head = b""
        try:
            while len(head) < 9:
                chunk = sock.recv(9 - len(head))
                if not chunk:
                    break
                head += chunk
        except TimeoutError:
            return False
        return len(head) == 9 and head[3] == 0x04  # frame type SETTINGS
    finally:
        sock.close()


def connect_ray(ray, address: str) -> None:
    """``ray.init(address=address)`` after :func:`check_ray_address`; Ray's connection errors become
    :class:`RayUnreachable`."""
    check_ray_address(address)
    try:
        ray.init(address=address, logging_level=logging.WARNING)
    except (ConnectionError, TimeoutError) as exc:
        raise RayUnreachable(
            f"cannot connect to the Ray cluster at {address} ({_one_line(exc, 200)}); {_START_HINT}"
        ) from None

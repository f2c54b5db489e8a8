"""The listening ports: bound before the model loads, listening only after.

A port that is taken is found at once, before minutes of loading, and said
in one line that names the port and the flag that sets it. The HTTP socket
is bound then and kept (connections are refused until it listens, which is
what KServe's TCP readiness probe needs); the gRPC port is tried with a
throw-away socket, since grpc.aio binds its own.
"""

from __future__ import annotations

import errno
import socket


class PortUnavailable(Exception):
    """A port cannot be bound; the message names it and its flag."""


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def bind(host: str, port: int, reuse_port: bool, what: str, flag: str) -> socket.socket:
    """A socket bound to ``host:port`` (not yet listening), or PortUnavailable."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PortUnavailable(_reason(exc, host, port, what, flag)) from None
    sock.set_inheritable(True)
    return sock


def check(host: str, port: int, reuse_port: bool, what: str, flag: str) -> None:
    """PortUnavailable unless ``host:port`` could be bound now."""
    bind(host, port, reuse_port, what, flag).close()


def _reason(exc: OSError, host: str, port: int, what: str, flag: str) -> str:
    where = f"{what} port {port} on {host}"
    change = f"choose another with --{flag} or {flag.upper()}"
    if exc.errno == errno.EADDRINUSE:
        return f"{where} is already in use by another process; {change}"
    if exc.errno == errno.EACCES:
        return f"{where} needs privileges this process lacks; {change}"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{where}: no such address on this machine (--host); {exc.strerror}"
    return f"cannot bind {where}: {exc.strerror or exc}; {change}"

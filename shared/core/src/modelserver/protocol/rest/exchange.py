"""What a REST handler reads and returns: the request's parts and the reply's.

A handler takes an ``HttpRequest`` (path parameters, raw headers, ASGI
``receive``) and returns a ``Reply`` (status, body, content type, extra
headers), which the ASGI app writes in two messages, or a ``StreamReply``,
whose body it writes piece by piece as the handler's iterator yields them
(Server-Sent Events), stopping that iterator when the client leaves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ...errors import ClientDisconnected, PayloadTooLarge

JSON = b"application/json"
OCTET_STREAM = b"application/octet-stream"

Reply = tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]
"""(status, body, content type, extra headers)."""

Headers = list[tuple[bytes, bytes]]
"""Request headers as ASGI gives them: raw (lower-case name, value) pairs."""

Receive = Callable[[], Awaitable[dict[str, Any]]]


@dataclass(slots=True)
class StreamReply:
    """A reply whose body is written as ``chunks`` yields it, until it ends or the client leaves."""

    content_type: bytes
    chunks: AsyncIterator[bytes]
    status: int = 200
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


@dataclass(slots=True)
class HttpRequest:
    """What a handler may read of one HTTP request."""

    method: str
    path: str
    headers: Headers
    receive: Receive
    params: dict[str, str | None]

    def header(self, name: bytes) -> str | None:
        return header(self.headers, name)

    @property
    def name(self) -> str:
        return self.params.get("name") or ""

    @property
    def version(self) -> str | None:
        return self.params.get("version")


def header(headers: Headers, name: bytes) -> str | None:
    """One header's value; only the header asked for is decoded."""
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def json_reply(obj: Any, status: int = 200) -> Reply:
    return status, orjson.dumps(obj), JSON, []


async def read_body(receive: Receive, declared: str | None, limit: int) -> bytes:
    """The whole request body from ASGI ``receive``; 413 past ``limit`` bytes.

    A declared Content-Length over the limit is refused before anything is
    read; a chunked body is counted as it arrives.
    """
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"Request body of {declared} bytes exceeds the limit of {limit}")
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnected("The client left before sending the whole body")
    body: bytes = message.get("body", b"")
    if len(body) > limit:
        # A chunked body (no declared length) can arrive whole in one message.
        raise PayloadTooLarge(f"Request body exceeds the limit of {limit} bytes")
    if not message.get("more_body", False):
        return body
    chunks = [body]
    total = len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected("The client left before sending the whole body")
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"Request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def wait_for_disconnect(receive: Receive) -> None:
    """Return when ASGI ``receive`` reports that the client closed the connection."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return

"""The REST operations on the hot path, written once against raw ASGI pieces.

Both the pure-ASGI fast path (``fastpath``) and the FastAPI routes (``app``)
call these, so the logic of each endpoint lives here only. Each takes the
request's parts (body bytes, a header value) and returns the status, the
body and any extra headers, never a framework object.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import orjson

from .. import disconnect, tracing
from ..codecs import v1, v2_rest
from ..dataplane import DataPlane
from ..errors import PayloadTooLarge
from ..gate import InferenceGate

JSON = b"application/json"
OCTET_STREAM = b"application/octet-stream"

Reply = tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]
"""(status, body, content type, extra headers)."""

Headers = list[tuple[bytes, bytes]]
"""Request headers as ASGI gives them: raw (lower-case name, value) pairs."""


def header(headers: Headers, name: bytes) -> str | None:
    """One header's value; only the header asked for is decoded."""
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def error_reply(status: int, message: str) -> Reply:
    """Every REST error body: ``{"error": "..."}``."""
    return status, orjson.dumps({"error": message}), JSON, []


HEADER_LENGTH = v2_rest.HEADER_LENGTH.encode()

LIVE = orjson.dumps({"live": True})
READY = orjson.dumps({"ready": True})
NOT_READY = orjson.dumps({"ready": False})


async def read_body(receive: Any, declared: str | None, limit: int) -> bytes:
    """The whole request body from ASGI ``receive``; 413 past ``limit`` bytes.

    A declared Content-Length over the limit is refused before anything is
    read; a chunked body is counted as it arrives.
    """
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"Request body of {declared} bytes exceeds the limit of {limit}")
    message = await receive()
    body = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks = [body]
    total = len(body)
    while message.get("more_body", False):
        message = await receive()
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"Request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class Handlers:
    """The hot REST endpoints over one data plane."""

    def __init__(self, dataplane: DataPlane, max_body_size: int, gate: InferenceGate) -> None:
        self.dataplane = dataplane
        self.repository = dataplane.repository
        self.max_body_size = max_body_size
        self.gate = gate

    def live(self) -> Reply:
        return 200, LIVE, JSON, []

    def ready(self) -> Reply:
        if self.dataplane.ready():
            return 200, READY, JSON, []
        return 400, NOT_READY, JSON, []

    def model_ready(self, name: str, version: str | None) -> Reply:
        is_ready = self.dataplane.model_ready(name, version)
        body = orjson.dumps({"name": name, "ready": is_ready})
        return (200 if is_ready else 400), body, JSON, []

    async def infer_v2(
        self,
        receive: Any,
        headers: Headers,
        name: str,
        version: str | None,
    ) -> Reply:
        return await self.gate.serve(
            name,
            "v2-rest",
            lambda: self._infer_v2(receive, headers, name, version),
            headers=headers,
        )

    async def _infer_v2(
        self, receive: Any, headers: Headers, name: str, version: str | None
    ) -> Reply:
        self.repository.get_ready(name, version)
        body = await read_body(receive, header(headers, b"content-length"), self.max_body_size)
        disconnect.watch.set(partial(disconnect.wait_for_disconnect, receive))
        trace = tracing.current.get()
        t0 = time.time_ns() if trace is not None else 0
        json_length = v2_rest.parse_header_length(header(headers, HEADER_LENGTH), len(body))
        request = v2_rest.decode_infer_request(body, json_length, name, version)
        if trace is not None:
            trace.phase("decode", t0, time.time_ns())
        response = await self.dataplane.infer(request)
        t2 = time.time_ns() if trace is not None else 0
        out, out_json_length = v2_rest.encode_infer_response(response, request)
        if trace is not None:
            trace.phase("encode", t2, time.time_ns())
        if out_json_length is None:
            return 200, out, JSON, []
        return (
            200,
            out,
            OCTET_STREAM,
            [(b"inference-header-content-length", str(out_json_length).encode())],
        )

    async def predict_v1(self, receive: Any, headers: Headers, name: str) -> Reply:
        return await self.gate.serve(
            name, "v1-rest", lambda: self._predict_v1(receive, headers, name), headers=headers
        )

    async def _predict_v1(self, receive: Any, headers: Headers, name: str) -> Reply:
        self.repository.get_ready(name)
        body = await read_body(receive, header(headers, b"content-length"), self.max_body_size)
        disconnect.watch.set(partial(disconnect.wait_for_disconnect, receive))
        trace = tracing.current.get()
        t0 = time.time_ns() if trace is not None else 0
        request = v1.decode_predict_request(body, name)
        if trace is not None:
            trace.phase("decode", t0, time.time_ns())
        response = await self.dataplane.infer(request)
        t2 = time.time_ns() if trace is not None else 0
        out = v1.encode_predict_response(response)
        if trace is not None:
            trace.phase("encode", t2, time.time_ns())
        return 200, out, JSON, []

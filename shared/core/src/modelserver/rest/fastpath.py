"""A pure-ASGI front for the hot routes: inference and health.

FastAPI's per-request machinery (a dozen middleware layers, dependency
resolution, response classes) costs more than our whole codec on a one-row
request. The routes that carry traffic are matched here by string tests and
answered with two ASGI messages; every other request (metadata, repository,
docs, unknown paths, wrong methods) goes on to the FastAPI app unchanged.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from ..errors import ModelServerError
from .handlers import JSON, Handlers, Reply

logger = logging.getLogger("modelserver.rest")

_V2_MODELS = "/v2/models/"
_V1_MODELS = "/v1/models/"


def _name_version(middle: str) -> tuple[str, str | None] | None:
    """Split ``name`` or ``name/versions/v``; None when it is neither."""
    if "/" not in middle:
        return (middle, None) if middle else None
    name, sep, version = middle.partition("/versions/")
    if not sep or not name or not version or "/" in name or "/" in version:
        return None
    return name, version


def _header(scope: dict[str, Any], key: bytes) -> str | None:
    for name, value in scope["headers"]:
        if name == key:
            return value.decode("latin-1")
    return None


async def _send(send: Any, reply: Reply) -> None:
    status, body, content_type, extra = reply
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def error_reply(status: int, message: str) -> Reply:
    return status, orjson.dumps({"error": message}), JSON, []


class FastPath:
    """ASGI app: hot routes here, everything else to ``fallback``."""

    def __init__(self, fallback: Any, handlers: Handlers) -> None:
        self.fallback = fallback
        self.handlers = handlers

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            method, path = scope["method"], scope["path"]
            try:
                reply = await self._route(method, path, scope, receive)
            except ModelServerError as exc:
                level = logging.ERROR if exc.http_status >= 500 else logging.WARNING
                logger.log(level, "%s %s -> %d: %s", method, path, exc.http_status, exc.message)
                reply = error_reply(exc.http_status, exc.message)
            except Exception as exc:
                logger.exception("%s %s failed", method, path)
                reply = error_reply(500, f"Internal error: {type(exc).__name__}: {exc}")
            if reply is not None:
                await _send(send, reply)
                return
        await self.fallback(scope, receive, send)

    async def _route(
        self, method: str, path: str, scope: dict[str, Any], receive: Any
    ) -> Reply | None:
        h = self.handlers
        if method == "POST":
            if path.startswith(_V2_MODELS) and path.endswith("/infer"):
                parts = _name_version(path[len(_V2_MODELS) : -len("/infer")])
                if parts is None:
                    return None
                return await h.infer_v2(
                    receive,
                    _header(scope, b"content-length"),
                    _header(scope, b"inference-header-content-length"),
                    *parts,
                )
            if path.startswith(_V1_MODELS) and path.endswith(":predict"):
                name = path[len(_V1_MODELS) : -len(":predict")]
                if not name or "/" in name:
                    return None
                return await h.predict_v1(receive, _header(scope, b"content-length"), name)
            return None
        if method == "GET":
            if path == "/v2/health/ready":
                return h.ready()
            if path == "/v2/health/live":
                return h.live()
            if path.startswith(_V2_MODELS) and path.endswith("/ready"):
                parts = _name_version(path[len(_V2_MODELS) : -len("/ready")])
                return None if parts is None else h.model_ready(*parts)
        return None

"""A pure-ASGI front for the hot routes: inference and health.

FastAPI's per-request machinery (a dozen middleware layers, dependency
resolution, response classes) costs more than our whole codec on a one-row
request. The routes that carry traffic are matched here by string tests and
answered with two ASGI messages; every other request (metadata, repository,
docs, unknown paths, wrong methods) goes on to the FastAPI app unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from ..errors import ModelServerError
from ..policy import RequestPolicy
from .handlers import Handlers, Reply, error_reply, header

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


def is_probe(method: str, path: str) -> bool:
    """Liveness and readiness, which stay open to probes when auth is on."""
    if method not in ("GET", "HEAD"):
        return False
    if path in ("/v2/health/live", "/v2/health/ready", "/", "/metrics"):
        return True
    if path.startswith(_V2_MODELS) and path.endswith("/ready"):
        return _name_version(path[len(_V2_MODELS) : -len("/ready")]) is not None
    # KServe's v1 readiness: GET /v1/models/{name}
    return path.startswith(_V1_MODELS) and "/" not in path[len(_V1_MODELS) :]


async def _send(send: Any, reply: Reply) -> None:
    status, body, content_type, extra = reply
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class FastPath:
    """ASGI app: hot routes here, everything else to ``fallback``; auth for all."""

    def __init__(self, fallback: Any, handlers: Handlers, policy: RequestPolicy) -> None:
        self.fallback = fallback
        self.handlers = handlers
        self.policy = policy

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            method, path = scope["method"], scope["path"]
            try:
                if self.policy.auth_on and not is_probe(method, path):
                    self.policy.authenticate(header(scope["headers"], b"authorization"))
                reply = await self._route(method, path, scope, receive)
            except ModelServerError as exc:
                level = logging.ERROR if exc.http_status >= 500 else logging.WARNING
                logger.log(level, "%s %s -> %d: %s", method, path, exc.http_status, exc.message)
                reply = error_reply(exc.http_status, exc.message)
            except asyncio.CancelledError:
                # The grace period after SIGTERM ran out with this request unfinished.
                logger.warning("%s %s cut off at shutdown", method, path)
                with contextlib.suppress(Exception):
                    await _send(
                        send, error_reply(503, "Server shut down before the answer was ready")
                    )
                raise
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
                return await h.infer_v2(receive, scope["headers"], *parts)
            if path.startswith(_V1_MODELS) and path.endswith(":predict"):
                name = path[len(_V1_MODELS) : -len(":predict")]
                if not name or "/" in name:
                    return None
                return await h.predict_v1(receive, scope["headers"], name)
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

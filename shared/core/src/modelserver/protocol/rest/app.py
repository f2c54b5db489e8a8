"""The REST transport: one pure-ASGI app over the route table.

No web framework sits between uvicorn and the handlers: a web framework's
per-request machinery (middleware layers, dependency resolution, response
classes) costs more than our whole codec on a one-row request, and its
import alone is a third of a cold start. A request is matched against the
route table, authenticated unless it is a probe, answered by its handler,
and written as two ASGI messages, or, for a streamed reply (Server-Sent
Events), as one message per piece while the client's disconnect is watched
for: a client that leaves stops the stream, and with it the work behind it.
Every error, ours or routing's, leaves through ``error_reply`` as
``{"error": "..."}`` with the architecture's status (an optional protocol's
own shape on its own routes: MLflow's ``{"error_code", "message"}``,
OpenAI's ``{"error": {"message", "type", ...}}``), and the connection stays
open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import operator
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

from ...codecs import mlflow, openai
from ...dataplane.dataplane import DataPlane
from ...dataplane.gate import InferenceGate
from ...errors import MethodNotAllowed, ModelServerError, RouteNotFound
from .handlers import JSON, Handlers, HttpRequest, Reply, StreamReply, header, wait_for_disconnect
from .routes import MLFLOW, OPENAI, RouteTable
from .tfserving import TFServingHandlers

logger = logging.getLogger("modelserver.rest")

Send = Callable[[dict[str, Any]], Awaitable[None]]

#: Error bodies of the optional protocols whose clients expect their own shape.
ERROR_BODIES: dict[str, Callable[[int, str], bytes]] = {
    MLFLOW: mlflow.encode_error,
    OPENAI: openai.encode_error,
}


def _error_body(status: int, message: str) -> bytes:
    return orjson.dumps({"error": message})


def error_reply(
    exc: ModelServerError,
    method: str = "",
    path: str = "",
    body: Callable[[int, str], bytes] = _error_body,
) -> Reply:
    """The one mapping from an error to its REST answer, logged by severity.

    Routing errors (404 for an unknown path, 405) are not logged: scanners
    and typos would fill the log.
    """
    status = exc.http_status
    if not isinstance(exc, RouteNotFound | MethodNotAllowed):
        level = logging.ERROR if status >= 500 else logging.WARNING
        logger.log(level, "%s %s -> %d: %s", method, path, status, exc.message)
    extra: list[tuple[bytes, bytes]] = []
    if isinstance(exc, MethodNotAllowed):
        extra.append((b"allow", ", ".join(exc.allowed).encode()))
    return status, body(status, exc.message), JSON, extra


def internal_error_reply(exc: BaseException, method: str, path: str) -> Reply:
    logger.error("%s %s failed", method, path, exc_info=exc)
    message = f"Internal error: {type(exc).__name__}: {exc}"
    return 500, orjson.dumps({"error": message}), JSON, []


async def send_reply(send: Send, reply: Reply, head: bool = False) -> None:
    status, body, content_type, extra = reply
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def send_stream(send: Send, receive: Any, reply: StreamReply) -> None:
    """A streamed reply, one message per piece, until it ends or the client leaves.

    The client's disconnect is raced against the stream: when it comes
    first, the stream is cancelled where it waits (its ``finally`` clauses
    stop the work behind it) and closed.
    """
    headers = [
        (b"content-type", reply.content_type),
        (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no"),
        *reply.headers,
    ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    pump = asyncio.ensure_future(_pump(send, reply.chunks))
    left = asyncio.ensure_future(wait_for_disconnect(receive))
    try:
        await asyncio.wait({pump, left}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        left.cancel()
        if not pump.done():
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
    if not pump.cancelled() and pump.exception() is not None:
        logger.error("streamed reply failed", exc_info=pump.exception())


async def _pump(send: Send, chunks: AsyncIterator[bytes]) -> None:
    try:
        async for piece in chunks:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def _bound(name: str, *owners: Any) -> Any:
    """The handler ``name`` (dotted for a protocol's own, ``openai.completions``) of the first
    owner that has it: the shared handlers, then TF Serving's."""
    for owner in owners:
        try:
            return operator.attrgetter(name)(owner)
        except AttributeError:
            continue
    raise AttributeError(f"no handler {name!r}")


class RestApp:
    """The ASGI application uvicorn serves."""

    def __init__(
        self,
        dataplane: DataPlane,
        gate: InferenceGate,
        max_body_size: int = 100 * 1024 * 1024,
        docs: bool = False,
    ) -> None:
        self.routes = RouteTable(
            docs=docs, protocols=dataplane.protocols, dialect=dataplane.dialect
        )
        self.handlers = Handlers(dataplane, gate, max_body_size, self.routes)
        self.policy = gate.policy
        # Bound once: a handler lookup per request is a dict access.
        # TF Serving's routes (the ``tfserving`` dialect) have their own handlers.
        tfserving = TFServingHandlers(self.handlers)
        self._handlers = {
            route.handler: _bound(route.handler, self.handlers, tfserving)
            for route in self.routes.routes
        }

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is off; websockets are not served
        method: str = scope["method"]
        path: str = scope["path"]
        try:
            reply = await self._answer(method, path, scope, receive)
        except ModelServerError as exc:
            reply = error_reply(exc, method, path)
        except asyncio.CancelledError:
            # The grace period after SIGTERM ran out with this request unfinished.
            logger.warning("%s %s cut off at shutdown", method, path)
            with contextlib.suppress(Exception):
                await send_reply(
                    send,
                    (503, b'{"error":"Server shut down before the answer was ready"}', JSON, []),
                )
            raise
        except Exception as exc:
            reply = internal_error_reply(exc, method, path)
        if isinstance(reply, StreamReply):
            await send_stream(send, receive, reply)
            return
        await send_reply(send, reply, head=method == "HEAD")

    async def _answer(
        self, method: str, path: str, scope: dict[str, Any], receive: Any
    ) -> Reply | StreamReply:
        try:
            route, params = self.routes.match(method, path)
        except ModelServerError:
            if self.policy.auth_on:
                self.policy.authenticate(header(scope["headers"], b"authorization"))
            raise
        request = HttpRequest(method, path, scope["headers"], receive, params)
        try:
            if self.policy.auth_on and not route.probe:
                self.policy.authenticate(header(scope["headers"], b"authorization"))
            return await self._handlers[route.handler](request)  # type: ignore[no-any-return]
        except ModelServerError as exc:
            body = ERROR_BODIES.get(route.protocol)
            if body is None:
                raise
            return error_reply(exc, method, path, body)

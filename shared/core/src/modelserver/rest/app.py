"""The FastAPI application: routes that only move bytes between codecs and the data plane.

Handlers take the raw ``Request`` (no pydantic models, so no per-request
validation of tensor data) and return ready-made ``Response`` bytes. Every
error, ours or the framework's (unknown route, wrong method), leaves as
``{"error": "..."}`` with the status from the architecture's table.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..codecs import v2_rest
from ..dataplane import DataPlane
from ..errors import ModelServerError
from ..gate import InferenceGate
from .fastpath import FastPath
from .handlers import Handlers, Reply, error_reply, read_body

logger = logging.getLogger("modelserver.rest")

JSON = "application/json"


def _json(obj: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(obj), status_code=status, media_type=JSON)


def _reply(reply: Reply) -> Response:
    status, body, content_type, extra = reply
    response = Response(body, status_code=status, media_type=content_type.decode())
    for key, value in extra:
        response.headers[key.decode()] = value.decode()
    return response


def error_response(status: int, message: str) -> Response:
    return _reply(error_reply(status, message))


class CatchAll:
    """Answer an unexpected exception with a 500 ``{"error"}`` and keep the connection.

    Starlette's own last-resort handler re-raises after responding, which
    makes uvicorn drop the keep-alive connection; this pure ASGI layer (no
    per-request cost beyond a call) stops the exception where it is answered.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started:
                raise
            logger.exception("%s %s failed", scope.get("method"), scope.get("path"))
            response = error_response(500, f"Internal error: {type(exc).__name__}: {exc}")
            await response(scope, receive, send)


def create_app(handlers: Handlers, docs: bool = False) -> FastAPI:
    """Build the REST app over the shared handlers."""
    dataplane = handlers.dataplane
    max_body_size = handlers.max_body_size
    app = FastAPI(
        title="modelserver",
        docs_url="/docs" if docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
    )
    repo = dataplane.repository

    @app.exception_handler(ModelServerError)
    async def _ours(request: Request, exc: ModelServerError) -> Response:
        if exc.http_status >= 500:
            logger.error(
                "%s %s -> %d: %s", request.method, request.url.path, exc.http_status, exc.message
            )
        else:
            logger.warning(
                "%s %s -> %d: %s", request.method, request.url.path, exc.http_status, exc.message
            )
        return error_response(exc.http_status, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        return error_response(400, f"Invalid request: {exc.errors()}")

    app.add_middleware(CatchAll)

    # -- liveness and server -------------------------------------------------

    @app.get("/")
    async def root() -> Response:
        return Response(b'{"status":"alive"}', media_type=JSON)

    @app.get("/v2/health/live")
    async def live() -> Response:
        return _reply(handlers.live())

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        return _reply(handlers.ready())

    @app.get("/v2")
    async def server_metadata() -> Response:
        return Response(dataplane.server_metadata_json, media_type=JSON)

    # -- v2 models ---------------------------------------------------------------

    async def model_metadata(name: str, version: str | None = None) -> Response:
        return Response(dataplane.model_metadata_json(name, version), media_type=JSON)

    async def model_ready(name: str, version: str | None = None) -> Response:
        return _reply(handlers.model_ready(name, version))

    async def infer(request: Request, name: str, version: str | None = None) -> Response:
        return _reply(await handlers.infer_v2(request.receive, request.headers.raw, name, version))

    for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        app.add_api_route(prefix, model_metadata, methods=["GET"])
        app.add_api_route(prefix + "/ready", model_ready, methods=["GET"])
        app.add_api_route(prefix + "/infer", infer, methods=["POST"])

    # -- repository extension ------------------------------------------------------

    @app.post("/v2/repository/index")
    async def repository_index(request: Request) -> Response:
        body = await read_body(
            request.receive, request.headers.get("content-length"), max_body_size
        )
        ready_only = False
        if body.strip():
            ready_only = bool(v2_rest.loads_object(body, "index request").get("ready", False))
        return _json(dataplane.repository_index(ready_only))

    @app.post("/v2/repository/models/{name}/load")
    async def repository_load(name: str) -> Response:
        await dataplane.load(name)
        return Response(b"", media_type=JSON)

    @app.post("/v2/repository/models/{name}/unload")
    async def repository_unload(name: str) -> Response:
        await dataplane.unload(name)
        return Response(b"", media_type=JSON)

    # -- KServe v1 --------------------------------------------------------------------

    @app.get("/v1/models")
    async def v1_models() -> Response:
        return _json({"models": list(repo.models)})

    @app.get("/v1/models/{name}")
    async def v1_model(name: str) -> Response:
        model = repo.get(name)
        if model.ready and not dataplane.draining:
            return _json({"name": name, "ready": True})
        return _json(
            {"error": f"Model with name {name} is not ready.", "name": name, "ready": False}, 503
        )

    @app.post("/v1/models/{name}:predict")
    async def v1_predict(request: Request, name: str) -> Response:
        return _reply(await handlers.predict_v1(request.receive, request.headers.raw, name))

    @app.get("/metrics")
    async def metrics() -> Response:
        from ..metrics import exposition

        body, content_type = exposition()
        return Response(body, media_type=content_type)

    @app.post("/v1/models/{name}:explain")
    async def v1_explain(name: str) -> Response:
        repo.get(name)
        return error_response(501, f"Model {name} has no explainer; only :predict is served")

    return app


def create_asgi_app(
    dataplane: DataPlane,
    gate: InferenceGate,
    max_body_size: int = 100 * 1024 * 1024,
    docs: bool = False,
) -> FastPath:
    """The app uvicorn serves: the fast path in front of the FastAPI app."""
    handlers = Handlers(dataplane, max_body_size, gate)
    return FastPath(create_app(handlers, docs), handlers, gate.policy)

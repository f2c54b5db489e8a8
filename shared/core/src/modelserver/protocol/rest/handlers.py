"""The REST endpoints, one method per route of the route table.

Each takes the request's parts (an ``HttpRequest``: path parameters, raw
headers, ASGI ``receive``) and returns a ``Reply`` (status, body, content
type, extra headers) or a ``StreamReply`` (``exchange``), never a framework
object. Inference goes through the gate (admission, timeout, metrics,
trace) and the data plane; the codecs turn bytes into requests and back.
OpenAI's endpoints are ``Handlers.openai`` (``openai.py``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import orjson

from ... import __version__
from ...codecs import mlflow, v1, v2_rest
from ...dataplane.context import RequestContext
from ...dataplane.dataplane import DataPlane
from ...dataplane.gate import InferenceGate
from ...errors import InvalidInput
from ...types import InferRequest, InferResponse
from . import encoding
from .exchange import (
    JSON,
    OCTET_STREAM,
    HttpRequest,
    Reply,
    StreamReply,
    header,
    json_reply,
    read_body,
    wait_for_disconnect,
)
from .openai import OpenAIHandlers
from .routes import OPENAI, RouteTable

__all__ = [
    "JSON",
    "Handlers",
    "HttpRequest",
    "Reply",
    "StreamReply",
    "header",
    "json_reply",
    "read_body",
    "wait_for_disconnect",
]

HEADER_LENGTH = v2_rest.HEADER_LENGTH.encode()
LIVE = orjson.dumps({"live": True})
READY = orjson.dumps({"ready": True})
NOT_READY = orjson.dumps({"ready": False})
ALIVE = orjson.dumps({"status": "alive"})
#: MLflow's scoring server answers its health checks with a newline.
PING = b"\n"

#: Compressed bodies larger than this are inflated off the event loop.
INLINE_INFLATE_BYTES = 256 * 1024


def _decode_size(body: bytes, json_length: int | None) -> int:
    """How much of a v2 body decoding walks through: its JSON, and binary BYTES elements.

    Numeric binary tensors are zero-copy views, whatever their size; BYTES
    elements are split one by one.
    """
    if json_length is None:
        return len(body)
    return len(body) if body.find(b'"BYTES"', 0, json_length) >= 0 else json_length


class Handlers:
    """Every REST endpoint over one data plane."""

    def __init__(
        self, dataplane: DataPlane, gate: InferenceGate, max_body_size: int, routes: RouteTable
    ) -> None:
        self.dataplane = dataplane
        self.repository = dataplane.repository
        self.gate = gate
        self.max_body_size = max_body_size
        self.routes = routes
        #: OpenAI's endpoints (routes ``openai.*``, when the runtime speaks it).
        self.openai = OpenAIHandlers(dataplane, gate, self.body)

    async def body(self, req: HttpRequest) -> bytes:
        """The request body, inflated when it has a Content-Encoding (bounded by the limit)."""
        limit = self.max_body_size
        body = await read_body(req.receive, req.header(b"content-length"), limit)
        coding = req.header(b"content-encoding")
        if coding is None:
            return body
        if len(body) <= INLINE_INFLATE_BYTES:
            return encoding.decode(body, coding, limit)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, encoding.decode, body, coding, limit)

    async def json_body(self, req: HttpRequest, what: str) -> dict[str, Any]:
        """A JSON object body; an empty body is an empty object."""
        body = await self.body(req)
        return v2_rest.loads_object(body, what) if body.strip() else {}

    # -- health and server ---------------------------------------------------------

    async def live(self, req: HttpRequest) -> Reply:
        return 200, LIVE, JSON, []

    async def root(self, req: HttpRequest) -> Reply:
        return 200, ALIVE, JSON, []

    async def ready(self, req: HttpRequest) -> Reply:
        if self.dataplane.ready():
            return 200, READY, JSON, []
        return 400, NOT_READY, JSON, []

    async def server_metadata(self, req: HttpRequest) -> Reply:
        return 200, self.dataplane.server_metadata_json, JSON, []

    async def metrics(self, req: HttpRequest) -> Reply:
        from ...observability.metrics import exposition

        body, content_type = exposition()
        return 200, body, content_type.encode(), []

    # -- v2 models -------------------------------------------------------------------

    async def model_metadata(self, req: HttpRequest) -> Reply:
        return 200, self.dataplane.model_metadata_json(req.name, req.version), JSON, []

    async def model_ready(self, req: HttpRequest) -> Reply:
        is_ready = self.dataplane.model_ready(req.name, req.version)
        body = orjson.dumps({"name": req.name, "ready": is_ready})
        return (200 if is_ready else 400), body, JSON, []

    async def infer_v2(self, req: HttpRequest) -> Reply:
        ctx = RequestContext("v2-rest")
        return await self.gate.serve(
            req.name, ctx, partial(self._infer_v2, req), headers=req.headers
        )

    async def _infer_v2(self, req: HttpRequest, ctx: RequestContext) -> Reply:
        name, version = req.name, req.version
        served = self.repository.get_ready(name, version)
        body = await self.body(req)
        ctx.disconnected = partial(wait_for_disconnect, req.receive)
        trace = ctx.trace
        t0 = time.time_ns() if trace is not None else 0
        json_length = v2_rest.parse_header_length(req.header(HEADER_LENGTH), len(body))
        registry = self.dataplane.shared_memory
        request = await self.dataplane.decoder.decode(
            _decode_size(body, json_length),
            v2_rest.decode_infer_request,
            body,
            json_length,
            name,
            version,
            registry.read if registry is not None else None,
            served.max_inputs,
        )
        if trace is not None:
            trace.phase("decode", t0, time.time_ns())
        response = await self.dataplane.infer(request, ctx)
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

    # -- KServe v1 -----------------------------------------------------------------------

    async def v1_models(self, req: HttpRequest) -> Reply:
        """KServe's list; with OpenAI's protocol served, also OpenAI's (``object``, ``data``)."""
        body: dict[str, Any] = {"models": list(self.repository.models)}
        if OPENAI in self.dataplane.protocols:
            body.update(self.openai.listing())
        return json_reply(body)

    async def v1_model(self, req: HttpRequest) -> Reply:
        """KServe's status; with OpenAI's protocol served, also OpenAI's model object."""
        name = req.name
        model = self.repository.get(name)
        extra = self.openai.entry(name) if OPENAI in self.dataplane.protocols else {}
        if model.ready and not self.dataplane.draining:
            return json_reply({"name": name, "ready": True, **extra})
        return json_reply(
            {
                "error": f"Model with name {name} is not ready.",
                "name": name,
                "ready": False,
                **extra,
            },
            503,
        )

    async def predict_v1(self, req: HttpRequest) -> Reply:
        ctx = RequestContext("v1-rest")
        return await self.gate.serve(
            req.name, ctx, partial(self._predict_v1, req), headers=req.headers
        )

    async def _predict_v1(self, req: HttpRequest, ctx: RequestContext) -> Reply:
        out = await self._infer_with(
            req, ctx, req.name, v1.decode_predict_request, v1.encode_predict_response
        )
        return 200, out, JSON, []

    async def _infer_with(
        self,
        req: HttpRequest,
        ctx: RequestContext,
        name: str,
        decode: Callable[..., InferRequest],
        encode: Callable[[InferResponse], bytes],
        *options: Any,
    ) -> bytes:
        """A JSON protocol's inference: read, decode, infer, encode (each phase traced).

        ``decode(body, *options, name, max_inputs)``, a module-level function
        (a large body is decoded in the decoding process).
        """
        served = self.repository.get_ready(name)
        body = await self.body(req)
        ctx.disconnected = partial(wait_for_disconnect, req.receive)
        trace = ctx.trace
        t0 = time.time_ns() if trace is not None else 0
        request = await self.dataplane.decoder.decode(
            len(body), decode, body, *options, name, served.max_inputs
        )
        if trace is not None:
            trace.phase("decode", t0, time.time_ns())
        response = await self.dataplane.infer(request, ctx)
        t2 = time.time_ns() if trace is not None else 0
        out = encode(response)
        if trace is not None:
            trace.phase("encode", t2, time.time_ns())
        return out

    async def explain_v1(self, req: HttpRequest) -> Reply:
        ctx = RequestContext("v1-explain")
        return await self.gate.serve(
            req.name, ctx, partial(self._explain_v1, req), headers=req.headers
        )

    async def _explain_v1(self, req: HttpRequest, ctx: RequestContext) -> Reply:
        """A v1 predict body answered with the model's contributions, one object per row.

        501 (before the body is read) for a model that declared none.
        """
        explainer = self.repository.get_ready(req.name).explainer()
        encode = partial(v1.encode_explain_response, explainer=explainer)
        out = await self._infer_with(req, ctx, req.name, v1.decode_explain_request, encode)
        return 200, out, JSON, []

    # -- MLflow's scoring server (Model.protocols has "mlflow") ------------------------------

    async def invocations(self, req: HttpRequest) -> Reply:
        name = self._only_model()
        ctx = RequestContext("mlflow-rest")
        return await self.gate.serve(
            name, ctx, partial(self._invocations, req, name), headers=req.headers
        )

    async def _invocations(self, req: HttpRequest, name: str, ctx: RequestContext) -> Reply:
        content_type = req.header(b"content-type")
        mlflow.media_type(content_type)  # 415 before the body is read
        out = await self._infer_with(
            req,
            ctx,
            name,
            mlflow.decode_invocations_request,
            mlflow.encode_invocations_response,
            content_type,
        )
        return 200, out, JSON, []

    def _only_model(self) -> str:
        """The model /invocations scores: MLflow's protocol names none, so there must be one."""
        names = list(self.repository.models)
        if len(names) != 1:
            raise InvalidInput(
                f"/invocations scores the server's only model, but it serves {len(names)}: "
                f"{', '.join(names)}; use /v2/models/{{name}}/infer (or /v1/models/{{name}}"
                ":predict) for each"
            )
        return names[0]

    async def ping(self, req: HttpRequest) -> Reply:
        return (200 if self.dataplane.ready() else 503), PING, JSON, []

    # -- repository extension ----------------------------------------------------------

    async def repository_index(self, req: HttpRequest) -> Reply:
        ready = (await self.json_body(req, "index request")).get("ready", False)
        if not isinstance(ready, bool):
            raise InvalidInput("'ready' in an index request must be true or false")
        ready_only = ready
        return json_reply(self.dataplane.repository_index(ready_only))

    async def repository_load(self, req: HttpRequest) -> Reply:
        parameters = (await self.json_body(req, "load request")).get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise InvalidInput("'parameters' of a load request must be a JSON object")
        await self.dataplane.load(req.name, parameters)
        return 200, b"", JSON, []

    async def repository_unload(self, req: HttpRequest) -> Reply:
        await self.dataplane.unload(req.name)
        return 200, b"", JSON, []

    # -- statistics and model configuration (Triton's extensions) ------------------------

    async def statistics(self, req: HttpRequest) -> Reply:
        return json_reply(self.dataplane.statistics(req.params.get("name"), req.version))

    async def model_config(self, req: HttpRequest) -> Reply:
        return json_reply(self.dataplane.model_config(req.name, req.version))

    # -- system shared memory (Triton's extension) -----------------------------------------

    async def shared_memory_status(self, req: HttpRequest) -> Reply:
        return json_reply(self.dataplane.shared_memory_status(req.params.get("region")))

    async def shared_memory_register(self, req: HttpRequest) -> Reply:
        body = await self.json_body(req, "register request")
        self.dataplane.register_shared_memory(
            req.params.get("region") or "",
            body.get("key"),
            body.get("offset", 0),
            body.get("byte_size"),
        )
        return 200, b"", JSON, []

    async def shared_memory_unregister(self, req: HttpRequest) -> Reply:
        self.dataplane.unregister_shared_memory(req.params.get("region"))
        return 200, b"", JSON, []

    # -- documentation (--enable_docs_url) -------------------------------------------------

    async def openapi(self, req: HttpRequest) -> Reply:
        return json_reply(self.routes.openapi(self.dataplane.server_name, __version__))

    async def docs(self, req: HttpRequest) -> Reply:
        return 200, DOCS_PAGE, b"text/html; charset=utf-8", []


#: Swagger UI over /openapi.json (its script and style from the jsDelivr CDN).
DOCS_PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>modelserver API</title>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css">
</head><body><div id="ui"></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script>
</body></html>
"""

"""TF Serving's REST endpoints (the ``tfserving`` dialect of the route table).

``POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict|:classify|:regress``
and ``GET /v1/models/{name}[/versions/{v}|/labels/{l}][/metadata]``, answered
as TensorFlow Serving answers them. Inference goes through the gate like
every other protocol's; errors leave through the app's one error mapping as
``{"error": "..."}``, with the statuses TF Serving gives the same failures.
"""

from __future__ import annotations

import time
from functools import partial

import orjson

from ...codecs import tfs_rest
from ...codecs import tfserving as codec
from ...dataplane.context import RequestContext
from ...dataplane.served import ServedModel
from .. import tfserving as ops
from .handlers import JSON, Handlers, HttpRequest, Reply, json_reply, wait_for_disconnect

PROTOCOL = "tfs-rest"


class TFServingHandlers:
    """TF Serving's REST endpoints over the same data plane and gate as the others."""

    def __init__(self, handlers: Handlers) -> None:
        self.handlers = handlers
        self.dataplane = handlers.dataplane
        self.gate = handlers.gate

    def _served(self, req: HttpRequest) -> ServedModel:
        return self.dataplane.model_at(req.name, req.version, req.params.get("label"))

    # -- inference -----------------------------------------------------------------------

    async def tfs_predict(self, req: HttpRequest) -> Reply:
        ctx = RequestContext(PROTOCOL)
        return await self.gate.serve(
            req.name, ctx, partial(self._predict, req), headers=req.headers
        )

    async def _predict(self, req: HttpRequest, ctx: RequestContext) -> Reply:
        served = self._served(req)
        self.dataplane.repository.get_ready(served.name, served.version)
        body = await self.handlers.body(req)
        ctx.disconnected = partial(wait_for_disconnect, req.receive)
        trace = ctx.trace
        t0 = time.time_ns() if trace is not None else 0
        decoded = tfs_rest.decode_predict(body, partial(ops.input_types, served))
        if trace is not None:
            trace.phase("decode", t0, time.time_ns())
        response, _ = await ops.predict(
            self.dataplane, served, decoded.signature_name, decoded.inputs, None, ctx
        )
        t2 = time.time_ns() if trace is not None else 0
        out = tfs_rest.encode_predict(response, decoded.rows)
        if trace is not None:
            trace.phase("encode", t2, time.time_ns())
        return 200, out, JSON, []

    async def tfs_classify(self, req: HttpRequest) -> Reply:
        return await self._examples(req, "classify")

    async def tfs_regress(self, req: HttpRequest) -> Reply:
        return await self._examples(req, "regress")

    async def _examples(self, req: HttpRequest, kind: str) -> Reply:
        ctx = RequestContext(PROTOCOL)
        return await self.gate.serve(
            req.name, ctx, partial(self._run_examples, req, kind), headers=req.headers
        )

    async def _run_examples(self, req: HttpRequest, kind: str, ctx: RequestContext) -> Reply:
        served = self._served(req)
        self.dataplane.repository.get_ready(served.name, served.version)
        body = await self.handlers.body(req)
        ctx.disconnected = partial(wait_for_disconnect, req.receive)
        decoded = tfs_rest.decode_examples(body, kind)
        results, _ = await ops.infer_examples(
            self.dataplane, served, kind, decoded.signature_name, decoded.input, ctx
        )
        if kind == "classify":
            return 200, tfs_rest.encode_classifications(results), JSON, []
        return 200, tfs_rest.encode_regressions(results), JSON, []

    # -- status and metadata -------------------------------------------------------------

    async def tfs_status(self, req: HttpRequest) -> Reply:
        """Every version's state, or the one named (TF Serving's GetModelStatusResponse)."""
        if req.version is None and req.params.get("label") is None:
            models = ops.all_versions(self.dataplane.model(req.name))
        else:
            models = [self._served(req)]
        return json_reply(codec.as_json_dict(ops.status(models)))

    async def tfs_metadata(self, req: HttpRequest) -> Reply:
        """The signature map of the model at that version (GetModelMetadataResponse)."""
        served = self._served(req)
        self.dataplane.repository.get_ready(served.name, served.version)
        return 200, orjson.dumps(ops.metadata_json(served)), JSON, []

"""TF Serving's gRPC services: ``tensorflow.serving.PredictionService`` and ``ModelService``.

Served on the same port as the Open Inference Protocol's service by
runtimes of the ``tfserving`` dialect: Predict (TensorProto in and out),
Classify and Regress (tf.Examples in), GetModelMetadata (the signature map,
packed in an ``Any``) and GetModelStatus. Messages come from the private
pool of ``modelserver.protos.tfserving``; every RPC goes through the same
guard as the v2 service (parse errors are INVALID_ARGUMENT, our errors keep
their status, anything else is INTERNAL and logged).
"""

from __future__ import annotations

import functools
from typing import Any

import grpc

from ...codecs import tfs_grpc
from ...dataplane.context import RequestContext
from ...dataplane.dataplane import DataPlane
from ...dataplane.gate import InferenceGate
from ...dataplane.served import ServedModel
from ...errors import InvalidInput
from ...observability import tracing
from ...protos import tfserving as tfs
from .. import tfserving as ops
from .servicer import _metadata, service_handler

PROTOCOL = "tfs-grpc"


def _served(dataplane: DataPlane, spec: Any) -> ServedModel:
    """The model a ModelSpec names: at its version, its version label, or the latest."""
    if not spec.name:
        raise InvalidInput("Missing model name in request.")
    choice = spec.WhichOneof("version_choice")
    version = str(spec.version.value) if choice == "version" else None
    label = spec.version_label if choice == "version_label" else None
    return dataplane.model_at(spec.name, version, label)


class TFServingServicer:
    """The RPCs of PredictionService and ModelService over a data plane."""

    def __init__(self, dataplane: DataPlane, gate: InferenceGate) -> None:
        self.dataplane = dataplane
        self.gate = gate

    async def _serve(self, request: Any, context: Any, work: Any) -> Any:
        return await self.gate.serve(
            request.model_spec.name,
            RequestContext(PROTOCOL),
            functools.partial(work, request),
            grpc_status=True,
            deadline_s=context.time_remaining(),
            headers=_metadata(context) if tracing.enabled() else (),
        )

    def _ready(self, spec: Any) -> ServedModel:
        served = _served(self.dataplane, spec)
        self.dataplane.repository.get_ready(served.name, served.version)
        return served

    async def Predict(self, request: Any, context: Any) -> Any:
        return await self._serve(request, context, self._predict)

    async def _predict(self, request: Any, ctx: RequestContext) -> Any:
        served = self._ready(request.model_spec)
        inputs = tfs_grpc.predict_inputs(request)
        response, signature = await ops.predict(
            self.dataplane,
            served,
            request.model_spec.signature_name,
            inputs,
            tfs_grpc.output_filter(request),
            ctx,
        )
        return tfs_grpc.predict_response(
            response, signature, raw=tfs_grpc.uses_tensor_content(request)
        )

    async def Classify(self, request: Any, context: Any) -> Any:
        return await self._serve(request, context, functools.partial(self._examples, "classify"))

    async def Regress(self, request: Any, context: Any) -> Any:
        return await self._serve(request, context, functools.partial(self._examples, "regress"))

    async def _examples(self, kind: str, request: Any, ctx: RequestContext) -> Any:
        served = self._ready(request.model_spec)
        results, signature = await ops.infer_examples(
            self.dataplane, served, kind, request.model_spec.signature_name, request.input, ctx
        )
        if kind == "classify":
            classified = tfs.ClassificationResponse()
            for row in results:
                entry = classified.result.classifications.add()
                for label, score in row:
                    entry.classes.add(label=label, score=score)
            response = classified
        else:
            response = tfs.RegressionResponse()
            for value in results:
                response.result.regressions.add(value=value)
        tfs_grpc.fill_model_spec(response.model_spec, served.name, served.version, signature)
        return response

    async def GetModelMetadata(self, request: Any, context: Any) -> Any:
        served = self._ready(request.model_spec)
        return ops.metadata(served, list(request.metadata_field))

    async def GetModelStatus(self, request: Any, context: Any) -> Any:
        spec = request.model_spec
        if spec.WhichOneof("version_choice") is None:
            if not spec.name:
                raise InvalidInput("Missing model name in request.")
            return ops.status(ops.all_versions(self.dataplane.model(spec.name)))
        return ops.status([_served(self.dataplane, spec)])


def tfserving_handlers(dataplane: DataPlane, gate: InferenceGate) -> list[grpc.GenericRpcHandler]:
    """Handlers serving every RPC of PredictionService and ModelService."""
    servicer = TFServingServicer(dataplane, gate)
    return [
        service_handler(service, servicer, tfs.message_class, gate.policy)
        for service in (tfs.PREDICTION_SERVICE, tfs.MODEL_SERVICE)
    ]

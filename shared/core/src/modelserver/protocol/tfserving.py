"""TF Serving's operations over the data plane, shared by its REST and gRPC transports.

Each takes what the transport decoded (a served model at the version the
request named, a signature name, tensors or tf.Examples) and returns what
the transport encodes. Inference goes through ``DataPlane.infer`` like every
other protocol's, so batching, metrics, output selection and errors are the
same; the signature travels as the ``signature_name`` parameter.
"""

from __future__ import annotations

from typing import Any

from ..codecs import tfserving as codec
from ..dataplane.context import RequestContext
from ..dataplane.dataplane import DataPlane
from ..dataplane.served import ServedModel
from ..errors import InvalidInput, ModelNotImplemented
from ..model.tensor import SIGNATURE_PARAMETER, TensorModel
from ..protos import tfserving as tfs
from ..types import InferRequest, InferResponse, RequestedOutput, Tensor


def _tensor_model(served: ServedModel) -> TensorModel:
    model = served.require_model()
    if not isinstance(model, TensorModel):
        raise ModelNotImplemented(
            f"Model {served.name} declares no signatures: TF Serving's API needs a TensorModel"
        )
    return model


def signatures_of(served: ServedModel) -> dict[str, TensorModel]:
    """The model's signatures by name (a model without any is its default one)."""
    model = _tensor_model(served)
    return dict(model.signatures) or {model.default_signature: model}


def signature_of(served: ServedModel, name: str) -> tuple[str, TensorModel]:
    """The signature a request names (empty: the default), with its effective name."""
    model = _tensor_model(served)
    return name or model.default_signature, model.signature(name)


def input_types(served: ServedModel, name: str) -> dict[str, str]:
    """A signature's inputs as name -> datatype (what TF Serving's JSON decoding is typed by)."""
    _, signature = signature_of(served, name)
    return {spec.name: spec.datatype for spec in signature.input_specs}


async def predict(
    dataplane: DataPlane,
    served: ServedModel,
    signature_name: str,
    inputs: list[Tensor],
    outputs: list[RequestedOutput] | None,
    ctx: RequestContext,
) -> tuple[InferResponse, str]:
    """Run a signature on named tensors; the response and the signature's effective name."""
    effective, _ = signature_of(served, signature_name)
    request = InferRequest(
        model_name=served.name,
        model_version=served.version,
        inputs=inputs,
        outputs=outputs,
        parameters={SIGNATURE_PARAMETER: effective},
    )
    return await dataplane.infer(request, ctx), effective


async def infer_examples(
    dataplane: DataPlane,
    served: ServedModel,
    kind: str,
    signature_name: str,
    input_message: Any,
    ctx: RequestContext,
) -> tuple[list[Any], str]:
    """``classify`` or ``regress``: the per-example results and the signature's effective name.

    Classifications are lists of (label, score); regressions are floats.
    """
    effective, signature = signature_of(served, signature_name)
    input_name, output_names = codec.examples_signature(kind, signature)
    examples = codec.serialized_examples(input_message)
    tensor = Tensor(input_name, "BYTES", (len(examples),), examples)
    request = InferRequest(
        model_name=served.name,
        model_version=served.version,
        inputs=[tensor],
        outputs=[RequestedOutput(n) for n in output_names],
        parameters={SIGNATURE_PARAMETER: effective},
    )
    response = await dataplane.infer(request, ctx)
    by_name = {t.name: t for t in response.outputs}
    results: list[Any]
    if kind == "classify":
        results = list(codec.classifications(by_name, len(examples)))
    else:
        results = list(codec.regressions(by_name, len(examples)))
    return results, effective


def metadata(served: ServedModel, fields: list[str]) -> Any:
    """GetModelMetadataResponse: the signature map of the model at that version."""
    if not fields:
        raise InvalidInput("GetModelMetadataRequest must specify at least one metadata_field")
    for field in fields:
        if field != codec.SIGNATURE_DEF_FIELD:
            raise InvalidInput(f"Metadata field {field} is not supported")
    signatures = signatures_of(served)
    response = tfs.GetModelMetadataResponse()
    response.model_spec.name = served.name
    if served.version.isdigit():
        response.model_spec.version.value = int(served.version)
    packed = response.metadata[codec.SIGNATURE_DEF_FIELD]
    packed.type_url = tfs.SIGNATURE_DEF_MAP_URL
    packed.value = codec.signature_def_map(signatures).SerializeToString()
    return response


def metadata_json(served: ServedModel) -> dict[str, Any]:
    """The REST metadata body: the model spec and the signature map as JSON."""
    response = metadata(served, [codec.SIGNATURE_DEF_FIELD])
    signatures = signatures_of(served)
    return {
        "model_spec": codec.as_json_dict(response.model_spec),
        "metadata": {
            codec.SIGNATURE_DEF_FIELD: codec.as_json_dict(codec.signature_def_map(signatures))
        },
    }


def status(models: list[ServedModel]) -> Any:
    """GetModelStatusResponse of these versions of a model."""
    return codec.model_status([(m.version, m.state.value, m.reason) for m in models])


def all_versions(served: ServedModel) -> list[ServedModel]:
    """Every version served under the model's name, oldest first."""
    return [*served.older.values(), served]

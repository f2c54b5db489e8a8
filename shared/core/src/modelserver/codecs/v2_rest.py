"""Open Inference Protocol v2 over REST: JSON bodies and the binary tensor extension.

``decode_infer_request`` takes the raw body (and the value of the
``Inference-Header-Content-Length`` header when present) and gives an
``InferRequest`` or raises ``InvalidInput``; ``encode_infer_response`` gives
the body bytes and, when any output is binary, the JSON header's length.
Inputs in Triton's shared memory are read through the reader the caller
passes (the data plane's registry); outputs the data plane wrote there are
answered without data.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import InvalidInput
from ..types import InferRequest, InferResponse, RequestedOutput, Tensor
from .tensor_data import (
    SHM_REGION,
    SharedMemoryReader,
    array_from_json,
    array_from_raw,
    array_from_shared_memory,
    array_to_json,
    array_to_raw,
    check_datatype,
    check_input_count,
    check_shape,
    shared_memory_ref,
    without_shared_memory,
)

HEADER_LENGTH = "inference-header-content-length"
JSON_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def loads_object(body: bytes | memoryview, what: str = "request body") -> dict[str, Any]:
    """Parse a JSON object, turning every parse failure into InvalidInput."""
    if not body:
        raise InvalidInput(f"Empty {what}: expected a JSON object")
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"Malformed JSON in {what}: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidInput(f"The {what} must be a JSON object, got {type(obj).__name__}")
    return obj


def parse_header_length(value: str | None, body_length: int) -> int | None:
    """Validate the Inference-Header-Content-Length header against the body."""
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise InvalidInput(
            f"Inference-Header-Content-Length '{value}' is not a non-negative decimal integer"
        )
    length = int(value)
    if length > body_length:
        raise InvalidInput(
            f"Inference-Header-Content-Length {length} is outside the body of {body_length} bytes"
        )
    return length


def _parameters(obj: dict[str, Any], where: str) -> dict[str, Any]:
    params = obj.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InvalidInput(f"'parameters' of {where} must be a JSON object")
    return params


def decode_infer_request(
    body: bytes,
    header_length: int | None,
    model_name: str,
    model_version: str | None = None,
    shared_memory: SharedMemoryReader | None = None,
    max_inputs: int | None = None,
) -> InferRequest:
    """Decode a v2 inference request body (JSON, or JSON plus binary tensors).

    More than ``max_inputs`` inputs are refused before any is looked at.
    """
    header: bytes | memoryview
    if header_length is None:
        header, binary = body, memoryview(b"")
    else:
        view = memoryview(body)
        header, binary = view[:header_length], view[header_length:]
    obj = loads_object(header, "inference request")
    inputs_obj = obj.get("inputs")
    if not isinstance(inputs_obj, list) or not inputs_obj:
        raise InvalidInput("Inference request must have a non-empty 'inputs' list")
    check_input_count(len(inputs_obj), max_inputs, model_name)
    request_id = obj.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("Inference request 'id' must be a string")

    offset = 0
    inputs: list[Tensor] = []
    seen: set[str] = set()
    for index, item in enumerate(inputs_obj):
        if not isinstance(item, dict):
            raise InvalidInput(f"Input {index} must be a JSON object")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidInput(f"Input {index} must have a non-empty string 'name'")
        if name in seen:
            raise InvalidInput(f"Input '{name}' appears more than once")
        seen.add(name)
        if "datatype" not in item:
            raise InvalidInput(f"Input '{name}' is missing 'datatype'")
        if "shape" not in item:
            raise InvalidInput(f"Input '{name}' is missing 'shape'")
        datatype = item["datatype"]
        check_datatype(datatype, name)
        shape, count = check_shape(item["shape"], name)
        params = _parameters(item, f"input '{name}'")
        ref = shared_memory_ref(params, name)
        if ref is not None:
            if "data" in item or "binary_data_size" in params:
                raise InvalidInput(f"Input '{name}' has data as well as a shared memory region")
            data = array_from_shared_memory(ref, shared_memory, datatype, shape, count)
            params = without_shared_memory(params)
        elif "binary_data_size" in params:
            size = params["binary_data_size"]
            if type(size) is not int or size < 0:
                raise InvalidInput(
                    f"Input '{name}': binary_data_size must be a non-negative integer"
                )
            if "data" in item:
                raise InvalidInput(f"Input '{name}' has both 'data' and binary_data_size")
            if offset + size > len(binary):
                raise InvalidInput(
                    f"Input '{name}': binary_data_size {size} runs past the binary data "
                    f"({len(binary) - offset} bytes left)"
                )
            data = array_from_raw(binary[offset : offset + size], datatype, shape, count, name)
            offset += size
            params = {k: v for k, v in params.items() if k != "binary_data_size"}
        else:
            if "data" not in item:
                raise InvalidInput(f"Input '{name}' is missing 'data'")
            data = array_from_json(item["data"], datatype, shape, count, name)
        inputs.append(Tensor(name, datatype, shape, data, params))
    if offset != len(binary):
        raise InvalidInput(
            f"Binary data holds {len(binary)} bytes but the inputs' binary_data_size "
            f"add up to {offset}"
        )

    outputs = None
    outputs_obj = obj.get("outputs")
    if outputs_obj is not None:
        if not isinstance(outputs_obj, list):
            raise InvalidInput("'outputs' must be a list")
        outputs = []
        for index, item in enumerate(outputs_obj):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise InvalidInput(
                    f"Requested output {index} must be an object with a string 'name'"
                )
            outputs.append(
                RequestedOutput(item["name"], _parameters(item, f"output {item['name']}"))
            )
    return InferRequest(
        model_name=model_name,
        model_version=model_version,
        id=request_id,
        inputs=inputs,
        outputs=outputs,
        parameters=_parameters(obj, "the request"),
    )


def _wants_binary(tensor_name: str, request: InferRequest | None) -> bool:
    if request is None:
        return False
    default = bool(request.parameters.get("binary_data_output", False))
    if request.outputs:
        for out in request.outputs:
            if out.name == tensor_name and "binary_data" in out.parameters:
                return bool(out.parameters["binary_data"])
    return default


def encode_infer_response(
    response: InferResponse, request: InferRequest | None = None
) -> tuple[bytes, int | None]:
    """Encode a response as JSON, or JSON header plus binary outputs when asked.

    Returns the body and the JSON header's length (None when nothing is binary).
    """
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for tensor in response.outputs:
        out: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.shape),
        }
        if SHM_REGION in tensor.parameters:
            out["parameters"] = tensor.parameters  # written to shared memory: no data
        elif _wants_binary(tensor.name, request):
            raw = array_to_raw(tensor.data, tensor.datatype)
            out["parameters"] = {**tensor.parameters, "binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            if tensor.parameters:
                out["parameters"] = tensor.parameters
            out["data"] = array_to_json(tensor.data, tensor.datatype)
        outputs.append(out)
    obj: dict[str, Any] = {"model_name": response.model_name}
    if response.model_version:
        obj["model_version"] = response.model_version
    if response.id is not None:
        obj["id"] = response.id
    if response.parameters:
        obj["parameters"] = response.parameters
    obj["outputs"] = outputs
    header = orjson.dumps(obj, option=JSON_DUMPS_OPTIONS)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


def encode_infer_request_json(request: InferRequest) -> bytes:
    """A request as v2 JSON (all tensors inline): what the payload logger sends."""
    obj: dict[str, Any] = {}
    if request.id is not None:
        obj["id"] = request.id
    if request.parameters:
        obj["parameters"] = request.parameters
    obj["inputs"] = [
        {
            "name": t.name,
            "datatype": t.datatype,
            "shape": list(t.shape),
            **({"parameters": t.parameters} if t.parameters else {}),
            "data": array_to_json(t.data, t.datatype),
        }
        for t in request.inputs
    ]
    if request.outputs:
        obj["outputs"] = [
            {"name": o.name, **({"parameters": o.parameters} if o.parameters else {})}
            for o in request.outputs
        ]
    return orjson.dumps(obj, option=JSON_DUMPS_OPTIONS)

"""MLServer's codecs and clients against a server: a JSON spec on stdin, decoded answers out.

Run by tests/interop with bench/.envs/mlserver's Python (mlserver 1.7.1). The
spec is ``{"calls": [...]}``; each call builds a request with one of
MLServer's codecs (``codec``: numpy, string, pandas, base64, datetime, from
``payload``), sends it over ``rest`` (its JSON, as MLServer's types dump
it) or ``grpc`` (MLServer's own stub and converters), and answers what the
request codec decodes from the response (``decoded``) with each output's
name, datatype, shape and parameters. Requests of single inputs (base64,
datetime) have no request codec: each output is decoded by the codec its own
content type names. An error is ``{"error": "..."}``.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from datetime import datetime
from typing import Any

import grpc
import numpy as np
import pandas as pd
from mlserver.codecs import (
    Base64Codec,
    DatetimeCodec,
    NumpyRequestCodec,
    PandasCodec,
    StringRequestCodec,
)
from mlserver.codecs.base import find_input_codec
from mlserver.grpc import dataplane_pb2_grpc
from mlserver.grpc.converters import ModelInferRequestConverter, ModelInferResponseConverter
from mlserver.types import InferenceRequest, InferenceResponse


def _request(codec: str, payload: Any) -> tuple[InferenceRequest, Any]:
    """The request MLServer's codec builds, and the request codec that reads the answer."""
    if codec == "numpy":
        array = np.asarray(payload["data"], dtype=payload["dtype"])
        return NumpyRequestCodec.encode_request(array), NumpyRequestCodec
    if codec == "string":
        return StringRequestCodec.encode_request(payload), StringRequestCodec
    if codec == "pandas":
        return PandasCodec.encode_request(pd.DataFrame(payload)), PandasCodec
    if codec == "base64":
        values = [bytes.fromhex(h) for h in payload]
        return InferenceRequest(inputs=[Base64Codec.encode_input("input-0", values)]), None
    if codec == "datetime":
        values = [datetime.fromisoformat(t) for t in payload]
        return InferenceRequest(inputs=[DatetimeCodec.encode_input("input-0", values)]), None
    raise ValueError(f"unknown codec {codec!r}")


def _decode(codec: Any, response: InferenceResponse) -> Any:
    if codec is not None:
        return codec.decode_response(response)
    decoded = {}
    for out in response.outputs:
        content_type = out.parameters.content_type if out.parameters else None
        decoded[out.name] = find_input_codec(content_type=content_type).decode_output(out)
    return decoded


def _plain(value: Any) -> Any:
    if isinstance(value, pd.DataFrame):
        return {str(k): _plain(v) for k, v in value.to_dict(orient="list").items()}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode()
    return value


def _rest(url: str, model: str, request: InferenceRequest) -> InferenceResponse:
    body = request.model_dump_json(exclude_none=True).encode()
    post = urllib.request.Request(
        f"{url}/v2/models/{model}/infer", body, {"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(post, timeout=60) as reply:
            return InferenceResponse.model_validate_json(reply.read())
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"HTTP {exc.code}: {exc.read().decode()}") from None


def _grpc(address: str, model: str, request: InferenceRequest) -> InferenceResponse:
    message = ModelInferRequestConverter.from_types(request, model_name=model)
    with grpc.insecure_channel(address) as channel:
        stub = dataplane_pb2_grpc.GRPCInferenceServiceStub(channel)
        answer = stub.ModelInfer(message, timeout=60)
    return ModelInferResponseConverter.to_types(answer)


def _call(call: dict[str, Any]) -> Any:
    request, codec = _request(call["codec"], call["payload"])
    if call["transport"] == "rest":
        response = _rest(call["url"], call["model"], request)
    else:
        response = _grpc(call["address"], call["model"], request)
    outputs = [
        {
            "name": out.name,
            "datatype": str(getattr(out.datatype, "value", out.datatype)),
            "shape": list(out.shape),
            "parameters": out.parameters.model_dump(exclude_none=True) if out.parameters else {},
        }
        for out in response.outputs
    ]
    return {
        "id": response.id,
        "outputs": outputs,
        "decoded": _plain(_decode(codec, response)),
    }


def main() -> None:
    spec = json.load(sys.stdin)
    answers = []
    for call in spec["calls"]:
        try:
            answers.append(_call(call))
        except Exception as exc:
            answers.append({"error": f"{type(exc).__name__}: {exc}"})
    json.dump(answers, sys.stdout)


if __name__ == "__main__":
    main()

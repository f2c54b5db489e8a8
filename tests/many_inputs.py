"""One request of many one-element named inputs, in each protocol (issue 17, item 2).

Shared by tests/e2e/test_many_inputs.py and bench/many_inputs.py: what the
request is, and how it is sent and answered.
"""

from __future__ import annotations

import grpc
import httpx
import orjson

GRPC_INFER = "/inference.GRPCInferenceService/ModelInfer"


def many_inputs(protocol: str, count: int, model: str) -> tuple[str, bytes]:
    """The path (or gRPC method) and the bytes of a request of ``count`` named inputs."""
    if protocol == "grpc":
        from modelserver import protos as pb

        msg = pb.ModelInferRequest(model_name=model)
        for i in range(count):
            tensor = msg.inputs.add(name=f"x{i}", datatype="FP64", shape=[1])
            tensor.contents.fp64_contents.append(1.0)
        return GRPC_INFER, msg.SerializeToString()
    if protocol == "v1":
        body = orjson.dumps({"inputs": {f"x{i}": [1.0] for i in range(count)}})
        return f"/v1/models/{model}:predict", body
    inputs = [
        {"name": f"x{i}", "shape": [1], "datatype": "FP64", "data": [1.0]} for i in range(count)
    ]
    return f"/v2/models/{model}/infer", orjson.dumps({"inputs": inputs})


def send(http_url: str, grpc_address: str, path: str, raw: bytes) -> tuple[str, str]:
    """Send it; the answer's status (an HTTP code or a gRPC code name) and message."""
    if path != GRPC_INFER:
        reply = httpx.post(
            f"{http_url}{path}",
            content=raw,
            headers={"content-type": "application/json"},
            timeout=300,
        )
        return str(reply.status_code), reply.text
    options = [("grpc.max_send_message_length", 200 * 2**20)]
    with grpc.insecure_channel(grpc_address, options=options) as channel:
        call = channel.unary_unary(path)
        try:
            call(raw, timeout=300)
            return "OK", ""
        except grpc.RpcError as exc:
            return exc.code().name, exc.details() or ""

"""One inference over each protocol with the real clients, for runtime tests.

Runtime tests compare what a server answers with what the framework predicts
in the test process, over every protocol. ``infer`` sends named numpy arrays
as a v2 request over REST JSON, REST with the binary tensor extension, or
gRPC (tritonclient), and returns the outputs as numpy arrays; ``v1_predict``
and ``v2_post`` are the raw httpx calls for v1 and for error checks.
"""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from modelserver.datatypes import datatype_of
from serverproc import ServerProcess

#: The three v2 paths every runtime serves.
PROTOCOLS = ("json", "binary", "grpc")


def datatype(array: np.ndarray) -> str:
    """The OIP datatype a numpy array travels as (the core's own mapping; objects: BYTES)."""
    return datatype_of(array.dtype)


def infer(
    server: ServerProcess,
    model: str,
    tensors: dict[str, np.ndarray],
    protocol: str,
    outputs: list[str] | None = None,
) -> dict[str, np.ndarray]:
    """``tensors`` as one v2 request over ``protocol``; output name -> array."""
    grpc = protocol == "grpc"
    module: Any = grpcclient if grpc else httpclient
    client = module.InferenceServerClient(server.grpc_address if grpc else server.http_address)
    binary = {} if grpc else {"binary_data": protocol == "binary"}
    inputs = []
    for name, array in tensors.items():
        tensor = module.InferInput(name, list(array.shape), datatype(array))
        tensor.set_data_from_numpy(array, **binary)
        inputs.append(tensor)
    requested = [module.InferRequestedOutput(n, **binary) for n in outputs] if outputs else None
    result = client.infer(model, inputs, outputs=requested)
    response = result.get_response(as_json=True) if grpc else result.get_response()
    return {o["name"]: result.as_numpy(o["name"]) for o in response["outputs"]}


def v1_predict(server: ServerProcess, model: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.http_url}/v1/models/{model}:predict", json=body, timeout=30)


def v2_post(server: ServerProcess, model: str, body: dict[str, Any]) -> httpx.Response:
    """A hand-written v2 JSON request (for bodies the clients would refuse to build)."""
    return httpx.post(f"{server.http_url}/v2/models/{model}/infer", json=body, timeout=30)


def assert_rejected(server: ServerProcess, model: str, body: dict[str, Any], reason: str) -> None:
    """The v2 JSON request is a 400 whose error names ``reason``."""
    reply = v2_post(server, model, body)
    assert reply.status_code == 400, reply.text
    assert reason in reply.json()["error"], reply.json()


def v2_metadata(server: ServerProcess, model: str) -> dict[str, Any]:
    reply = httpx.get(f"{server.http_url}/v2/models/{model}", timeout=30)
    assert reply.status_code == 200, reply.text
    return reply.json()


def assert_close(got: np.ndarray, want: np.ndarray) -> None:
    """Same shape and, for floats, equal to float32 precision; anything else exactly."""
    want = np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    if want.dtype.kind == "f":
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    else:
        assert got.tolist() == want.tolist()

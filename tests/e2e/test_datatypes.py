"""Every OIP datatype through every carrier, via a model that echoes its inputs.

The echo model (tests/models/echo_model.py) is served by the real core with
``python -m modelserver --model_class``, so what comes back is exactly what
the codecs decoded and re-encoded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from modelserver import protos as pb
from modelserver.codecs.v2_grpc import CONTENTS_FIELD
from serverproc import ServerProcess, grpc_output

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"

SAMPLES: dict[str, np.ndarray] = {
    "BOOL": np.array([[True, False, True], [False, False, True]]),
    "UINT8": np.array([[0, 1, 255]], dtype=np.uint8),
    "UINT16": np.array([0, 65535], dtype=np.uint16),
    "UINT32": np.array([[0], [4294967295]], dtype=np.uint32),
    "UINT64": np.array([0, 2**64 - 1], dtype=np.uint64),
    "INT8": np.array([-128, 0, 127], dtype=np.int8),
    "INT16": np.array([-32768, 32767], dtype=np.int16),
    "INT32": np.array([[-(2**31), 2**31 - 1]], dtype=np.int32),
    "INT64": np.array([-(2**63), 2**63 - 1], dtype=np.int64),
    "FP16": np.array([0.5, -1.25, 65504.0], dtype=np.float16),
    "FP32": np.array([[1.5, -2.25], [3.0e38, 1e-30]], dtype=np.float32),
    "FP64": np.array([1e300, -1.0 / 3.0], dtype=np.float64),
    "BYTES": np.array([b"hello", b"", "caf\u00e9".encode()], dtype=object),
}


@pytest.fixture(scope="module")
def echo_server(tmp_path_factory) -> Iterator[ServerProcess]:
    model_dir = tmp_path_factory.mktemp("echo")
    server = ServerProcess(
        "modelserver",
        ["--model_class=echo_model:EchoModel", "--model_name=echo", f"--model_dir={model_dir}"],
        env={"PYTHONPATH": str(MODELS_DIR)},
    )
    with server:
        yield server


def _check(datatype: str, got: np.ndarray) -> None:
    want = SAMPLES[datatype]
    assert got.shape == want.shape
    if datatype == "BYTES":
        # tritonclient gives str for JSON BYTES and bytes for binary ones.
        assert [x.encode() if isinstance(x, str) else bytes(x) for x in got.reshape(-1)] == list(
            want.reshape(-1)
        )
    else:
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("datatype", list(SAMPLES))
def test_http_round_trip(echo_server, datatype, binary):
    client = thttp.InferenceServerClient(echo_server.http_address)
    inp = thttp.InferInput("t", list(SAMPLES[datatype].shape), datatype)
    inp.set_data_from_numpy(SAMPLES[datatype], binary_data=binary)
    result = client.infer(
        "echo", [inp], outputs=[thttp.InferRequestedOutput("t", binary_data=binary)]
    )
    _check(datatype, result.as_numpy("t"))


def test_http_json_uint64_extremes(echo_server):
    body = {"inputs": [{"name": "t", "datatype": "UINT64", "shape": [2], "data": [0, 2**64 - 1]}]}
    r = httpx.post(f"{echo_server.http_url}/v2/models/echo/infer", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == [0, 2**64 - 1]


@pytest.mark.parametrize("datatype", list(SAMPLES))
def test_grpc_raw_round_trip(echo_server, datatype):
    client = tgrpc.InferenceServerClient(echo_server.grpc_address)
    inp = tgrpc.InferInput("t", list(SAMPLES[datatype].shape), datatype)
    inp.set_data_from_numpy(SAMPLES[datatype])
    result = client.infer("echo", [inp])
    _check(datatype, result.as_numpy("t"))


@pytest.mark.parametrize("datatype", [d for d in SAMPLES if d in CONTENTS_FIELD])
def test_grpc_typed_in_raw_out(echo_server, datatype):
    """Typed contents of every datatype read exactly; answered raw, as Triton answers."""
    sample = SAMPLES[datatype]
    request = pb.ModelInferRequest(model_name="echo")
    tensor = request.inputs.add(name="t", datatype=datatype, shape=list(sample.shape))
    getattr(tensor.contents, CONTENTS_FIELD[datatype]).extend(sample.reshape(-1).tolist())
    with grpc.insecure_channel(echo_server.grpc_address) as channel:
        infer = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        response = infer(request, timeout=10)
    (out,) = response.outputs
    assert out.datatype == datatype and tuple(out.shape) == sample.shape
    assert grpc_output(response) == sample.reshape(-1).tolist()


def test_several_inputs_and_request_parameters(echo_server):
    body = {
        "id": "many",
        "parameters": {"custom": "kept"},
        "inputs": [
            {"name": "a", "datatype": "INT32", "shape": [2, 2], "data": [1, 2, 3, 4]},
            {
                "name": "b",
                "datatype": "BYTES",
                "shape": [1],
                "data": ["x"],
                "parameters": {"content_type": "str"},
            },
        ],
        "outputs": [{"name": "b"}, {"name": "a"}],
    }
    r = httpx.post(f"{echo_server.http_url}/v2/models/echo/infer", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["id"] == "many"
    assert [(o["name"], o["shape"], o["data"]) for o in out["outputs"]] == [
        ("b", [1], ["x"]),
        ("a", [2, 2], [1, 2, 3, 4]),
    ]

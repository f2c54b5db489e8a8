"""End-to-end error handling against real sklearnserver processes.

Every bad request is checked against the architecture's error table (status
code, and for REST a body that is exactly ``{"error": "<message>"}``), and
every bad request is followed by a good one (two iris rows) whose predictions
must equal those of the same estimator loaded with joblib: a bad request must
never leave the server unable to serve.

REST is driven with httpx; gRPC with ``grpc`` directly and the server's own
message classes, so that messages tritonclient would refuse to build can be
sent.
"""

from __future__ import annotations

import json
import pickle
import random
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import joblib
import numpy as np
import pytest
from modelserver import protos as M
from serverproc import ServerProcess, grpc_output, run_to_exit

pytestmark = pytest.mark.e2e

INFER_V2 = "/v2/models/iris/infer"
PREDICT_V1 = "/v1/models/iris:predict"
GRPC_INFER = "/inference.GRPCInferenceService/ModelInfer"
SMALL_LIMIT = 1000
#: A declared-huge request must be refused without trying to honour the shape.
FAST_S = 2.0


# -- fixtures ------------------------------------------------------------------


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    """Two iris rows of different classes."""
    from sklearn.datasets import load_iris

    X, _ = load_iris(return_X_y=True)
    return X[[0, 100]].astype(np.float64)


@pytest.fixture(scope="module")
def expected(iris_dir: Path, rows: np.ndarray) -> list[int]:
    """What the served estimator must answer for ``rows``."""
    estimator = joblib.load(iris_dir / "model.joblib")
    return estimator.predict(rows).tolist()


@pytest.fixture(scope="module")
def http(iris_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=iris_server.http_url, timeout=10.0) as client:
        yield client


@pytest.fixture(scope="module")
def channel(iris_server: ServerProcess) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(iris_server.grpc_address)
    yield ch
    ch.close()


@pytest.fixture(scope="module")
def small_server(iris_dir: Path) -> Iterator[ServerProcess]:
    """iris with tiny REST body and gRPC message limits."""
    server = ServerProcess(
        "sklearnserver",
        [
            "--model_name=iris",
            f"--model_dir={iris_dir}",
            f"--max_body_size={SMALL_LIMIT}",
            f"--grpc_max_message_length={SMALL_LIMIT}",
        ],
    )
    with server:
        yield server


@pytest.fixture(scope="module")
def repo_root(sample_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the multi-model dir (iris, iris-pipeline): this module breaks its files."""
    root = tmp_path_factory.mktemp("repo") / "models"
    shutil.copytree(sample_models["iris"].parent, root)
    assert sorted(p.name for p in root.iterdir()) == ["iris", "iris-pipeline"]
    return root


@pytest.fixture(scope="module")
def repo_server(repo_root: Path) -> Iterator[ServerProcess]:
    """A dedicated multi-model server whose models this module unloads and breaks."""
    server = ServerProcess("sklearnserver", ["--model_name=ignored", f"--model_dir={repo_root}"])
    with server:
        yield server


# -- helpers -------------------------------------------------------------------


def v2_body(rows: np.ndarray, **extra: Any) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "input-0",
                "shape": list(rows.shape),
                "datatype": "FP64",
                "data": rows.tolist(),
            }
        ],
        **extra,
    }


def encode(body: Any) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def assert_error(response: httpx.Response, status: int) -> str:
    """``status`` with a JSON body that is exactly ``{"error": <non-empty str>}``."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers.get("content-type", "").startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict) and list(body) == ["error"], body
    assert isinstance(body["error"], str) and body["error"].strip(), body
    return body["error"]


def assert_serves_v2(
    client: httpx.Client, rows: np.ndarray, expected: list[int], model: str = "iris"
) -> None:
    r = client.post(f"/v2/models/{model}/infer", json=v2_body(rows))
    assert r.status_code == 200, r.text
    out = r.json()["outputs"]
    assert [o["name"] for o in out] == ["predict"]
    assert out[0]["data"] == expected


def assert_serves_v1(client: httpx.Client, rows: np.ndarray, expected: list[int]) -> None:
    r = client.post(PREDICT_V1, json={"instances": rows.tolist()})
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": expected}


def grpc_infer(channel: grpc.Channel) -> Callable[..., Any]:
    return channel.unary_unary(
        GRPC_INFER,
        request_serializer=M.ModelInferRequest.SerializeToString,
        response_deserializer=M.ModelInferResponse.FromString,
    )


def good_grpc_request(rows: np.ndarray, model: str = "iris") -> Any:
    req = M.ModelInferRequest(model_name=model)
    tensor = req.inputs.add(name="input-0", datatype="FP64", shape=list(rows.shape))
    tensor.contents.fp64_contents.extend(rows.ravel().tolist())
    return req


def assert_serves_grpc(
    channel: grpc.Channel, rows: np.ndarray, expected: list[int], model: str = "iris"
) -> None:
    response = grpc_infer(channel)(good_grpc_request(rows, model), timeout=10)
    assert [o.name for o in response.outputs] == ["predict"]
    assert grpc_output(response) == expected


def grpc_code(channel: grpc.Channel, request: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        grpc_infer(channel)(request, timeout=10)
    return info.value.code(), info.value.details() or ""


_DROP = object()
GOOD = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


def tensor(
    shape: Any = (2, 4), datatype: Any = "FP64", data: Any = GOOD, **fields: Any
) -> dict[str, Any]:
    """One v2 JSON input, valid by default; ``_DROP`` for a field leaves it out."""
    t: dict[str, Any] = {"name": "input-0", "shape": shape, "datatype": datatype, "data": data}
    t.update(fields)
    return {k: v for k, v in t.items() if v is not _DROP}


def one(**kw: Any) -> dict[str, Any]:
    return {"inputs": [tensor(**kw)]}


# -- REST v2 JSON: 400 ----------------------------------------------------------

V2_BAD: dict[str, Any] = {
    # the body as a whole
    "malformed_json": b'{"inputs": [',
    "not_json": b"hello",
    "empty_body": b"",
    "whitespace_body": b"   \n",
    "json_array": b"[]",
    "json_array_of_request": [one()],
    "json_string": b'"inputs"',
    "json_number": b"42",
    "json_null": b"null",
    "not_utf8": b'{"inputs": "\xff\xfe"}',
    "utf8_bom": b"\xef\xbb\xbf" + encode(one()),
    "nan_literal": b'{"inputs":[{"name":"x","shape":[2,4],"datatype":"FP64",'
    b'"data":[1,2,3,4,5,6,7,NaN]}]}',
    "infinity_literal": b'{"inputs":[{"name":"x","shape":[2,4],"datatype":"FP64",'
    b'"data":[1,2,3,4,5,6,7,Infinity]}]}',
    # inputs
    "missing_inputs": {},
    "inputs_empty": {"inputs": []},
    "inputs_null": {"inputs": None},
    "inputs_object": {"inputs": tensor()},
    "inputs_item_number": {"inputs": [5]},
    "inputs_item_list": {"inputs": [[tensor()]]},
    "duplicate_input_names": {"inputs": [tensor(), tensor()]},
    # name
    "missing_name": {"inputs": [{k: v for k, v in tensor().items() if k != "name"}]},
    "name_empty": {"inputs": [tensor(name="")]},
    "name_number": {"inputs": [tensor(name=5)]},
    "name_null": {"inputs": [tensor(name=None)]},
    # shape
    "missing_shape": one(shape=_DROP),
    "shape_string": one(shape="2,4"),
    "shape_int": one(shape=8),
    "shape_object": one(shape={"rows": 2, "cols": 4}),
    "shape_null": one(shape=None),
    "shape_strings": one(shape=["2", "4"]),
    "shape_floats": one(shape=[2.0, 4.0]),
    "shape_fractional": one(shape=[2.5, 4]),
    "shape_bool": one(shape=[True, 4]),
    "shape_nested": one(shape=[[2], [4]]),
    "shape_null_dim": one(shape=[None, 4]),
    "shape_rank_33": one(shape=[1] * 33, data=[1.0]),
    "negative_dim": one(shape=[-2, 4]),
    "negative_second_dim": one(shape=[2, -4]),
    "negative_both_dims": one(shape=[-2, -4]),
    "overflow_dim_2_63": one(shape=[2**63, 2]),
    "overflow_dim_2_64": one(shape=[2**64, 2]),
    "overflow_product": one(shape=[2**62, 2**62]),
    "overflow_product_wraps_to_8": one(shape=[2**63 + 4, 2]),
    # datatype
    "missing_datatype": one(datatype=_DROP),
    "datatype_number": one(datatype=11),
    "datatype_null": one(datatype=None),
    "datatype_list": one(datatype=["FP64"]),
    "unknown_datatype": one(datatype="FP128"),
    "lowercase_datatype": one(datatype="fp64"),
    "datatype_padded": one(datatype=" FP64"),
    "datatype_string_alias": one(datatype="STRING"),
    # data
    "missing_data": one(data=_DROP),
    "too_few_values": one(data=[5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2]),
    "too_many_values": one(data=[5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3, 1.0]),
    "shape_rows_disagree": one(shape=[3, 4]),
    "empty_data_for_shape": one(data=[]),
    "ragged_data": one(data=[[5.1, 3.5, 1.4], [6.7, 3.0, 5.2, 2.3, 1.0]]),
    "strings_for_numbers": one(data=[["a", "b", "c", "d"], ["e", "f", "g", "h"]]),
    "numeric_strings_for_numbers": one(data=[["5.1", "3.5", "1.4", "0.2"]] * 2),
    "one_string_among_numbers": one(data=[[5.1, 3.5, 1.4, "x"], [6.7, 3.0, 5.2, 2.3]]),
    "null_in_data": one(data=[[5.1, 3.5, 1.4, None], [6.7, 3.0, 5.2, 2.3]]),
    "object_in_data": one(data=[[5.1, 3.5, 1.4, {}], [6.7, 3.0, 5.2, 2.3]]),
    "booleans_for_fp64": one(data=[[True, False, True, False]] * 2),
    "data_object": one(data={"a": 1}),
    "data_string": one(shape=[1], data="5.1"),
    "fractional_for_int64": one(datatype="INT64"),
    "out_of_range_int8": one(datatype="INT8", data=[[1000, 1, 1, 1]] * 2),
    "negative_uint8": one(datatype="UINT8", data=[[-1, 1, 1, 1]] * 2),
    "out_of_range_int64": one(datatype="INT64", data=[[2**63, 1, 1, 1]] * 2),
    "numbers_for_bool": one(datatype="BOOL", data=[[1, 0, 1, 0]] * 2),
    "bytes_not_strings": one(datatype="BYTES", data=[[1, 2, 3, 4]] * 2),
    "bytes_for_numeric_model": one(datatype="BYTES", data=[["a", "b", "c", "d"]] * 2),
    "fp32_overflow": b'{"inputs":[{"name":"x","shape":[2,4],"datatype":"FP32",'
    b'"data":[1,2,3,4,5,6,7,1e300]}]}',
    # does not fit the model
    "three_features": one(shape=[2, 3], data=[[5.1, 3.5, 1.4], [6.7, 3.0, 5.2]]),
    "five_features": one(shape=[2, 5], data=[[5.1, 3.5, 1.4, 0.2, 1.0], [6.7, 3.0, 5.2, 2.3, 1.0]]),
    "one_feature_flat": one(shape=[8], data=[5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3]),
    "rank_3": one(shape=[1, 2, 4]),
    "zero_rows": one(shape=[0, 4], data=[]),
    "pd_content_type_2d": {"inputs": [tensor()], "parameters": {"content_type": "pd"}},
    # the rest of the request
    "id_number": {"inputs": [tensor()], "id": 5},
    "parameters_list": {"inputs": [tensor()], "parameters": [1]},
    "input_parameters_list": one(parameters=[1]),
    "unknown_output": {"inputs": [tensor()], "outputs": [{"name": "nope"}]},
    "unknown_output_among_known": {
        "inputs": [tensor()],
        "outputs": [{"name": "predict"}, {"name": "x"}],
    },
    "outputs_object": {"inputs": [tensor()], "outputs": {"name": "predict"}},
    "output_without_name": {"inputs": [tensor()], "outputs": [{}]},
    "output_name_number": {"inputs": [tensor()], "outputs": [{"name": 1}]},
    "output_parameters_list": {
        "inputs": [tensor()],
        "outputs": [{"name": "predict", "parameters": [1]}],
    },
}


@pytest.mark.parametrize("body", [pytest.param(v, id=k) for k, v in V2_BAD.items()])
def test_v2_bad_request_400(
    http: httpx.Client, rows: np.ndarray, expected: list[int], body: Any
) -> None:
    r = http.post(INFER_V2, content=encode(body), headers={"content-type": "application/json"})
    assert_error(r, 400)
    assert_serves_v2(http, rows, expected)


@pytest.mark.parametrize("path", [INFER_V2, "/v2/models/iris/versions/1/infer"])
@pytest.mark.parametrize(
    ("shape", "data"),
    [
        pytest.param([100000000, 100000000], [1.0, 2.0, 3.0, 4.0], id="1e8x1e8"),
        pytest.param([2**31, 2**31, 2**31], [1.0], id="2^93"),
        pytest.param([10**9, 4], GOOD, id="1e9x4"),
    ],
)
def test_v2_huge_declared_shape_is_refused_fast(
    http: httpx.Client,
    rows: np.ndarray,
    expected: list[int],
    path: str,
    shape: list[int],
    data: Any,
) -> None:
    start = time.perf_counter()
    r = http.post(path, json=one(shape=shape, data=data))
    elapsed = time.perf_counter() - start
    assert_error(r, 400)
    assert elapsed < FAST_S, f"{elapsed:.2f}s to refuse shape {shape}"
    assert_serves_v2(http, rows, expected)


# -- REST v2 binary extension: 400 -------------------------------------------------


_AUTO = object()


def _binary(
    rows: np.ndarray,
    size: Any = _AUTO,
    shape: Any = None,
    datatype: str = "FP64",
    blob: bytes | None = None,
    header_length: Any = _AUTO,
    **tensor_extra: Any,
) -> tuple[bytes, dict[str, str]]:
    """A binary-extension body (JSON header + raw tensor) and its headers.

    By default everything is consistent; each argument breaks one part:
    ``size`` the binary_data_size (None: no parameters at all), ``blob`` the
    raw bytes, ``header_length`` the Inference-Header-Content-Length value
    (None: header absent).
    """
    raw = rows.tobytes() if blob is None else blob
    item: dict[str, Any] = {
        "name": "input-0",
        "shape": list(rows.shape) if shape is None else shape,
        "datatype": datatype,
    }
    if size is not None:
        item["parameters"] = {"binary_data_size": len(raw) if size is _AUTO else size}
    item.update(tensor_extra)
    head = json.dumps({"inputs": [item]}).encode()
    headers = {"content-type": "application/octet-stream"}
    if header_length is _AUTO:
        headers["Inference-Header-Content-Length"] = str(len(head))
    elif header_length is not None:
        headers["Inference-Header-Content-Length"] = str(header_length)
    return head + raw, headers


def _past_body_by_one(rows: np.ndarray) -> tuple[bytes, dict[str, str]]:
    body, headers = _binary(rows)
    headers["Inference-Header-Content-Length"] = str(len(body) + 1)
    return body, headers


BinaryCase = Callable[[np.ndarray], tuple[bytes, dict[str, str]]]

BINARY_BAD: dict[str, BinaryCase] = {
    "header_length_past_body": lambda r: _binary(r, header_length=100000),
    "header_length_past_body_by_one": _past_body_by_one,
    "header_length_not_integer": lambda r: _binary(r, header_length="abc"),
    "header_length_float": lambda r: _binary(r, header_length="12.5"),
    "header_length_empty": lambda r: _binary(r, header_length=""),
    "header_length_negative": lambda r: _binary(r, header_length=-1),
    "header_length_very_negative": lambda r: _binary(r, header_length=-(2**70)),
    "header_length_huge": lambda r: _binary(r, header_length=2**70),
    "header_length_zero": lambda r: _binary(r, header_length=0),
    "header_length_cuts_json": lambda r: _binary(r, header_length=10),
    "header_length_missing": lambda r: _binary(r, header_length=None),
    "size_less_than_shape": lambda r: _binary(r, blob=r.tobytes()[:56]),
    "size_more_than_shape": lambda r: _binary(r, blob=r.tobytes() + b"\x00" * 8),
    "size_past_binary": lambda r: _binary(r, size=r.nbytes * 2),
    "size_zero_with_bytes_left": lambda r: _binary(r, size=0),
    "extra_trailing_bytes": lambda r: _binary(r, size=r.nbytes, blob=r.tobytes() + b"xxxx"),
    "one_byte_short": lambda r: _binary(r, size=r.nbytes, blob=r.tobytes()[:-1]),
    "size_negative": lambda r: _binary(r, size=-1),
    "size_string": lambda r: _binary(r, size=str(r.nbytes)),
    "size_float": lambda r: _binary(r, size=float(r.nbytes)),
    "size_bool": lambda r: _binary(r, size=True),
    "size_null": lambda r: _binary(r, parameters={"binary_data_size": None}),
    "no_size_and_no_data": lambda r: _binary(r, size=None),
    "data_and_size": lambda r: _binary(r, data=r.tolist()),
    "bool_size_disagrees_with_shape": lambda r: _binary(r, datatype="BOOL"),
    "fp32_size_disagrees_with_shape": lambda r: _binary(r, datatype="FP32"),
    "unknown_datatype": lambda r: _binary(r, datatype="FP128"),
    "negative_dim": lambda r: _binary(r, shape=[-2, 4]),
    "overflow_dim": lambda r: _binary(r, shape=[2**63, 2]),
    "huge_shape": lambda r: _binary(r, shape=[100000000, 100000000]),
    "bytes_element_past_end": lambda r: _binary(
        r, datatype="BYTES", shape=[2], blob=b"\x10\x00\x00\x00abcd"
    ),
    "bytes_truncated_length": lambda r: _binary(
        r, datatype="BYTES", shape=[2], blob=b"\x01\x00\x00\x00a\x01\x00"
    ),
    "bytes_too_many_elements": lambda r: _binary(
        r, datatype="BYTES", shape=[1], blob=b"\x01\x00\x00\x00a\x01\x00\x00\x00b"
    ),
    "three_features": lambda r: _binary(r, shape=[2, 3], blob=r[:, :3].tobytes()),
}


@pytest.mark.parametrize("case", [pytest.param(v, id=k) for k, v in BINARY_BAD.items()])
def test_v2_binary_bad_request_400(
    http: httpx.Client, rows: np.ndarray, expected: list[int], case: BinaryCase
) -> None:
    body, headers = case(rows)
    start = time.perf_counter()
    r = http.post(INFER_V2, content=body, headers=headers)
    assert_error(r, 400)
    assert time.perf_counter() - start < FAST_S
    assert_serves_v2(http, rows, expected)


def test_v2_binary_good_request_is_accepted(
    http: httpx.Client, rows: np.ndarray, expected: list[int]
) -> None:
    """The binary requests above differ from this valid one only in the broken part."""
    body, headers = _binary(rows)
    r = http.post(INFER_V2, content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == expected


# -- REST v1: 400 ------------------------------------------------------------------

V1_BAD: dict[str, Any] = {
    "malformed_json": b'{"instances": [[1, 2',
    "empty_body": b"",
    "json_array": b"[[5.1, 3.5, 1.4, 0.2]]",
    "json_null": b"null",
    "json_string": b'"instances"',
    "neither_instances_nor_inputs": {},
    "both_instances_and_inputs": {"instances": GOOD, "inputs": GOOD},
    "instances_string": {"instances": "5.1,3.5,1.4,0.2"},
    "instances_number": {"instances": 5.1},
    "instances_null": {"instances": None},
    "instances_object": {"instances": {"a": [1, 2]}},
    "instances_empty": {"instances": []},
    "inputs_object_empty": {"inputs": {}},
    "strings_for_numbers": {"instances": [["a", "b", "c", "d"]] * 2},
    "one_string_among_numbers": {"instances": [[5.1, 3.5, 1.4, "x"], [6.7, 3.0, 5.2, 2.3]]},
    "null_among_numbers": {"instances": [[5.1, 3.5, 1.4, None], [6.7, 3.0, 5.2, 2.3]]},
    "object_among_numbers": {"instances": [[5.1, 3.5, 1.4, {}], [6.7, 3.0, 5.2, 2.3]]},
    "ragged_rows": {"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0]]},
    "three_features": {"instances": [[5.1, 3.5, 1.4], [6.7, 3.0, 5.2]]},
    "five_features": {"instances": [[5.1, 3.5, 1.4, 0.2, 1], [6.7, 3.0, 5.2, 2.3, 1]]},
    "scalars": {"instances": [5.1, 3.5]},
    "empty_rows": {"instances": [[], []]},
    "rank_3": {"instances": [[[5.1, 3.5], [1.4, 0.2]]]},
    "objects_with_different_keys": {"instances": [{"a": 1}, {"b": 2}]},
    "objects_and_lists": {"instances": [{"a": 1}, [1, 2, 3, 4]]},
    "columns_of_different_lengths": {"inputs": {"a": [1, 2], "b": [1]}},
    "columns_for_numeric_model": {"inputs": {"a": [1, 2], "b": [3, 4]}},
    "parameters_list": {"instances": GOOD, "parameters": [1]},
    "unknown_output": {"instances": GOOD, "parameters": {"outputs": "nope"}},
    "outputs_empty": {"instances": GOOD, "parameters": {"outputs": []}},
    "outputs_number": {"instances": GOOD, "parameters": {"outputs": 1}},
    "pd_content_type_2d": {"instances": GOOD, "parameters": {"content_type": "pd"}},
}


@pytest.mark.parametrize("body", [pytest.param(v, id=k) for k, v in V1_BAD.items()])
def test_v1_bad_request_400(
    http: httpx.Client, rows: np.ndarray, expected: list[int], body: Any
) -> None:
    r = http.post(PREDICT_V1, content=encode(body), headers={"content-type": "application/json"})
    assert_error(r, 400)
    assert_serves_v1(http, rows, expected)


# -- REST: 404, 405 and other routes ---------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        pytest.param("POST", "/v2/models/nope/infer", "GOOD_V2", 404, id="v2_unknown_model"),
        pytest.param("POST", "/v2/models/nope/infer", b"{bad", 404, id="v2_unknown_model_bad_body"),
        pytest.param(
            "POST",
            "/v2/models/nope/versions/1/infer",
            "GOOD_V2",
            404,
            id="v2_unknown_model_version",
        ),
        pytest.param(
            "POST", "/v2/models/iris/versions/99/infer", "GOOD_V2", 404, id="v2_unknown_version"
        ),
        pytest.param("POST", "/v2/models/iris/versions/0/infer", "GOOD_V2", 404, id="v2_version_0"),
        pytest.param("POST", "/v2/models/IRIS/infer", "GOOD_V2", 404, id="v2_name_case"),
        pytest.param("POST", "/v1/models/nope:predict", "GOOD_V1", 404, id="v1_unknown_model"),
        pytest.param(
            "POST", "/v1/models/nope:predict", b"{bad", 404, id="v1_unknown_model_bad_body"
        ),
        pytest.param("GET", "/v2/models/nope", None, 404, id="v2_metadata_unknown_model"),
        pytest.param(
            "GET", "/v2/models/iris/versions/99", None, 404, id="v2_metadata_unknown_version"
        ),
        pytest.param("GET", "/v2/models/nope/ready", None, 404, id="v2_ready_unknown_model"),
        pytest.param(
            "GET", "/v2/models/iris/versions/99/ready", None, 404, id="v2_ready_unknown_version"
        ),
        pytest.param("GET", "/v1/models/nope", None, 404, id="v1_status_unknown_model"),
        pytest.param("POST", "/v2/repository/models/nope/load", None, 404, id="repo_load_unknown"),
        pytest.param(
            "POST", "/v2/repository/models/nope/unload", None, 404, id="repo_unload_unknown"
        ),
        pytest.param(
            "POST", "/v2/repository/models/bad%20name!/load", None, 400, id="repo_load_bad_name"
        ),
        pytest.param("POST", "/v2/repository/index", b"[1]", 400, id="repo_index_array"),
        pytest.param("POST", "/v2/repository/index", b"{bad", 400, id="repo_index_malformed"),
        pytest.param("GET", "/nope", None, 404, id="unknown_route"),
        pytest.param("GET", "/v3/models/iris/infer", None, 404, id="unknown_version_prefix"),
        pytest.param("POST", "/v2/models/iris/predict", "GOOD_V2", 404, id="v2_unknown_verb"),
        pytest.param(
            "POST", "/v2/models/iris/versions/1", "GOOD_V2", 405, id="post_versioned_metadata"
        ),
        pytest.param("POST", "/v2/models//infer", "GOOD_V2", 404, id="v2_empty_model_name"),
        pytest.param("GET", INFER_V2, None, 405, id="get_infer"),
        pytest.param("PUT", INFER_V2, "GOOD_V2", 405, id="put_infer"),
        pytest.param("DELETE", "/v2/health/live", None, 405, id="delete_live"),
        pytest.param("POST", "/v2/health/ready", None, 405, id="post_ready"),
        pytest.param("POST", "/v2/models/iris", None, 405, id="post_metadata"),
        pytest.param("GET", "/v2/repository/index", None, 405, id="get_repo_index"),
        pytest.param("GET", "/v2/repository/models/iris/load", None, 405, id="get_repo_load"),
    ],
)
def test_rest_error_routes(
    http: httpx.Client,
    rows: np.ndarray,
    expected: list[int],
    method: str,
    path: str,
    body: Any,
    status: int,
) -> None:
    if body == "GOOD_V2":
        body = encode(v2_body(rows))
    elif body == "GOOD_V1":
        body = encode({"instances": rows.tolist()})
    r = http.request(method, path, content=body)
    assert_error(r, status)
    assert_serves_v2(http, rows, expected)
    assert_serves_v1(http, rows, expected)


# -- REST: 413 ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_http(small_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=small_server.http_url, timeout=10.0) as client:
        yield client


def _padded(body: dict[str, Any], size: int) -> bytes:
    """``body`` as JSON of exactly ``size`` bytes (whitespace padding: still valid)."""
    raw = json.dumps(body).encode()
    assert len(raw) < size
    return raw[:-1] + b" " * (size - len(raw)) + raw[-1:]


@pytest.mark.parametrize("chunked", [False, True], ids=["content_length", "chunked"])
@pytest.mark.parametrize(
    "path",
    [INFER_V2, "/v2/models/iris/versions/1/infer", PREDICT_V1, "/v2/repository/index"],
)
def test_rest_body_too_large_413(
    small_http: httpx.Client, rows: np.ndarray, expected: list[int], path: str, chunked: bool
) -> None:
    if path == PREDICT_V1:
        body = _padded({"instances": rows.tolist()}, 2 * SMALL_LIMIT)
    elif path.startswith("/v2/repository"):
        body = _padded({"ready": True}, 2 * SMALL_LIMIT)
    else:
        body = _padded(v2_body(rows), 2 * SMALL_LIMIT)
    assert len(body) == 2000
    content: Any = body
    if chunked:
        content = iter([body[i : i + 100] for i in range(0, len(body), 100)])
    r = small_http.post(path, content=content, headers={"content-type": "application/json"})
    if chunked:
        assert "content-length" not in r.request.headers
    assert_error(r, 413)
    assert_serves_v2(small_http, rows, expected)
    assert_serves_v1(small_http, rows, expected)


def test_rest_body_at_limit_is_accepted(
    small_http: httpx.Client, rows: np.ndarray, expected: list[int]
) -> None:
    r = small_http.post(INFER_V2, content=_padded(v2_body(rows), SMALL_LIMIT))
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == expected
    r = small_http.post(INFER_V2, content=_padded(v2_body(rows), SMALL_LIMIT + 1))
    assert_error(r, 413)
    assert_serves_v2(small_http, rows, expected)


def test_rest_binary_body_too_large_413(
    small_http: httpx.Client, rows: np.ndarray, expected: list[int]
) -> None:
    body, headers = _binary(np.tile(rows, (16, 1)))  # 32 rows: 1024 bytes of tensor
    assert len(body) > SMALL_LIMIT
    r = small_http.post(INFER_V2, content=body, headers=headers)
    assert_error(r, 413)
    assert_serves_v2(small_http, rows, expected)


# -- gRPC -------------------------------------------------------------------------------------


def _req(
    shape: Any = (2, 4),
    datatype: str = "FP64",
    field: str | None = "fp64_contents",
    values: Any = "GOOD",
    name: str = "input-0",
    model: str = "iris",
    **kw: Any,
) -> Any:
    req = M.ModelInferRequest(model_name=model, **kw)
    t = req.inputs.add(name=name, datatype=datatype, shape=list(shape))
    if field is not None:
        getattr(t.contents, field).extend(np.ravel(GOOD).tolist() if values == "GOOD" else values)
    return req


def _no_inputs() -> Any:
    return M.ModelInferRequest(model_name="iris")


def _without(attr: str) -> Callable[[], Any]:
    def build() -> Any:
        req = M.ModelInferRequest(model_name="iris")
        fields = {"name": "input-0", "datatype": "FP64", "shape": [2, 4]}
        del fields[attr]
        req.inputs.add(**fields).contents.fp64_contents.extend(np.ravel(GOOD).tolist())
        return req

    return build


def _duplicate_names() -> Any:
    req = _req()
    req.inputs.add(name="input-0", datatype="FP64", shape=[2, 4]).contents.fp64_contents.extend(
        np.ravel(GOOD).tolist()
    )
    return req


def _raw(blob: bytes, entries: int = 1, **kw: Any) -> Callable[[], Any]:
    def build() -> Any:
        req = _req(field=None, **kw)
        for _ in range(entries):
            req.raw_input_contents.append(blob)
        return req

    return build


def _raw_for_two_inputs() -> Any:
    req = _req(field=None)
    req.inputs.add(name="input-1", datatype="FP64", shape=[2, 4])
    req.raw_input_contents.append(np.asarray(GOOD).tobytes())
    return req


def _contents_and_raw() -> Any:
    req = _req()
    req.raw_input_contents.append(np.asarray(GOOD).tobytes())
    return req


def _unknown_output() -> Any:
    req = _req()
    req.outputs.add(name="nope")
    return req


GOOD_RAW = np.asarray(GOOD, dtype=np.float64).tobytes()

GRPC_BAD: dict[str, Callable[[], Any]] = {
    "no_inputs": _no_inputs,
    "missing_name": _without("name"),
    "missing_datatype": _without("datatype"),
    "missing_shape": _without("shape"),
    "missing_data": lambda: _req(field=None),
    "duplicate_input_names": _duplicate_names,
    "unknown_datatype": lambda: _req(datatype="FP128"),
    "lowercase_datatype": lambda: _req(datatype="fp64"),
    "too_few_values": lambda: _req(values=np.ravel(GOOD)[:7].tolist()),
    "too_many_values": lambda: _req(values=[*np.ravel(GOOD).tolist(), 1.0]),
    "shape_rows_disagree": lambda: _req(shape=(3, 4)),
    "contents_in_wrong_field": lambda: _req(field="fp32_contents"),
    "int_contents_for_fp64": lambda: _req(field="int64_contents", values=[1] * 8),
    "negative_dim": lambda: _req(shape=(-2, 4)),
    "negative_second_dim": lambda: _req(shape=(2, -4)),
    "overflow_dim": lambda: _req(shape=(2**63 - 1, 2)),
    "overflow_product": lambda: _req(shape=(2**62, 2**62)),
    "overflow_product_wraps_to_8": lambda: _req(shape=(2**62 + 2, 4)),
    "rank_33": lambda: _req(shape=[1] * 33, values=[1.0]),
    "fp16_typed_fp32_contents": lambda: _req(datatype="FP16", field="fp32_contents"),
    "fp16_typed_no_contents": lambda: _req(datatype="FP16", field=None),
    "out_of_range_int8": lambda: _req(datatype="INT8", field="int_contents", values=[1000] * 8),
    "out_of_range_int16": lambda: _req(datatype="INT16", field="int_contents", values=[40000] * 8),
    "out_of_range_uint8": lambda: _req(datatype="UINT8", field="uint_contents", values=[300] * 8),
    "bytes_for_numeric_model": lambda: _req(
        datatype="BYTES", field="bytes_contents", values=[b"a"] * 8
    ),
    "three_features": lambda: _req(shape=(2, 3), values=np.asarray(GOOD)[:, :3].ravel().tolist()),
    "rank_3": lambda: _req(shape=(1, 2, 4)),
    "zero_rows": lambda: _req(shape=(0, 4), values=[]),
    "unknown_output": _unknown_output,
    "raw_two_entries_one_input": _raw(GOOD_RAW, entries=2),
    "raw_one_entry_two_inputs": _raw_for_two_inputs,
    "raw_one_byte_short": _raw(GOOD_RAW[:-1]),
    "raw_extra_trailing_bytes": _raw(GOOD_RAW + b"xxxx"),
    "raw_empty": _raw(b""),
    "raw_huge_shape": _raw(GOOD_RAW, shape=(100000000, 100000000)),
    "raw_negative_dim": _raw(GOOD_RAW, shape=(-2, 4)),
    "raw_unknown_datatype": _raw(GOOD_RAW, datatype="FP128"),
    "raw_bytes_element_past_end": _raw(b"\x10\x00\x00\x00abcd", shape=(2,), datatype="BYTES"),
    "raw_bytes_truncated_length": _raw(b"\x01\x00\x00\x00a\x01\x00", shape=(2,), datatype="BYTES"),
    "contents_and_raw": _contents_and_raw,
}


@pytest.mark.parametrize("build", [pytest.param(v, id=k) for k, v in GRPC_BAD.items()])
def test_grpc_bad_request_invalid_argument(
    channel: grpc.Channel, rows: np.ndarray, expected: list[int], build: Callable[[], Any]
) -> None:
    code, details = grpc_code(channel, build())
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert details
    assert_serves_grpc(channel, rows, expected)


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"\xff\xff\xff\xff", id="garbage"),
        pytest.param(b"\x0a\xff\xff\xff\xff\x0f", id="length_past_end"),
        pytest.param(b"\x22\x05\x0a\x01", id="truncated_input"),
    ],
)
def test_grpc_unparsable_message_invalid_argument(
    channel: grpc.Channel, rows: np.ndarray, expected: list[int], request_bytes: bytes
) -> None:
    """Bytes that are no ModelInferRequest at all are a malformed body too."""
    call = channel.unary_unary(
        GRPC_INFER,
        request_serializer=lambda b: b,
        response_deserializer=M.ModelInferResponse.FromString,
    )
    with pytest.raises(grpc.RpcError) as info:
        call(request_bytes, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert_serves_grpc(channel, rows, expected)


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(
            lambda: _req(shape=(100000000, 100000000), values=[1.0] * 4), id="typed_1e8x1e8"
        ),
        pytest.param(_raw(GOOD_RAW, shape=(100000000, 100000000)), id="raw_1e8x1e8"),
        pytest.param(lambda: _req(shape=(2**31, 2**31, 2**31), values=[1.0]), id="typed_2^93"),
    ],
)
def test_grpc_huge_declared_shape_is_refused_fast(
    channel: grpc.Channel, rows: np.ndarray, expected: list[int], build: Callable[[], Any]
) -> None:
    start = time.perf_counter()
    code, details = grpc_code(channel, build())
    elapsed = time.perf_counter() - start
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert elapsed < FAST_S, f"{elapsed:.2f}s"
    assert_serves_grpc(channel, rows, expected)


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: _req(model="nope"), id="unknown_model"),
        pytest.param(lambda: _req(model=""), id="empty_model_name"),
        pytest.param(lambda: _req(model="IRIS"), id="name_case"),
        pytest.param(lambda: _req(model_version="99"), id="unknown_version"),
        pytest.param(
            lambda: _req(model="nope", field=None, shape=(-1,)), id="unknown_model_bad_input"
        ),
    ],
)
def test_grpc_unknown_model_not_found(
    channel: grpc.Channel, rows: np.ndarray, expected: list[int], build: Callable[[], Any]
) -> None:
    code, details = grpc_code(channel, build())
    assert code == grpc.StatusCode.NOT_FOUND, details
    assert_serves_grpc(channel, rows, expected)


def test_grpc_unknown_model_metadata_and_ready(channel: grpc.Channel) -> None:
    metadata = channel.unary_unary(
        "/inference.GRPCInferenceService/ModelMetadata",
        request_serializer=M.ModelMetadataRequest.SerializeToString,
        response_deserializer=M.ModelMetadataResponse.FromString,
    )
    with pytest.raises(grpc.RpcError) as info:
        metadata(M.ModelMetadataRequest(name="nope"), timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    ready = channel.unary_unary(
        "/inference.GRPCInferenceService/ModelReady",
        request_serializer=M.ModelReadyRequest.SerializeToString,
        response_deserializer=M.ModelReadyResponse.FromString,
    )
    with pytest.raises(grpc.RpcError) as info:
        ready(M.ModelReadyRequest(name="iris", version="99"), timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_grpc_unknown_method_unimplemented(channel: grpc.Channel) -> None:
    call = channel.unary_unary(
        "/inference.GRPCInferenceService/NoSuchRpc",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    with pytest.raises(grpc.RpcError) as info:
        call(b"", timeout=10)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_grpc_message_too_large_resource_exhausted(
    small_server: ServerProcess, rows: np.ndarray, expected: list[int]
) -> None:
    ch = grpc.insecure_channel(small_server.grpc_address)
    try:
        typed = _req(values=np.ravel(GOOD).tolist())
        typed.id = "x" * (2 * SMALL_LIMIT)
        raw = _raw(np.tile(np.asarray(GOOD), (16, 1)).tobytes(), shape=(32, 4))()
        for request in (typed, raw):
            assert request.ByteSize() > SMALL_LIMIT
            code, details = grpc_code(ch, request)
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
            assert_serves_grpc(ch, rows, expected)
    finally:
        ch.close()


# -- model not ready (repository extension) ----------------------------------------------


PIPELINE_ROWS = {
    "sepal_length": [5.1, 6.7],
    "sepal_width": [3.5, 3.0],
    "petal_length": [1.4, 5.2],
    "petal_width": [0.2, 2.3],
    "size": ["small", "large"],
}


def _pipeline_v2(**override: Any) -> dict[str, Any]:
    columns = {**PIPELINE_ROWS, **override}
    inputs = []
    for name, values in columns.items():
        if values is None:
            continue
        datatype = (
            "BYTES"
            if isinstance(values[0], str)
            else "INT64"
            if isinstance(values[0], int)
            else "FP64"
        )
        inputs.append({"name": name, "shape": [len(values)], "datatype": datatype, "data": values})
    return {"inputs": inputs}


@pytest.fixture(scope="module")
def repo_http(repo_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=repo_server.http_url, timeout=30.0) as client:
        yield client


@pytest.fixture(scope="module")
def pipeline_expected(sample_models: dict[str, Path]) -> list[int]:
    import pandas as pd

    with (sample_models["iris-pipeline"] / "model.pkl").open("rb") as f:
        estimator = pickle.load(f)
    return estimator.predict(pd.DataFrame(PIPELINE_ROWS)).tolist()


def assert_pipeline_serves(client: httpx.Client, expected: list[int]) -> None:
    r = client.post("/v2/models/iris-pipeline/infer", json=_pipeline_v2())
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == expected


@pytest.mark.parametrize(
    "override",
    [
        pytest.param({"size": ["huge", "small"]}, id="unknown_category"),
        pytest.param({"size": [1, 2]}, id="numbers_for_category"),
        pytest.param({"size": None}, id="missing_column"),
        pytest.param({"sepal_length": ["a", "b"]}, id="strings_for_numbers"),
        pytest.param({"sepal_length": [1.7e308, 1.0]}, id="value_overflows_after_scaling"),
    ],
)
def test_model_rejecting_input_is_400(
    repo_http: httpx.Client, pipeline_expected: list[int], override: dict[str, Any]
) -> None:
    """A model raising ValueError/TypeError on its input is the client's fault: 400, not 500."""
    r = repo_http.post("/v2/models/iris-pipeline/infer", json=_pipeline_v2(**override))
    assert_error(r, 400)
    assert_pipeline_serves(repo_http, pipeline_expected)


def test_model_not_ready_503_unavailable(
    repo_server: ServerProcess,
    repo_http: httpx.Client,
    rows: np.ndarray,
    expected: list[int],
    pipeline_expected: list[int],
) -> None:
    ch = grpc.insecure_channel(repo_server.grpc_address)
    model_ready = ch.unary_unary(
        "/inference.GRPCInferenceService/ModelReady",
        request_serializer=M.ModelReadyRequest.SerializeToString,
        response_deserializer=M.ModelReadyResponse.FromString,
    )
    server_ready = ch.unary_unary(
        "/inference.GRPCInferenceService/ServerReady",
        request_serializer=M.ServerReadyRequest.SerializeToString,
        response_deserializer=M.ServerReadyResponse.FromString,
    )
    try:
        assert_serves_v2(repo_http, rows, expected)
        assert_serves_grpc(ch, rows, expected)

        r = repo_http.post("/v2/repository/models/iris/unload")
        assert r.status_code == 200, r.text

        # inference: 503 over REST (v2, versioned v2, v1, whatever the body), UNAVAILABLE over gRPC
        for path, body in [
            (INFER_V2, encode(v2_body(rows))),
            ("/v2/models/iris/versions/1/infer", encode(v2_body(rows))),
            (PREDICT_V1, encode({"instances": rows.tolist()})),
        ]:
            assert "not ready" in assert_error(repo_http.post(path, content=body), 503).lower()
        assert_error(repo_http.post(INFER_V2, content=b"{bad"), 503)
        assert_error(repo_http.post(PREDICT_V1, content=b""), 503)
        # an unknown version of a known model is still unknown
        assert_error(
            repo_http.post("/v2/models/iris/versions/99/infer", content=encode(v2_body(rows))), 404
        )
        for request in (good_grpc_request(rows), _req(shape=(-1, 4))):
            code, details = grpc_code(ch, request)
            assert code == grpc.StatusCode.UNAVAILABLE, details

        # probes tell the truth
        r = repo_http.get("/v2/models/iris/ready")
        assert 400 <= r.status_code < 500, r.text
        assert r.json()["ready"] is False
        r = repo_http.get("/v2/health/ready")
        assert r.status_code != 200, r.text
        assert r.json()["ready"] is False
        r = repo_http.get("/v1/models/iris")
        assert r.status_code == 503, r.text
        body = r.json()
        assert isinstance(body.get("error"), str) and body["error"], body
        assert body.get("ready") is False, body
        assert model_ready(M.ModelReadyRequest(name="iris"), timeout=10).ready is False
        assert server_ready(M.ServerReadyRequest(), timeout=10).ready is False
        index = {e["name"]: e for e in repo_http.post("/v2/repository/index").json()}
        assert index["iris"]["state"] != "READY"
        assert index["iris-pipeline"]["state"] == "READY"
        r = repo_http.get("/v2/health/live")
        assert r.status_code == 200

        # the other model keeps serving
        assert_pipeline_serves(repo_http, pipeline_expected)

        r = repo_http.post("/v2/repository/models/iris/load")
        assert r.status_code == 200, r.text
        assert repo_http.get("/v2/models/iris/ready").status_code == 200
        assert repo_http.get("/v2/health/ready").status_code == 200
        assert repo_http.get("/v1/models/iris").json()["ready"] is True
        assert model_ready(M.ModelReadyRequest(name="iris"), timeout=10).ready is True
        assert server_ready(M.ServerReadyRequest(), timeout=10).ready is True
        assert_serves_v2(repo_http, rows, expected)
        assert_serves_v1(repo_http, rows, expected)
        assert_serves_grpc(ch, rows, expected)
        assert_pipeline_serves(repo_http, pipeline_expected)
    finally:
        repo_http.post("/v2/repository/models/iris/load")
        ch.close()


@pytest.mark.parametrize(
    "breakage",
    [
        pytest.param(lambda f: f.write_bytes(RANDOM_BYTES), id="corrupt_file"),
        pytest.param(lambda f: f.unlink(), id="file_removed"),
        pytest.param(
            lambda f: f.write_bytes(pickle.dumps({"not": "a model"})), id="not_an_estimator"
        ),
    ],
)
def test_failed_reload_keeps_the_serving_model(
    repo_server: ServerProcess,
    repo_root: Path,
    repo_http: httpx.Client,
    rows: np.ndarray,
    expected: list[int],
    pipeline_expected: list[int],
    breakage: Callable[[Path], Any],
) -> None:
    """A reload from a broken file is an error, but the loaded model keeps serving.

    Once the model is unloaded, loading the broken file leaves it FAILED with
    the reason, answering 503 / UNAVAILABLE.
    """
    model_file = repo_root / "iris" / "model.joblib"
    original = model_file.read_bytes()
    ch = grpc.insecure_channel(repo_server.grpc_address)
    try:
        breakage(model_file)
        r = repo_http.post("/v2/repository/models/iris/load")
        assert r.status_code >= 400, r.text
        assert_error(r, r.status_code)
        assert_serves_v2(repo_http, rows, expected)
        assert_serves_grpc(ch, rows, expected)
        index = {e["name"]: e for e in repo_http.post("/v2/repository/index").json()}
        assert index["iris"]["state"] == "READY"
        assert "reload failed" in index["iris"]["reason"]

        assert repo_http.post("/v2/repository/models/iris/unload").status_code == 200
        r = repo_http.post("/v2/repository/models/iris/load")
        assert r.status_code >= 400, r.text
        assert_error(repo_http.post(INFER_V2, content=encode(v2_body(rows))), 503)
        assert_error(repo_http.post(PREDICT_V1, content=encode({"instances": rows.tolist()})), 503)
        code, details = grpc_code(ch, good_grpc_request(rows))
        assert code == grpc.StatusCode.UNAVAILABLE, details
        r = repo_http.get("/v2/models/iris/ready")
        assert 400 <= r.status_code < 500 and r.json()["ready"] is False, r.text
        assert repo_http.get("/v2/health/ready").status_code != 200
        index = {e["name"]: e for e in repo_http.post("/v2/repository/index").json()}
        assert index["iris"]["state"] == "FAILED"
        assert index["iris"].get("reason")
        assert_pipeline_serves(repo_http, pipeline_expected)
    finally:
        model_file.write_bytes(original)
        r = repo_http.post("/v2/repository/models/iris/load")
        ch.close()
    assert r.status_code == 200, r.text
    assert repo_http.get("/v2/health/ready").status_code == 200
    assert_serves_v2(repo_http, rows, expected)
    assert_serves_v1(repo_http, rows, expected)


def test_repository_errors(repo_http: httpx.Client, rows: np.ndarray, expected: list[int]) -> None:
    assert_error(repo_http.post("/v2/repository/models/nope/load"), 404)
    assert_error(repo_http.post("/v2/repository/models/nope/unload"), 404)
    assert_error(repo_http.post("/v2/models/nope/infer", content=encode(v2_body(rows))), 404)
    assert_serves_v2(repo_http, rows, expected)


# -- startup errors -------------------------------------------------------------------------


def _layout_missing(d: Path) -> Path:
    return d / "does-not-exist"


def _layout_file(d: Path) -> Path:
    f = d / "model.joblib"
    f.write_bytes(b"not a directory")
    return f


def _layout_empty(d: Path) -> Path:
    return d


def _layout_unrelated(d: Path) -> Path:
    (d / "model.txt").write_text("hello")
    (d / "README.md").write_text("hello")
    return d


def _layout_two_joblib(iris: Path) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        (d / "first.joblib").write_bytes((iris / "model.joblib").read_bytes())
        (d / "second.joblib").write_bytes((iris / "model.joblib").read_bytes())
        return d

    return make


def _layout_joblib_and_pkl(iris: Path) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        (d / "model.joblib").write_bytes((iris / "model.joblib").read_bytes())
        (d / "other.pkl").write_bytes(pickle.dumps(joblib.load(iris / "model.joblib")))
        return d

    return make


def _layout_file_bytes(name: str, data: bytes) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        (d / name).write_bytes(data)
        return d

    return make


def _layout_truncated(iris: Path) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        data = pickle.dumps(joblib.load(iris / "model.joblib"))
        (d / "model.pkl").write_bytes(data[: len(data) // 2])
        return d

    return make


def _layout_multi_with_corrupt(iris: Path) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        (d / "good").mkdir()
        (d / "good" / "model.joblib").write_bytes((iris / "model.joblib").read_bytes())
        (d / "bad").mkdir()
        (d / "bad" / "broken.pkl").write_bytes(b"\x00definitely not a pickle")
        return d

    return make


RANDOM_BYTES = random.Random(20240601).randbytes(512)
#: A pickle that starts well and then names a global that does not exist.
MISSING_CLASS_PICKLE = b"cno_such_module\nThing\n)R."


@pytest.mark.parametrize(
    ("layout", "must_mention"),
    [
        pytest.param(
            lambda iris: _layout_missing, ["does-not-exist", "does not exist"], id="missing_dir"
        ),
        pytest.param(lambda iris: _layout_file, ["not a directory"], id="dir_is_a_file"),
        pytest.param(lambda iris: _layout_empty, ["no model file", ".joblib"], id="empty_dir"),
        pytest.param(
            lambda iris: _layout_unrelated, ["no model file", "model.txt"], id="unrelated_files"
        ),
        pytest.param(_layout_two_joblib, ["first.joblib", "second.joblib"], id="two_joblib"),
        pytest.param(_layout_joblib_and_pkl, ["model.joblib", "other.pkl"], id="joblib_and_pkl"),
        pytest.param(
            lambda iris: _layout_file_bytes("model.pkl", RANDOM_BYTES),
            ["model.pkl"],
            id="random_pkl",
        ),
        pytest.param(
            lambda iris: _layout_file_bytes("model.pkl", b""), ["model.pkl"], id="empty_pkl"
        ),
        pytest.param(
            lambda iris: _layout_file_bytes("model.joblib", RANDOM_BYTES),
            ["model.joblib"],
            id="random_joblib",
        ),
        pytest.param(
            lambda iris: _layout_file_bytes("model.pickle", b"plain text, not a pickle\n"),
            ["model.pickle"],
            id="text_pickle",
        ),
        pytest.param(_layout_truncated, ["model.pkl"], id="truncated_pkl"),
        pytest.param(
            lambda iris: _layout_file_bytes("model.pkl", MISSING_CLASS_PICKLE),
            ["model.pkl", "no_such_module"],
            id="pickle_of_missing_class",
        ),
        pytest.param(
            lambda iris: _layout_file_bytes("model.pkl", pickle.dumps({"coef": [1, 2, 3]})),
            ["model.pkl", "dict", "predict"],
            id="pickle_of_dict",
        ),
        pytest.param(
            lambda iris: _layout_file_bytes("model.pkl", pickle.dumps([1, 2, 3])),
            ["model.pkl", "list", "predict"],
            id="pickle_of_list",
        ),
        pytest.param(
            lambda iris: _layout_file_bytes("model.joblib", pickle.dumps("a string")),
            ["model.joblib", "str", "predict"],
            id="joblib_of_str",
        ),
        pytest.param(_layout_multi_with_corrupt, ["broken.pkl"], id="multi_model_one_corrupt"),
    ],
)
def test_startup_error(
    tmp_path: Path,
    iris_dir: Path,
    layout: Callable[[Path], Callable[[Path], Path]],
    must_mention: list[str],
) -> None:
    model_dir = layout(iris_dir)(tmp_path)
    result = run_to_exit(
        "sklearnserver",
        [
            "--model_name=iris",
            f"--model_dir={model_dir}",
            "--http_port=0",
            "--grpc_port=0",
            "--host=127.0.0.1",
        ],
        timeout=30,
    )
    assert result.returncode != 0, result.stderr
    err = result.stderr.lower()
    for word in must_mention:
        assert word.lower() in err, f"{word!r} not in stderr:\n{result.stderr}"
    assert "traceback" not in err, result.stderr

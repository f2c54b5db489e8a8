"""Triton's Python client, unmodified, making the calls Triton's own examples make.

Compressed request bodies (``request_compression_algorithm``), the raw
answers hand-written gRPC clients read (``raw_output_contents[0]``), model
statistics and configuration after inferring (``simple_*_infer_client``,
``image_client``), load parameters, and the ``ModelStreamInfer`` stream.
Expected values come from the estimator loaded in this process.
"""

from __future__ import annotations

import gzip
import json
import queue
import time
import zlib
from pathlib import Path
from typing import Any

import grpc
import httpx
import joblib
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from serverproc import ServerProcess
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

pytestmark = pytest.mark.e2e

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [6.7, 3.0, 5.2, 2.3]])


@pytest.fixture(scope="module")
def estimator(sklearn_root: Path) -> Any:
    return joblib.load(sklearn_root / "iris" / "model.joblib")


def _http_input(rows: np.ndarray, binary: bool) -> thttp.InferInput:
    tensor = thttp.InferInput("input-0", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows, binary_data=binary)
    return tensor


def _grpc_input(rows: np.ndarray) -> tgrpc.InferInput:
    tensor = tgrpc.InferInput("input-0", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows)
    return tensor


# -- 1. compressed request bodies -------------------------------------------------------------


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_tritonclient_compressed_requests(sklearn_server, estimator, algorithm, binary) -> None:
    client = thttp.InferenceServerClient(sklearn_server.http_address)
    result = client.infer(
        "iris",
        [_http_input(ROWS, binary)],
        outputs=[thttp.InferRequestedOutput("predict", binary_data=binary)],
        request_compression_algorithm=algorithm,
        response_compression_algorithm=algorithm,
    )
    np.testing.assert_array_equal(result.as_numpy("predict"), estimator.predict(ROWS))


def test_curl_style_gzip_body(sklearn_server, estimator) -> None:
    """``curl --data-binary @body.gz -H 'Content-Encoding: gzip'``, v1 and v2."""
    v1 = gzip.compress(json.dumps({"instances": ROWS.tolist()}).encode())
    reply = httpx.post(
        f"{sklearn_server.http_url}/v1/models/iris:predict",
        content=v1,
        headers={"content-encoding": "gzip", "content-type": "application/json"},
    )
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"predictions": estimator.predict(ROWS).tolist()}
    v2 = {"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP64", "data": ROWS.tolist()}]}
    reply = httpx.post(
        f"{sklearn_server.http_url}/v2/models/iris/infer",
        content=zlib.compress(json.dumps(v2).encode()),
        headers={"content-encoding": "deflate"},
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["outputs"][0]["data"] == estimator.predict(ROWS).tolist()


def _peak_rss_kib(server: ServerProcess) -> int:
    assert server.proc is not None
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def _zeros_bomb(megabytes: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1 << 20)
    return b"".join([*(packer.compress(block) for _ in range(megabytes)), packer.flush()])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_gzip_bomb_is_413_without_inflating_it(sample_models) -> None:
    """A 1 MB body that inflates to 1 GiB, against --max_body_size of 1 MiB: 413, and the
    server's peak memory does not grow by anything like the inflated size."""
    bomb = _zeros_bomb(1024)
    assert len(bomb) < 2 << 20
    args = ["--model_name=iris", f"--model_dir={sample_models['iris']}", "--max_body_size=1048576"]
    with ServerProcess("sklearnserver", args) as server:
        before = _peak_rss_kib(server)
        reply = httpx.post(
            f"{server.http_url}/v2/models/iris/infer",
            content=bomb,
            headers={"content-encoding": "gzip"},
            timeout=60,
        )
        assert reply.status_code == 413, reply.text
        assert "inflates past the limit of 1048576" in reply.json()["error"]
        assert _peak_rss_kib(server) - before < 64 * 1024
        good = {"instances": ROWS.tolist()}
        assert httpx.post(f"{server.http_url}/v1/models/iris:predict", json=good).status_code == 200


@pytest.mark.parametrize(
    ("encoding", "body", "status", "words"),
    [
        ("br", b"\x0b\x02\x80{}\x03", 415, "Content-Encoding br is not supported"),
        ("gzip", b'{"instances": [[1, 2, 3, 4]]}', 400, "not valid gzip data"),
        ("gzip", gzip.compress(b'{"instances": [[1, 2, 3, 4]]}')[:-12], 400, "ends in the middle"),
    ],
    ids=["unknown", "not-gzip", "truncated"],
)
def test_bad_encodings_are_clear_errors(sklearn_server, estimator, encoding, body, status, words):
    url = f"{sklearn_server.http_url}/v1/models/iris:predict"
    reply = httpx.post(url, content=body, headers={"content-encoding": encoding})
    assert reply.status_code == status, reply.text
    assert words in reply.json()["error"]
    good = httpx.post(url, json={"instances": ROWS.tolist()})
    assert good.json() == {"predictions": estimator.predict(ROWS).tolist()}


# -- 8. gRPC answers in raw_output_contents ----------------------------------------------------


def test_hand_written_client_reads_raw_output_contents(sklearn_server, estimator) -> None:
    """As Triton's grpc_explicit_*_content_client examples: typed contents in, the answer
    read from ``raw_output_contents[0]`` with tritonclient's own generated stubs."""
    with grpc.insecure_channel(sklearn_server.grpc_address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = service_pb2.ModelInferRequest(model_name="iris")
        tensor = request.inputs.add(name="input-0", datatype="FP64", shape=list(ROWS.shape))
        tensor.contents.fp64_contents.extend(ROWS.reshape(-1).tolist())
        response = stub.ModelInfer(request, timeout=30)
    labels = np.frombuffer(response.raw_output_contents[0], dtype=np.int64)
    np.testing.assert_array_equal(labels, estimator.predict(ROWS))


def test_tritonclient_grpc_decodes_raw_answers(sklearn_server, estimator) -> None:
    client = tgrpc.InferenceServerClient(sklearn_server.grpc_address)
    names = ["predict", "predict_proba"]
    result = client.infer(
        "iris", [_grpc_input(ROWS)], outputs=[tgrpc.InferRequestedOutput(n) for n in names]
    )
    np.testing.assert_array_equal(result.as_numpy("predict"), estimator.predict(ROWS))
    np.testing.assert_allclose(result.as_numpy("predict_proba"), estimator.predict_proba(ROWS))


# -- 9. repository load parameters ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"config": json.dumps({"max_batch_size": 4})}, "'config'"),
        ({"files": {"file:1/model.joblib": b"not a model"}}, "'file:1/model.joblib'"),
    ],
    ids=["config", "file"],
)
def test_load_parameters_are_refused_by_name(sklearn_server, estimator, kwargs, named) -> None:
    http = thttp.InferenceServerClient(sklearn_server.http_address)
    with pytest.raises(InferenceServerException) as info:
        http.load_model("iris", **kwargs)
    assert info.value.status() == "400" and named in info.value.message()
    rpc = tgrpc.InferenceServerClient(sklearn_server.grpc_address)
    with pytest.raises(InferenceServerException) as info:
        rpc.load_model("iris", **kwargs)
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT" and named in info.value.message()
    result = rpc.infer("iris", [_grpc_input(ROWS)])
    np.testing.assert_array_equal(result.as_numpy("predict"), estimator.predict(ROWS))


# -- 10. statistics ---------------------------------------------------------------------------


def _stats(client: Any, model: str) -> dict[str, Any]:
    (entry,) = client.get_inference_statistics(model, **_json(client))["model_stats"]
    return entry


def _json(client: Any) -> dict[str, bool]:
    return {"as_json": True} if isinstance(client, tgrpc.InferenceServerClient) else {}


def _n(entry: dict[str, Any], *path: str) -> int:
    """A count from either client's answer: the gRPC one's JSON leaves zeros out and writes
    64-bit numbers as strings."""
    value: Any = entry
    for key in path:
        value = value.get(key, {}) if isinstance(value, dict) else {}
    return int(value or 0)


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_statistics_after_inferring(sklearn_server, estimator, transport) -> None:
    """What simple_{http,grpc}_infer_client read after inferring: real counts."""
    http = thttp.InferenceServerClient(sklearn_server.http_address)
    client = (
        http if transport == "http" else tgrpc.InferenceServerClient(sklearn_server.grpc_address)
    )
    model = "iris-pipeline" if transport == "http" else "text"
    before = _stats(client, model)
    started_ms = time.time() * 1000
    if model == "text":
        texts = np.array([b"sepallength long petallength long"] * 3, dtype=np.object_)
        tensor = thttp.InferInput("input-0", [3], "BYTES")
        tensor.set_data_from_numpy(texts)
        inputs = [tensor]
    else:
        inputs = []
        for name, values in {
            "sepal_length": [5.1, 6.7, 6.0],
            "sepal_width": [3.5, 3.0, 2.2],
            "petal_length": [1.4, 5.2, 4.0],
            "petal_width": [0.2, 2.3, 1.0],
        }.items():
            tensor = thttp.InferInput(name, [3], "FP64")
            tensor.set_data_from_numpy(np.array(values))
            inputs.append(tensor)
        size = thttp.InferInput("size", [3], "BYTES")
        size.set_data_from_numpy(np.array([b"small", b"large", b"large"], dtype=np.object_))
        inputs.append(size)
    for _ in range(4):
        http.infer(model, inputs)
    with pytest.raises(InferenceServerException):
        http.infer(model, [_http_input(ROWS, True)])  # numbers: neither model takes them
    after = _stats(client, model)
    assert after["name"] == model and after["version"] == "1"
    assert _n(after, "inference_count") - _n(before, "inference_count") == 12
    assert _n(after, "execution_count") - _n(before, "execution_count") == 4
    for phase, count in (
        ("success", 4),
        ("fail", 1),
        ("queue", 4),
        ("compute_input", 4),
        ("compute_infer", 4),
        ("compute_output", 4),
    ):
        done = _n(after, "inference_stats", phase, "count")
        assert done - _n(before, "inference_stats", phase, "count") == count, phase
        assert _n(after, "inference_stats", phase, "ns") > _n(
            before, "inference_stats", phase, "ns"
        )
    assert _n(after, "last_inference") >= started_ms - 1000
    sizes = {_n(b, "batch_size"): b for b in after["batch_stats"]}
    assert _n(sizes[3], "compute_infer", "count") >= 4


def test_statistics_of_every_model_and_errors(sklearn_server) -> None:
    every = thttp.InferenceServerClient(sklearn_server.http_address).get_inference_statistics()
    assert {s["name"] for s in every["model_stats"]} == {"iris", "iris-pipeline", "text"}
    reply = httpx.get(f"{sklearn_server.http_url}/v2/models/nope/stats")
    assert reply.status_code == 404 and "nope" in reply.json()["error"]
    with pytest.raises(InferenceServerException) as info:
        tgrpc.InferenceServerClient(sklearn_server.grpc_address).get_inference_statistics("nope")
    assert info.value.status() == "StatusCode.NOT_FOUND"


# -- 11. model configuration ---------------------------------------------------------------


def test_model_config_shapes_a_request_as_image_client_does(sklearn_server, estimator) -> None:
    """image_client reads max_batch_size and the input's dims and data type, then builds
    its batch from them: that request is served."""
    http = thttp.InferenceServerClient(sklearn_server.http_address)
    config = http.get_model_config("iris")
    assert config["name"] == "iris" and config["platform"] == "sklearn"
    assert config["max_batch_size"] == 8  # --max_batch_size: dims leave out the batch
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 0
    (inp,) = config["input"]
    assert (inp["name"], inp["data_type"], inp["dims"], inp["format"]) == (
        "input-0",
        "TYPE_FP64",
        [4],
        "FORMAT_NONE",
    )
    assert {o["name"]: (o["data_type"], o["dims"]) for o in config["output"]} == {
        "predict": ("TYPE_INT64", []),
        "predict_proba": ("TYPE_FP64", [3]),
        "contributions": ("TYPE_FP64", [3, 5]),  # 3 classes, 4 features and the bias
    }
    grpc_config = tgrpc.InferenceServerClient(sklearn_server.grpc_address).get_model_config(
        "iris", as_json=True
    )["config"]
    assert grpc_config["max_batch_size"] == 8
    assert [int(d) for d in grpc_config["input"][0]["dims"]] == [4]
    assert grpc_config["input"][0]["data_type"] == "TYPE_FP64"
    batch = ROWS[: config["max_batch_size"]]
    tensor = thttp.InferInput(inp["name"], [len(batch), *inp["dims"]], inp["data_type"][5:])
    tensor.set_data_from_numpy(batch)
    result = http.infer("iris", [tensor])
    np.testing.assert_array_equal(result.as_numpy("predict"), estimator.predict(batch))
    reply = httpx.get(f"{sklearn_server.http_url}/v2/models/nope/config")
    assert reply.status_code == 404


def test_extensions_claimed(sklearn_server) -> None:
    extensions = set(
        thttp.InferenceServerClient(sklearn_server.http_address).get_server_metadata()["extensions"]
    )
    assert {"statistics", "model_configuration", "system_shared_memory"} <= extensions


# -- 13. the ModelStreamInfer stream ------------------------------------------------------------


def test_stream_answers_each_request_and_stays_open(sklearn_server, estimator) -> None:
    client = tgrpc.InferenceServerClient(sklearn_server.grpc_address)
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        wrong = tgrpc.InferInput("input-0", [1, 3], "FP64")
        wrong.set_data_from_numpy(ROWS[:1, :3])
        client.async_stream_infer("iris", [_grpc_input(ROWS)], request_id="a")
        client.async_stream_infer("nope", [_grpc_input(ROWS)], request_id="b")
        client.async_stream_infer("iris", [wrong], request_id="c")
        got = [answers.get(timeout=30) for _ in range(3)]
        # the stream is still open after the errors
        client.async_stream_infer("iris", [_grpc_input(ROWS[1:])], request_id="d")
        got.append(answers.get(timeout=30))
    finally:
        client.stop_stream()
    results = {r.get_response().id: r for r, e in got if e is None}
    errors = sorted(str(e) for r, e in got if e is not None)
    assert set(results) == {"a", "d"}
    np.testing.assert_array_equal(results["a"].as_numpy("predict"), estimator.predict(ROWS))
    np.testing.assert_array_equal(results["d"].as_numpy("predict"), estimator.predict(ROWS[1:]))
    assert len(errors) == 2
    assert "does not exist" in errors[1] and "nope" in errors[1]
    assert "expects 4 features per row, got 3" in errors[0]

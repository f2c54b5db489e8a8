"""Adaptive batching through the real server: mixed protocols and row counts at once.

Every concurrent request, whatever carried it, must get exactly the
predictions of its own rows; /metrics must show that requests were merged.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from pathlib import Path

import httpx
import joblib
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from serverproc import ServerProcess, metric


@pytest.fixture(scope="module")
def batching_server(iris_dir: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(
        "sklearnserver",
        [
            "--model_name=iris",
            f"--model_dir={iris_dir}",
            "--max_batch_size=64",
            "--max_batch_delay_ms=20",
        ],
    )
    with server:
        yield server


def _v2_json(server, rows):
    body = {
        "inputs": [
            {"name": "x", "shape": list(rows.shape), "datatype": "FP64", "data": rows.tolist()}
        ]
    }
    r = httpx.post(f"{server.http_url}/v2/models/iris/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return np.asarray(r.json()["outputs"][0]["data"])


def _v2_binary(server, rows):
    client = thttp.InferenceServerClient(server.http_address)
    inp = thttp.InferInput("x", list(rows.shape), "FP64")
    inp.set_data_from_numpy(rows, binary_data=True)
    return client.infer("iris", [inp]).as_numpy("predict")


def _grpc(server, rows):
    client = tgrpc.InferenceServerClient(server.grpc_address)
    inp = tgrpc.InferInput("x", list(rows.shape), "FP64")
    inp.set_data_from_numpy(rows)
    return client.infer("iris", [inp]).as_numpy("predict")


def _v1(server, rows):
    r = httpx.post(
        f"{server.http_url}/v1/models/iris:predict", json={"instances": rows.tolist()}, timeout=30
    )
    assert r.status_code == 200, r.text
    return np.asarray(r.json()["predictions"])


def test_concurrent_mixed_requests_get_their_own_rows(batching_server, iris_dir):
    estimator = joblib.load(iris_dir / "model.joblib")
    rng = np.random.default_rng(7)
    senders = [_v2_json, _v2_binary, _grpc, _v1]
    jobs = []
    for i in range(120):
        rows = rng.uniform([4, 2, 1, 0], [8, 4.5, 7, 2.5], size=(int(rng.integers(1, 9)), 4))
        jobs.append((senders[i % len(senders)], rows))
    requests_before = metric(batching_server, "modelserver_batch_requests_sum", "iris")
    batches_before = metric(batching_server, "modelserver_batch_requests_count", "iris")

    with concurrent.futures.ThreadPoolExecutor(24) as pool:
        results = list(pool.map(lambda job: job[0](batching_server, job[1]), jobs))

    for (_, rows), got in zip(jobs, results, strict=True):
        np.testing.assert_array_equal(got, estimator.predict(rows))
    merged = metric(batching_server, "modelserver_batch_requests_sum", "iris") - requests_before
    batches = metric(batching_server, "modelserver_batch_requests_count", "iris") - batches_before
    assert merged == len(jobs)
    assert batches < len(jobs), "no two requests were ever merged"


def test_a_bad_request_is_not_merged_with_good_ones(batching_server, iris_dir):
    estimator = joblib.load(iris_dir / "model.joblib")
    good = np.array([[5.1, 3.5, 1.4, 0.2]])
    bad = np.array([[5.1, 3.5, 1.4]])

    def send(rows):
        body = {
            "inputs": [
                {"name": "x", "shape": list(rows.shape), "datatype": "FP64", "data": rows.tolist()}
            ]
        }
        return httpx.post(f"{batching_server.http_url}/v2/models/iris/infer", json=body, timeout=30)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(send, [good, bad] * 8))
    for rows, r in zip([good, bad] * 8, responses, strict=True):
        if rows.shape[1] == 4:
            assert r.status_code == 200, r.text
            assert r.json()["outputs"][0]["data"] == estimator.predict(rows).tolist()
        else:
            assert r.status_code == 400
            assert "expects 4 features" in r.json()["error"]

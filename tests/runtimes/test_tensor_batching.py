"""Adaptive batching of graph models: named tensors stacked, each request gets its rows.

onnxserver serves the skl2onnx iris pipeline with ``--max_batch_size``;
concurrent requests of 1-8 rows must each get exactly what ONNX Runtime
computes for their own rows, and /metrics must show that requests were
merged.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from serverproc import ServerProcess, metric

ort = pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def onnx_models(framework_samples) -> dict[str, Path]:
    return framework_samples("onnx")


@pytest.fixture(scope="module")
def server(onnx_models: dict[str, Path]) -> Iterator[ServerProcess]:
    root = onnx_models["iris-pipeline"].parent
    proc = ServerProcess(
        "onnxserver",
        [
            "--model_name=unused",
            f"--model_dir={root}",
            "--device=cpu",
            "--max_batch_size=32",
            "--max_batch_delay_ms=5",
        ],
    )
    with proc:
        yield proc


def test_concurrent_requests_are_merged_and_split_back(server, onnx_models) -> None:
    from sklearn.datasets import load_iris

    session = ort.InferenceSession(
        str(onnx_models["iris-pipeline"] / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    X = load_iris().data.astype(np.float32)
    jobs = [X[i : i + 1 + i % 8] for i in range(0, 120, 2)]
    before_requests = metric(server, "modelserver_batch_requests_sum", "iris-pipeline")
    before_batches = metric(server, "modelserver_batch_requests_count", "iris-pipeline")

    def send(rows: np.ndarray) -> dict:
        body = {
            "inputs": [
                {
                    "name": "input",
                    "shape": list(rows.shape),
                    "datatype": "FP32",
                    "data": rows.reshape(-1).tolist(),
                }
            ]
        }
        reply = httpx.post(f"{server.http_url}/v2/models/iris-pipeline/infer", json=body)
        assert reply.status_code == 200, reply.text
        return {o["name"]: o for o in reply.json()["outputs"]}

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(send, jobs))
    for rows, outputs in zip(jobs, answers, strict=True):
        label, probabilities = session.run(["label", "probabilities"], {"input": rows})
        assert outputs["label"]["data"] == label.tolist()
        assert outputs["probabilities"]["shape"] == list(probabilities.shape)
        np.testing.assert_allclose(
            outputs["probabilities"]["data"], probabilities.reshape(-1), rtol=1e-5, atol=1e-7
        )
    merged = metric(server, "modelserver_batch_requests_sum", "iris-pipeline") - before_requests
    batches = metric(server, "modelserver_batch_requests_count", "iris-pipeline") - before_batches
    assert merged == len(jobs)
    assert batches < len(jobs), "no two requests were ever merged"

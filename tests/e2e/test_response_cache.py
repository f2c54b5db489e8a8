"""The response cache through the real server: one entry for every protocol, counted, forgotten.

sklearnserver over a repository of the iris sample with
``--response_cache_size``: the same rows sent as v2 JSON, with the binary
extension and over gRPC are one entry (the key is taken on the decoded
tensors), v1 has its own (its input is named ``instances``), hits and misses
appear in ``/metrics`` and in Triton's statistics, the answers stay the
estimator's, and a reload or an unload forgets the model's entries. Without
the flag nothing is kept.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import joblib
import numpy as np
import pytest
from protocol_clients import PROTOCOLS, infer
from serverproc import ServerProcess, metric

pytestmark = pytest.mark.e2e

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])
HITS = "modelserver_response_cache_hits_total"
MISSES = "modelserver_response_cache_misses_total"
ENTRIES = "modelserver_response_cache_entries"


@pytest.fixture(scope="module")
def root(iris_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cached")
    shutil.copytree(iris_dir, root / "iris")
    return root


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[ServerProcess]:
    args = ["--model_name=unused", f"--model_dir={root}", "--response_cache_size=16"]
    with ServerProcess("sklearnserver", args) as proc:
        yield proc


def _counts(server: ServerProcess) -> tuple[float, float]:
    return metric(server, HITS, "iris"), metric(server, MISSES, "iris")


def _stats(server: ServerProcess) -> dict:
    reply = httpx.get(f"{server.http_url}/v2/models/iris/stats", timeout=30)
    return reply.json()["model_stats"][0]["inference_stats"]


def test_one_entry_serves_json_binary_and_grpc(server: ServerProcess, iris_dir: Path) -> None:
    estimator = joblib.load(iris_dir / "model.joblib")
    rows = ROWS + 0.01  # rows no other test sends
    hits, misses = _counts(server)
    for protocol in PROTOCOLS:
        got = infer(server, "iris", {"input-0": rows}, protocol, ["predict", "predict_proba"])
        assert got["predict"].tolist() == estimator.predict(rows).tolist(), protocol
        np.testing.assert_allclose(got["predict_proba"], estimator.predict_proba(rows))
    assert _counts(server) == (hits + 2, misses + 1)


def test_other_rows_or_outputs_are_other_entries(server: ServerProcess) -> None:
    rows = ROWS + 0.02
    hits, misses = _counts(server)
    infer(server, "iris", {"input-0": rows}, "json", ["predict"])
    infer(server, "iris", {"input-0": rows}, "json", ["predict_proba"])
    infer(server, "iris", {"input-0": rows + 1}, "json", ["predict"])
    assert _counts(server) == (hits, misses + 3)


def test_v1_predict_hits_too(server: ServerProcess) -> None:
    hits, misses = _counts(server)
    body = {"instances": (ROWS + 0.03).tolist()}
    answers = [
        httpx.post(f"{server.http_url}/v1/models/iris:predict", json=body, timeout=30).json()
        for _ in range(3)
    ]
    assert answers[0] == answers[1] == answers[2]
    assert _counts(server) == (hits + 2, misses + 1)


def test_statistics_count_hits_as_triton_does(server: ServerProcess) -> None:
    before = _stats(server)
    rows = ROWS + 0.04
    for _ in range(3):
        infer(server, "iris", {"input-0": rows}, "grpc")
    after = _stats(server)
    assert after["cache_hit"]["count"] - before["cache_hit"]["count"] == 2
    assert after["cache_miss"]["count"] - before["cache_miss"]["count"] == 1
    assert after["success"]["count"] - before["success"]["count"] == 3
    assert after["compute_infer"]["count"] - before["compute_infer"]["count"] == 1


@pytest.mark.parametrize("operation", ["load", "unload"])
def test_reload_and_unload_forget_the_model(server: ServerProcess, operation: str) -> None:
    rows = {"input-0": ROWS + 0.05}
    infer(server, "iris", rows, "json")
    assert metric(server, ENTRIES) >= 1
    reply = httpx.post(f"{server.http_url}/v2/repository/models/iris/{operation}", timeout=60)
    assert reply.status_code == 200, reply.text
    assert metric(server, ENTRIES) == 0
    if operation == "unload":
        reply = httpx.post(f"{server.http_url}/v2/repository/models/iris/load", timeout=60)
        assert reply.status_code == 200, reply.text
    hits, misses = _counts(server)
    infer(server, "iris", rows, "json")
    assert _counts(server) == (hits, misses + 1)  # computed again by the new instance


def test_off_by_default(iris_server: ServerProcess) -> None:
    for _ in range(2):
        infer(iris_server, "iris", {"input-0": ROWS}, "json")
    assert metric(iris_server, HITS) == metric(iris_server, MISSES) == 0
    assert metric(iris_server, ENTRIES) == 0

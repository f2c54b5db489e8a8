"""Prometheus metrics at ``GET /metrics``, scraped from real server processes.

Every check reads the exposition with prometheus_client's own parser and
compares two scrapes: a counter or histogram must move by exactly the number
of requests sent in between, whatever protocol carried them (v1 REST, v2 REST
JSON and binary, v2 gRPC), errors included. Each test module starts its own
servers so no other test's traffic can move the numbers.
"""

from __future__ import annotations

import concurrent.futures
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import joblib
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from prometheus_client.parser import text_string_to_metric_families
from serverproc import ServerProcess, poll_until
from tritonclient.utils import InferenceServerException

pytestmark = pytest.mark.e2e

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
ROW = [[6.7, 3.0, 5.2, 2.3]]
STATES = ("LOADING", "READY", "UNAVAILABLE", "FAILED")


# -- reading /metrics ----------------------------------------------------------


class Scrape:
    """One parsed /metrics answer: sample values by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in self.families.values():
            for s in family.samples:
                self.samples[(s.name, frozenset(s.labels.items()))] = s.value

    def get(self, name: str, **labels: str) -> float:
        """The sample with exactly these labels; 0 when absent (a child not yet created)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def buckets(self, name: str, **labels: str) -> list[tuple[float, float]]:
        """(upper bound, cumulative count) of a histogram child, in bound order."""
        out = []
        for (sample, labelset), value in self.samples.items():
            found = dict(labelset)
            le = found.pop("le", None)
            if sample == f"{name}_bucket" and le is not None and found == labels:
                out.append((float(le), value))
        return sorted(out)

    def labels_of(self, name: str, label: str) -> set[str]:
        return {dict(ls)[label] for (sample, ls), _ in self.samples.items() if sample == name}


def scrape(server: ServerProcess, client: httpx.Client | None = None) -> Scrape:
    get = client.get if client is not None else httpx.get
    r = get(f"{server.http_url}/metrics", timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain"), r.headers
    return Scrape(r.text)


def wait_metric(server, predicate, what: str, timeout: float = 20.0) -> Scrape:
    """Scrape until ``predicate(scrape)`` holds (bounded)."""
    return poll_until(lambda: scrape(server), predicate, what, timeout)


# -- sending requests -----------------------------------------------------------


def v1(server: ServerProcess, client: httpx.Client, name: str = "iris", body=None):
    body = {"instances": ROW} if body is None else body
    return client.post(f"{server.http_url}/v1/models/{name}:predict", json=body, timeout=30)


def v2_json(server: ServerProcess, client: httpx.Client, name: str = "iris", rows=ROW):
    body = {
        "inputs": [{"name": "x", "shape": list(np.shape(rows)), "datatype": "FP64", "data": rows}]
    }
    return client.post(f"{server.http_url}/v2/models/{name}/infer", json=body, timeout=30)


def v2_binary(server: ServerProcess, rows=ROW) -> np.ndarray:
    client = thttp.InferenceServerClient(server.http_address)
    try:
        inp = thttp.InferInput("x", list(np.shape(rows)), "FP64")
        inp.set_data_from_numpy(np.asarray(rows, dtype=np.float64), binary_data=True)
        out = thttp.InferRequestedOutput("predict", binary_data=True)
        return client.infer("iris", [inp], outputs=[out]).as_numpy("predict")
    finally:
        client.close()


def grpc_infer(server: ServerProcess, name: str = "iris", rows=ROW) -> np.ndarray:
    client = tgrpc.InferenceServerClient(server.grpc_address)
    try:
        inp = tgrpc.InferInput("x", list(np.shape(rows)), "FP64")
        inp.set_data_from_numpy(np.asarray(rows, dtype=np.float64))
        return client.infer(name, [inp]).as_numpy("predict")
    finally:
        client.close()


def slow_infer(server: ServerProcess, seconds: float) -> httpx.Response:
    body = {"inputs": [{"name": "s", "shape": [1], "datatype": "FP64", "data": [seconds]}]}
    return httpx.post(f"{server.http_url}/v2/models/slow/infer", json=body, timeout=60)


# -- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(iris_dir: Path) -> Iterator[ServerProcess]:
    """A private iris server: only this module's requests move its counters."""
    with ServerProcess("sklearnserver", ["--model_name=iris", f"--model_dir={iris_dir}"]) as s:
        yield s


@pytest.fixture(scope="module")
def expected(iris_dir: Path) -> int:
    return int(joblib.load(iris_dir / "model.joblib").predict(np.array(ROW))[0])


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """SlowModel with one predict thread: concurrent requests are in flight and queue."""
    server = ServerProcess(
        "modelserver",
        [
            "--model_class=slow_model:SlowModel",
            "--model_name=slow",
            f"--model_dir={tmp_path_factory.mktemp('slow')}",
            "--max_threads=1",
            "--predict_executor=thread",
        ],
        env={"PYTHONPATH": str(MODELS_DIR)},
    )
    with server:
        yield server


# -- the endpoint ------------------------------------------------------------------


def test_metrics_endpoint_serves_every_family(server, expected):
    with httpx.Client() as client:
        assert v2_json(server, client).status_code == 200
    current = scrape(server)
    families = current.families
    for name, kind in [
        ("modelserver_requests", "counter"),
        ("modelserver_request_duration_seconds", "histogram"),
        ("modelserver_queue_duration_seconds", "histogram"),
        ("modelserver_predict_duration_seconds", "histogram"),
        ("modelserver_inflight_requests", "gauge"),
        ("modelserver_batch_requests", "histogram"),
        ("modelserver_batch_rows", "histogram"),
        ("modelserver_model_load_seconds", "gauge"),
        ("modelserver_model_state", "gauge"),
        ("modelserver_logger_events", "counter"),
    ]:
        assert name in families, f"{name} missing from /metrics:\n{current.text}"
        assert families[name].type == kind, (name, families[name].type)
    assert current.get("modelserver_requests_total", model="iris", protocol="v2-rest", status="200")
    # The scrape itself is not an inference, and nothing else is in flight.
    assert current.get("modelserver_inflight_requests") == 0


def test_requests_counted_by_model_protocol_and_status(server, expected):
    sent = {"v1-rest": 3, "v2-rest": 4 + 2, "v2-grpc": 5}
    ok = {"v1-rest": "200", "v2-rest": "200", "v2-grpc": "OK"}
    before = scrape(server)
    with httpx.Client() as client:
        for _ in range(3):
            r = v1(server, client)
            assert r.status_code == 200, r.text
            assert r.json()["predictions"] == [expected]
        for _ in range(4):
            r = v2_json(server, client)
            assert r.status_code == 200, r.text
            assert r.json()["outputs"][0]["data"] == [expected]
    for _ in range(2):
        assert v2_binary(server).tolist() == [expected]
    for _ in range(5):
        assert grpc_infer(server).tolist() == [expected]
    after = scrape(server)

    for protocol, n in sent.items():
        labels = {"model": "iris", "protocol": protocol}
        moved = after.get("modelserver_requests_total", **labels, status=ok[protocol]) - (
            before.get("modelserver_requests_total", **labels, status=ok[protocol])
        )
        assert moved == n, (protocol, moved)
        # One whole-request latency observation per request, per protocol.
        hist = "modelserver_request_duration_seconds_count"
        assert after.get(hist, **labels) - before.get(hist, **labels) == n, protocol
        assert after.get("modelserver_request_duration_seconds_sum", **labels) > before.get(
            "modelserver_request_duration_seconds_sum", **labels
        )
    total = sum(sent.values())
    # Queueing and predict are per model: one observation per inference, any protocol.
    for hist in ("modelserver_queue_duration_seconds", "modelserver_predict_duration_seconds"):
        moved = after.get(f"{hist}_count", model="iris") - before.get(f"{hist}_count", model="iris")
        assert moved == total, (hist, moved)
    # No error status moved.
    statuses = after.labels_of("modelserver_requests_total", "status")
    assert statuses <= {"200", "OK"}, statuses
    assert after.get("modelserver_inflight_requests") == 0


def test_histograms_are_well_formed(server):
    with httpx.Client() as client:
        for _ in range(3):
            assert v2_json(server, client).status_code == 200
    current = scrape(server)
    for name, labels in [
        ("modelserver_request_duration_seconds", {"model": "iris", "protocol": "v2-rest"}),
        ("modelserver_queue_duration_seconds", {"model": "iris"}),
        ("modelserver_predict_duration_seconds", {"model": "iris"}),
    ]:
        buckets = current.buckets(name, **labels)
        assert buckets, f"{name}{labels} has no buckets:\n{current.text}"
        counts = [c for _, c in buckets]
        assert counts == sorted(counts), f"{name} buckets are not cumulative: {buckets}"
        assert buckets[-1][0] == float("inf")
        assert buckets[-1][1] == current.get(f"{name}_count", **labels) >= 3
        assert current.get(f"{name}_sum", **labels) >= 0


def test_errors_are_counted_with_their_status(server):
    before = scrape(server)
    with httpx.Client() as client:
        # 400: not JSON, and the wrong number of features (the model refuses it).
        bad = client.post(
            f"{server.http_url}/v2/models/iris/infer", content=b"{not json", timeout=30
        )
        assert bad.status_code == 400, bad.text
        assert v2_json(server, client, rows=[[1.0, 2.0, 3.0]]).status_code == 400
        assert v1(server, client, body={"instances": "nope"}).status_code == 400
        # 404: unknown models, all under one "<unknown>" label.
        for name in ("nope-1", "nope-2", "nope-3"):
            assert v2_json(server, client, name=name).status_code == 404
        assert v1(server, client, name="nope-4").status_code == 404
    with pytest.raises(InferenceServerException) as unknown:
        grpc_infer(server, name="nope-5")
    assert "NOT_FOUND" in str(unknown.value.status())
    with pytest.raises(InferenceServerException) as invalid:
        grpc_infer(server, rows=[[1.0, 2.0, 3.0]])
    assert "INVALID_ARGUMENT" in str(invalid.value.status())
    after = scrape(server)

    def moved(model: str, protocol: str, status: str) -> float:
        labels = {"model": model, "protocol": protocol, "status": status}
        return after.get("modelserver_requests_total", **labels) - before.get(
            "modelserver_requests_total", **labels
        )

    assert moved("iris", "v2-rest", "400") == 2
    assert moved("iris", "v1-rest", "400") == 1
    assert moved("<unknown>", "v2-rest", "404") == 3
    assert moved("<unknown>", "v1-rest", "404") == 1
    assert moved("<unknown>", "v2-grpc", "NOT_FOUND") == 1
    assert moved("iris", "v2-grpc", "INVALID_ARGUMENT") == 1
    for protocol, status in [("v2-rest", "200"), ("v1-rest", "200"), ("v2-grpc", "OK")]:
        assert moved("iris", protocol, status) == 0
    # Unknown names never become label values (bounded cardinality).
    models = after.labels_of("modelserver_requests_total", "model")
    assert models <= {"iris", "<unknown>"}, models
    # Errors are timed too.
    labels = {"model": "<unknown>", "protocol": "v2-rest"}
    hist = "modelserver_request_duration_seconds_count"
    assert after.get(hist, **labels) - before.get(hist, **labels) == 3
    # A body that never decoded was never predicted.
    assert after.get("modelserver_predict_duration_seconds_count", model="iris") == before.get(
        "modelserver_predict_duration_seconds_count", model="iris"
    )


def test_a_malformed_grpc_message_is_counted(server):
    """Like a REST body that is not JSON (400), bytes that are no ModelInferRequest count."""
    before = scrape(server)
    with grpc.insecure_channel(server.grpc_address) as channel:
        infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as error:
            infer(b"\xff\xff\xff", timeout=30)
    assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    after = scrape(server)
    labels = {"protocol": "v2-grpc", "status": "INVALID_ARGUMENT"}
    counted = {
        model: after.get("modelserver_requests_total", model=model, **labels)
        - before.get("modelserver_requests_total", model=model, **labels)
        for model in ("<unknown>", "iris")
    }
    assert sum(counted.values()) == 1, counted


def test_model_load_time_and_state(server):
    current = scrape(server)
    assert current.get("modelserver_model_load_seconds", model="iris") > 0
    assert _states(current, "iris") == READY


# -- in flight, queueing, predict time --------------------------------------------------


def test_inflight_gauge_counts_requests_being_served(slow_server):
    assert scrape(slow_server).get("modelserver_inflight_requests") == 0
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        pending = [pool.submit(slow_infer, slow_server, 0.4) for _ in range(3)]
        seen = wait_metric(
            slow_server,
            lambda s: s.get("modelserver_inflight_requests") == 3,
            "three requests in flight",
        )
        assert seen.get("modelserver_inflight_requests") == 3
        responses = [p.result() for p in pending]
    assert [r.status_code for r in responses] == [200] * 3
    # Every request has been answered, so none is in flight any more.
    assert scrape(slow_server).get("modelserver_inflight_requests") == 0


def test_queue_and_predict_durations_measure_the_right_phases(slow_server):
    """One predict thread: the second of two 0.8 s requests waits for the first."""
    before = scrape(slow_server)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(slow_infer, slow_server, 0.8)
        wait_metric(
            slow_server, lambda s: s.get("modelserver_inflight_requests") >= 1, "first in flight"
        )
        second = pool.submit(slow_infer, slow_server, 0.8)
        assert first.result().status_code == 200
        assert second.result().status_code == 200
    after = scrape(slow_server)

    def moved(name: str, **labels: str) -> float:
        return after.get(name, **labels) - before.get(name, **labels)

    assert moved("modelserver_predict_duration_seconds_count", model="slow") == 2
    # Each predict slept 0.8 s: both fall above the 0.5 s bucket.
    assert moved("modelserver_predict_duration_seconds_sum", model="slow") >= 1.55
    le_half = dict(after.buckets("modelserver_predict_duration_seconds", model="slow"))[0.5]
    assert (
        le_half == dict(before.buckets("modelserver_predict_duration_seconds", model="slow"))[0.5]
    )
    assert moved("modelserver_queue_duration_seconds_count", model="slow") == 2
    # The second one waited for the first's predict (less the moment between them).
    assert moved("modelserver_queue_duration_seconds_sum", model="slow") >= 0.3
    labels = {"model": "slow", "protocol": "v2-rest"}
    assert moved("modelserver_request_duration_seconds_count", **labels) == 2
    assert moved("modelserver_request_duration_seconds_sum", **labels) >= 1.55 + 0.3


# -- batching ---------------------------------------------------------------------------


def test_batch_size_histograms(iris_dir):
    server = ServerProcess(
        "sklearnserver",
        [
            "--model_name=iris",
            f"--model_dir={iris_dir}",
            "--max_batch_size=16",
            "--max_batch_delay_ms=20",
        ],
    )
    rng = np.random.default_rng(3)
    jobs = [rng.uniform(0, 5, size=(int(rng.integers(1, 4)), 4)).tolist() for _ in range(24)]
    with server:
        before = scrape(server)

        with httpx.Client() as client, concurrent.futures.ThreadPoolExecutor(8) as pool:
            codes = list(
                pool.map(lambda rows: v2_json(server, client, rows=rows).status_code, jobs)
            )
        assert codes == [200] * len(jobs)
        after = scrape(server)

    def moved(name: str) -> float:
        return after.get(name, model="iris") - before.get(name, model="iris")

    batches = moved("modelserver_batch_requests_count")
    assert 1 <= batches <= len(jobs)
    assert moved("modelserver_batch_rows_count") == batches
    # Every request and every row went through exactly one batch.
    assert moved("modelserver_batch_requests_sum") == len(jobs)
    assert moved("modelserver_batch_rows_sum") == sum(len(rows) for rows in jobs)
    # No batch exceeded --max_batch_size rows.
    rows_buckets = dict(after.buckets("modelserver_batch_rows", model="iris"))
    assert rows_buckets[16.0] == rows_buckets[float("inf")]


# -- model state through the repository -------------------------------------------------


@pytest.fixture(scope="module")
def repo_server(
    iris_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A multi-model server of its own; each test below unloads or breaks its own model."""
    root = tmp_path_factory.mktemp("repo")
    for name in ("unload-me", "reload-me", "break-me", "stay"):
        shutil.copytree(iris_dir, root / name)
    server = ServerProcess("sklearnserver", ["--model_name=ignored", f"--model_dir={root}"])
    server.root = root  # type: ignore[attr-defined]
    with server:
        yield server


READY = {"LOADING": 0, "READY": 1, "UNAVAILABLE": 0, "FAILED": 0}
UNAVAILABLE = {"LOADING": 0, "READY": 0, "UNAVAILABLE": 1, "FAILED": 0}
FAILED = {"LOADING": 0, "READY": 0, "UNAVAILABLE": 0, "FAILED": 1}


def _states(current: Scrape, model: str) -> dict[str, float]:
    return {s: current.get("modelserver_model_state", model=model, state=s) for s in STATES}


def _repository_state(server: ServerProcess, model: str) -> str | None:
    index = httpx.post(f"{server.http_url}/v2/repository/index", timeout=30).json()
    return {e["name"]: e.get("state") for e in index}[model]


def _repository(server: ServerProcess, action: str, model: str) -> httpx.Response:
    return httpx.post(f"{server.http_url}/v2/repository/models/{model}/{action}", timeout=60)


def test_every_model_of_a_repository_has_its_state_and_load_time(repo_server):
    current = scrape(repo_server)
    for model in ("unload-me", "reload-me", "break-me", "stay"):
        assert _states(current, model) == READY, model
        assert current.get("modelserver_model_load_seconds", model=model) > 0


def test_model_state_after_unload(repo_server):
    r = _repository(repo_server, "unload", "unload-me")
    assert r.status_code == 200, r.text
    assert _repository_state(repo_server, "unload-me") == "UNAVAILABLE"
    current = scrape(repo_server)
    assert _states(current, "unload-me") == UNAVAILABLE
    assert _states(current, "stay") == READY
    # A request to the unloaded model is counted under its name, as 503.
    with httpx.Client() as client:
        assert v2_json(repo_server, client, name="unload-me").status_code == 503
    assert (
        scrape(repo_server).get(
            "modelserver_requests_total", model="unload-me", protocol="v2-rest", status="503"
        )
        == 1
    )


def test_model_state_after_unload_then_load(repo_server):
    _repository(repo_server, "unload", "unload-me")
    r = _repository(repo_server, "load", "unload-me")
    assert r.status_code == 200, r.text
    assert _repository_state(repo_server, "unload-me") == "READY"
    with httpx.Client() as client:
        assert v2_json(repo_server, client, name="unload-me").status_code == 200
    assert _states(scrape(repo_server), "unload-me") == READY


def test_model_state_after_reloading_a_ready_model(repo_server):
    r = _repository(repo_server, "load", "reload-me")
    assert r.status_code == 200, r.text
    assert _repository_state(repo_server, "reload-me") == "READY"
    assert _states(scrape(repo_server), "reload-me") == READY


def test_model_state_of_a_model_that_fails_to_load(repo_server):
    broken = repo_server.root / "broken"  # type: ignore[attr-defined]
    broken.mkdir()
    (broken / "model.joblib").write_bytes(b"this is not a pickle")
    r = _repository(repo_server, "load", "broken")
    assert r.status_code == 400, r.text
    assert _repository_state(repo_server, "broken") == "FAILED"
    assert _states(scrape(repo_server), "broken") == FAILED


def test_model_state_after_a_failed_reload_matches_the_repository(repo_server):
    """A reload that fails keeps serving the previous load: the gauge must still say READY."""
    root = repo_server.root  # type: ignore[attr-defined]
    (root / "break-me" / "model.joblib").write_bytes(b"this is not a pickle")
    r = _repository(repo_server, "load", "break-me")
    assert r.status_code == 400, r.text
    with httpx.Client() as client:
        assert v2_json(repo_server, client, name="break-me").status_code == 200
    assert _repository_state(repo_server, "break-me") == "READY"
    assert _states(scrape(repo_server), "break-me") == READY


# -- several workers: one view ---------------------------------------------------------


def test_workers_share_one_metrics_view(iris_dir, expected):
    server = ServerProcess(
        "sklearnserver", ["--model_name=iris", f"--model_dir={iris_dir}", "--workers=2"]
    )
    n_rest, n_grpc = 24, 6
    with server:
        # Both workers serving (the first one alone already answers readiness).
        deadline = time.monotonic() + 60
        while server.output().count("serving iris") < 2:
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.05)
        # A fresh connection per request: SO_REUSEPORT spreads them over both workers.
        with httpx.Client(headers={"Connection": "close"}) as client:

            def send(_):
                return v1(server, client).json()["predictions"]

            with concurrent.futures.ThreadPoolExecutor(6) as pool:
                assert list(pool.map(send, range(n_rest))) == [[expected]] * n_rest
        for _ in range(n_grpc):
            assert grpc_infer(server).tolist() == [expected]
        for _ in range(10):
            current = scrape(server)  # a new connection each time: either worker answers

            assert (
                current.get(
                    "modelserver_requests_total", model="iris", protocol="v1-rest", status="200"
                )
                == n_rest
            ), current.text
            assert (
                current.get(
                    "modelserver_requests_total", model="iris", protocol="v2-grpc", status="OK"
                )
                == n_grpc
            ), current.text
            labels = {"model": "iris", "protocol": "v1-rest"}
            assert current.get("modelserver_request_duration_seconds_count", **labels) == n_rest
            assert current.get("modelserver_predict_duration_seconds_count", model="iris") == (
                n_rest + n_grpc
            )
            assert current.get("modelserver_inflight_requests") == 0
            # Both workers loaded iris; the state is still one READY, not two.
            assert _states(current, "iris") == READY
            assert current.get("modelserver_model_load_seconds", model="iris") > 0


def test_metrics_can_be_switched_off(iris_dir: Path) -> None:
    """--enable_metrics false: inference works and records nothing."""
    server = ServerProcess(
        "sklearnserver", ["--model_name=iris", f"--model_dir={iris_dir}", "--enable_metrics=false"]
    )
    with server:
        body = {
            "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [[1, 2, 3, 4]]}]
        }
        for _ in range(3):
            assert (
                httpx.post(f"{server.http_url}/v2/models/iris/infer", json=body).status_code == 200
            )
        text = httpx.get(f"{server.http_url}/metrics").text
        assert "modelserver_requests_total{" not in text
        assert 'modelserver_predict_duration_seconds_count{model="iris"}' not in text

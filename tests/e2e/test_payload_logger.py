"""KServe's request/response logger: each inference posted to a sink as a CloudEvent.

The sink is a real HTTP server in this process that records every event's
headers and body. Events leave the model server asynchronously, so every
check polls the sink with a deadline; a sink that is down or slow must never
change an inference's answer, and events it cannot take are dropped (and
counted), never buffered without bound.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import joblib
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from prometheus_client.parser import text_string_to_metric_families
from serverproc import ServerProcess, free_port, poll_until, rss_mib
from sinks import Sink

pytestmark = pytest.mark.e2e

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


def _server(model_dir: Path, *flags: str) -> ServerProcess:
    return ServerProcess("sklearnserver", ["--model_name=iris", f"--model_dir={model_dir}", *flags])


def _v2_json(server: ServerProcess, request_id: str | None = None, rows=ROWS) -> httpx.Response:
    body: dict = {
        "inputs": [{"name": "x", "shape": [len(rows), 4], "datatype": "FP64", "data": rows}]
    }
    if request_id is not None:
        body["id"] = request_id
    return httpx.post(f"{server.http_url}/v2/models/iris/infer", json=body, timeout=30)


def _logger_events(server: ServerProcess) -> dict[str, float]:
    text = httpx.get(f"{server.http_url}/metrics", timeout=30).text
    out = {"sent": 0.0, "dropped": 0.0, "failed": 0.0}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "modelserver_logger_events_total":
                out[s.labels["outcome"]] = s.value
    return out


def _wait_events(server: ServerProcess, predicate, what: str, timeout: float = 15.0):
    return poll_until(lambda: _logger_events(server), predicate, what, timeout)


def _check_ce_headers(event: dict, kind: str, event_id: str) -> None:
    h = event["headers"]
    assert h["ce-specversion"] == "1.0", h
    assert h["ce-type"] == kind, h
    assert h["ce-id"] == event_id, h
    assert h["ce-source"], h
    assert h["ce-inferenceservicename"] == "iris", h
    assert h["ce-modelname"] == "iris", h
    assert h["content-type"].startswith("application/json"), h
    datetime.fromisoformat(h["ce-time"])  # a valid RFC 3339 time
    assert event["path"] == "/events"


@pytest.fixture(scope="module")
def estimator(iris_dir: Path):
    return joblib.load(iris_dir / "model.joblib")


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    with Sink() as s:
        yield s


@pytest.fixture(scope="module")
def server_for(iris_dir: Path, sink: Sink) -> Iterator:
    """mode -> a server logging to ``sink`` in that mode (started on first use)."""
    started: dict[str, ServerProcess] = {}

    def get(mode: str) -> ServerProcess:
        if mode not in started:
            server = _server(iris_dir, f"--logger_url={sink.url}", f"--logger_mode={mode}")
            started[mode] = server.start()
        return started[mode]

    try:
        yield get
    finally:
        for server in started.values():
            server.stop()


# -- what each mode sends ----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["all", "request", "response"])
def test_events_of_a_v2_rest_request(server_for, mode: str, sink: Sink, estimator):
    server = server_for(mode)
    event_id = f"rest-{mode}-1"
    r = _v2_json(server, event_id)
    assert r.status_code == 200, r.text
    predictions = estimator.predict(np.array(ROWS)).tolist()
    assert r.json()["outputs"][0]["data"] == predictions

    kinds = {"all": {REQUEST_TYPE, RESPONSE_TYPE}, "request": {REQUEST_TYPE}}.get(
        mode, {RESPONSE_TYPE}
    )
    events = sink.wait(
        lambda _: {e["headers"]["ce-type"] for e in sink.of(event_id)} >= kinds,
        f"{kinds} for {event_id}",
    )
    # Anything else for this request would have gone out with these; give it a moment.
    time.sleep(0.3)
    events = sink.of(event_id)
    assert sorted(e["headers"]["ce-type"] for e in events) == sorted(kinds), events
    _wait_events(server, lambda c: c["sent"] == len(kinds), f"{len(kinds)} sent")
    for event in events:
        kind = event["headers"]["ce-type"]
        _check_ce_headers(event, kind, event_id)
        body = json.loads(event["body"])
        if kind == REQUEST_TYPE:
            assert body["id"] == event_id
            (tensor,) = body["inputs"]
            assert tensor["name"] == "x"
            assert tensor["datatype"] == "FP64"
            assert tensor["shape"] == [2, 4]
            assert np.asarray(tensor["data"]).reshape(2, 4).tolist() == ROWS
        else:
            assert body["id"] == event_id
            assert body["model_name"] == "iris"
            (out,) = body["outputs"]
            assert out["name"] == "predict"
            assert out["shape"] == [2]
            assert out["data"] == predictions


def test_events_of_v1_binary_and_grpc_requests(server_for, sink: Sink, estimator):
    """Every protocol is logged, as v2 JSON (binary tensors inline)."""
    server = server_for("all")
    rows = np.array(ROWS)
    predictions = estimator.predict(rows).tolist()

    client = thttp.InferenceServerClient(server.http_address)
    inp = thttp.InferInput("x", [2, 4], "FP64")
    inp.set_data_from_numpy(rows, binary_data=True)
    out = thttp.InferRequestedOutput("predict", binary_data=True)
    got = client.infer("iris", [inp], outputs=[out], request_id="binary-1")
    assert got.as_numpy("predict").tolist() == predictions
    client.close()

    gclient = tgrpc.InferenceServerClient(server.grpc_address)
    ginp = tgrpc.InferInput("x", [2, 4], "FP64")
    ginp.set_data_from_numpy(rows)
    assert gclient.infer("iris", [ginp], request_id="grpc-1").as_numpy("predict").tolist() == (
        predictions
    )
    gclient.close()

    for event_id in ("binary-1", "grpc-1"):
        events = sink.wait(lambda _, i=event_id: len(sink.of(i)) == 2, f"2 events for {event_id}")
        by_kind = {e["headers"]["ce-type"]: e for e in sink.of(event_id)}
        assert set(by_kind) == {REQUEST_TYPE, RESPONSE_TYPE}, events
        for kind, event in by_kind.items():
            _check_ce_headers(event, kind, event_id)
        request = json.loads(by_kind[REQUEST_TYPE]["body"])
        assert np.asarray(request["inputs"][0]["data"]).reshape(2, 4).tolist() == ROWS
        response = json.loads(by_kind[RESPONSE_TYPE]["body"])
        assert response["outputs"][0]["data"] == predictions

    # v1 has no request id: the server makes one, shared by the request and its response.
    before_ids = {e["headers"]["ce-id"] for e in sink.snapshot()}
    r = httpx.post(
        f"{server.http_url}/v1/models/iris:predict", json={"instances": ROWS}, timeout=30
    )
    assert r.status_code == 200 and r.json()["predictions"] == predictions
    new = sink.wait(
        lambda ev: len([e for e in ev if e["headers"]["ce-id"] not in before_ids]) == 2,
        "2 events for the v1 request",
    )
    new = [e for e in new if e["headers"]["ce-id"] not in before_ids]
    assert len({e["headers"]["ce-id"] for e in new}) == 1, new
    event_id = new[0]["headers"]["ce-id"]
    assert event_id
    for event in new:
        _check_ce_headers(event, event["headers"]["ce-type"], event_id)
    response = next(e for e in new if e["headers"]["ce-type"] == RESPONSE_TYPE)
    assert json.loads(response["body"])["outputs"][0]["data"] == predictions


def test_the_logger_adds_no_log_lines(server_for, sink: Sink):
    """Sending events is not worth a log line per inference (the access log is off)."""
    server = server_for("all")
    before = server.output()
    assert _v2_json(server, "quiet-1").status_code == 200
    sink.wait(lambda _: len(sink.of("quiet-1")) == 2, "events of quiet-1")
    _wait_events(server, lambda c: c["sent"] >= 2, "events counted as sent")
    added = server.output()[len(before) :]
    assert added == "", f"log lines for one logged inference:\n{added}"


# -- a sink that is down or slow --------------------------------------------------------


def test_sink_down_inference_still_answers(iris_dir: Path, estimator):
    dead = f"http://127.0.0.1:{free_port()}/events"  # nothing listens there
    n = 10
    with _server(iris_dir, f"--logger_url={dead}") as server:
        predictions = estimator.predict(np.array(ROWS)).tolist()
        for i in range(n):
            r = _v2_json(server, f"down-{i}")
            assert r.status_code == 200, r.text
            assert r.json()["outputs"][0]["data"] == predictions
        counts = _wait_events(
            server,
            lambda c: c["failed"] + c["dropped"] >= 2 * n,
            "every event of the down sink failed or dropped",
        )
        assert counts["sent"] == 0
        assert counts["failed"] + counts["dropped"] == 2 * n
        assert counts["failed"] > 0


def test_slow_sink_drops_events_instead_of_buffering(iris_dir: Path, estimator):
    n = 20
    with (
        Sink(delay_s=2.0) as slow,
        _server(iris_dir, f"--logger_url={slow.url}", "--logger_queue_size=2") as server,
    ):
        predictions = estimator.predict(np.array(ROWS)).tolist()
        with httpx.Client(timeout=30) as client:
            body = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64", "data": ROWS}]}
            for i in range(n):
                body["id"] = f"slow-{i}"
                r = client.post(f"{server.http_url}/v2/models/iris/infer", json=body)
                assert r.status_code == 200, r.text
                assert r.json()["outputs"][0]["data"] == predictions
        counts = _logger_events(server)
        assert counts["dropped"] > 0, counts
        # Every event was queued before its inference answered: what is neither
        # sent, failed nor dropped is held, and that is bounded by the queue
        # (2) plus the few events the senders are posting, never the backlog.
        held = 2 * n - (counts["sent"] + counts["failed"] + counts["dropped"])
        assert 0 <= held <= 2 + 4, counts
        assert slow.max_concurrent <= 4


def test_queue_is_bounded_by_bytes_for_large_requests(iris_dir: Path, estimator):
    """1.6 MB requests and a slow sink: memory stays bounded by --logger_queue_bytes."""
    rows = np.random.default_rng(0).random((50_000, 4))
    n = 60
    with (
        Sink(delay_s=2.0) as slow,
        _server(
            iris_dir, f"--logger_url={slow.url}", f"--logger_queue_bytes={8 * 1024 * 1024}"
        ) as server,
    ):
        assert server.proc is not None
        client = thttp.InferenceServerClient(server.http_address)
        tensor = thttp.InferInput("x", list(rows.shape), "FP64")
        tensor.set_data_from_numpy(rows, binary_data=True)
        client.infer("iris", [tensor])  # warm up: first-use allocations are not the queue's
        before = rss_mib(server.proc.pid)
        for _ in range(n):
            result = client.infer("iris", [tensor])
        np.testing.assert_array_equal(result.as_numpy("predict"), estimator.predict(rows))
        grown = rss_mib(server.proc.pid) - before
        counts = _logger_events(server)
        # Unbounded, ~2 x 60 events of 1.6 MB would be held (190 MB); 8 MiB holds five.
        assert counts["dropped"] >= n, counts
        assert grown < 80, f"RSS grew {grown:.0f} MiB"

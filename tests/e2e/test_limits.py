"""End-to-end request limits: per-request timeout, client deadlines, concurrency, departed clients.

Each server serves ``ops_models:CountingSlowModel`` (predict sleeps its
input's value in seconds; its ``calls`` output counts the predicts that ran)
through ``python -m modelserver`` as the single model ``slow``. The body-size
limit (413 / RESOURCE_EXHAUSTED) is covered by test_errors.py.
"""

from __future__ import annotations

import concurrent.futures
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import orjson
import pytest
from modelserver import protos as M
from serverproc import ServerProcess, grpc_output, metric, slow_server

pytestmark = pytest.mark.e2e

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
INFER = "/v2/models/slow/infer"
PREDICT = "/v1/models/slow:predict"
TIMEOUT_S = 1.0
SLOW_S = 2.5  # well past TIMEOUT_S
WAIT_S = 30.0  # the most any poll or request here may take


# -- helpers -------------------------------------------------------------------------


def v2_body(seconds: float, outputs: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "inputs": [{"name": "s", "shape": [1], "datatype": "FP64", "data": [seconds]}]
    }
    if outputs:
        body["outputs"] = [{"name": n} for n in outputs]
    return body


def infer_v2(server: ServerProcess, seconds: float, timeout: float = WAIT_S) -> httpx.Response:
    return httpx.post(server.http_url + INFER, json=v2_body(seconds), timeout=timeout)


def predict_v1(server: ServerProcess, seconds: float) -> httpx.Response:
    return httpx.post(server.http_url + PREDICT, json={"instances": [[seconds]]}, timeout=WAIT_S)


def grpc_request(seconds: float) -> Any:
    req = M.ModelInferRequest(model_name="slow")
    req.inputs.add(name="s", datatype="FP64", shape=[1]).contents.fp64_contents.append(seconds)
    return req


def grpc_infer(server: ServerProcess) -> Callable[..., Any]:
    channel = grpc.insecure_channel(server.grpc_address)
    return channel.unary_unary(
        "/inference.GRPCInferenceService/ModelInfer",
        request_serializer=M.ModelInferRequest.SerializeToString,
        response_deserializer=M.ModelInferResponse.FromString,
    )


def grpc_value(response: Any) -> list[float]:
    assert [o.name for o in response.outputs] == ["predict"]
    return grpc_output(response)


def assert_ok_v2(r: httpx.Response, seconds: float) -> None:
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == [seconds], r.text


def assert_error(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert list(body) == ["error"] and isinstance(body["error"], str) and body["error"], body
    return body["error"]


def calls(server: ServerProcess) -> int:
    """How many predicts of ``slow`` ran in the server (asking runs none)."""
    r = httpx.post(server.http_url + INFER, json=v2_body(0, ["calls"]), timeout=WAIT_S)
    assert r.status_code == 200, r.text
    return int(r.json()["outputs"][0]["data"][0])


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def wait_inflight(server: ServerProcess, n: int) -> None:
    wait_until(
        lambda: metric(server, "modelserver_inflight_requests") >= n, f"{n} requests in flight"
    )


# -- per-request timeout -------------------------------------------------------------


@pytest.fixture(scope="module")
def timeout_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = slow_server(tmp_path_factory.mktemp("timeout"), f"--request_timeout={TIMEOUT_S}")
    with server:
        yield server


def test_request_timeout_rest_504(timeout_server: ServerProcess) -> None:
    message = assert_error(infer_v2(timeout_server, SLOW_S), 504)
    assert "timed out" in message.lower(), message
    message = assert_error(predict_v1(timeout_server, SLOW_S), 504)
    assert "timed out" in message.lower(), message
    # a fast request still succeeds, on the same server, while the slow predicts still sleep
    assert_ok_v2(infer_v2(timeout_server, 0), 0)
    r = predict_v1(timeout_server, 0.0)
    assert r.status_code == 200 and r.json() == {"predictions": [0.0]}, r.text


def test_request_timeout_grpc_deadline_exceeded(timeout_server: ServerProcess) -> None:
    infer = grpc_infer(timeout_server)
    # the client would wait far longer: the server's own timeout answers
    with pytest.raises(grpc.RpcError) as info:
        infer(grpc_request(SLOW_S), timeout=WAIT_S)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, info.value.details()
    assert "timed out" in (info.value.details() or "").lower(), info.value.details()
    assert grpc_value(infer(grpc_request(0.0), timeout=WAIT_S)) == [0.0]
    assert_ok_v2(infer_v2(timeout_server, 0), 0)


def test_request_timeout_holds_after_the_model_proved_fast(timeout_server: ServerProcess) -> None:
    """--request_timeout must hold whatever the predict executor decided.

    With the default ``--predict_executor auto`` a model whose predicts were
    fast is moved inline onto the event loop; a slow request after that must
    still get its 504, not a 200 once the predict finally returns.
    """
    with httpx.Client(base_url=timeout_server.http_url, timeout=WAIT_S) as c:
        for _ in range(40):
            assert c.post(INFER, json=v2_body(0)).status_code == 200
        r = c.post(INFER, json=v2_body(SLOW_S))
    assert_error(r, 504)
    assert_ok_v2(infer_v2(timeout_server, 0), 0)


# -- concurrency limit and client deadlines ------------------------------------------------


@pytest.fixture(scope="module")
def busy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = slow_server(tmp_path_factory.mktemp("busy"), "--max_concurrent_requests=2")
    with server:
        yield server


def _assert_busy(server: ServerProcess) -> None:
    """With the limit reached: REST v2 and v1 503, gRPC UNAVAILABLE, probes still answered."""
    for r in (infer_v2(server, 0), predict_v1(server, 0)):
        message = assert_error(r, 503)
        assert "busy" in message.lower() and "max_concurrent_requests" in message, message
    with pytest.raises(grpc.RpcError) as info:
        grpc_infer(server)(grpc_request(0.0), timeout=WAIT_S)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value.details()
    assert "busy" in (info.value.details() or "").lower()
    assert httpx.get(server.http_url + "/v2/health/ready").status_code == 200
    assert httpx.get(server.http_url + "/v2/models/slow/ready").status_code == 200


def test_max_concurrent_requests(busy_server: ServerProcess) -> None:
    infer = grpc_infer(busy_server)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        rest = pool.submit(infer_v2, busy_server, 1.5)
        rpc = pool.submit(infer, grpc_request(1.5), timeout=WAIT_S)
        wait_inflight(busy_server, 2)
        _assert_busy(busy_server)
        # those in flight get their full answers
        assert_ok_v2(rest.result(), 1.5)
        assert grpc_value(rpc.result()) == [1.5]
    wait_until(lambda: metric(busy_server, "modelserver_inflight_requests") == 0, "idle")
    assert_ok_v2(infer_v2(busy_server, 0), 0)
    assert grpc_value(infer(grpc_request(0.0), timeout=WAIT_S)) == [0.0]

    # the rejected requests did not leak or free slots: the limit is still exactly 2
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(predict_v1, busy_server, 1.0)
        second = pool.submit(infer_v2, busy_server, 1.0)
        wait_inflight(busy_server, 2)
        assert_error(infer_v2(busy_server, 0), 503)
        assert first.result().json() == {"predictions": [1.0]}
        assert_ok_v2(second.result(), 1.0)
    assert_ok_v2(infer_v2(busy_server, 0), 0)


def test_grpc_client_deadline_shorter_than_predict(busy_server: ServerProcess) -> None:
    infer = grpc_infer(busy_server)
    with pytest.raises(grpc.RpcError) as info:
        infer(grpc_request(1.5), timeout=0.3)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # the server keeps serving, and the departed call gave back its concurrency slot
    wait_until(lambda: metric(busy_server, "modelserver_inflight_requests") == 0, "slot freed")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        a = pool.submit(infer, grpc_request(0.5), timeout=WAIT_S)
        b = pool.submit(infer_v2, busy_server, 0.5)
        assert grpc_value(a.result()) == [0.5]
        assert_ok_v2(b.result(), 0.5)


# -- a client that leaves costs nothing after it left ---------------------------------------


@pytest.fixture(
    params=[
        pytest.param(["--predict_executor=thread", "--max_threads=1"], id="thread_pool"),
        pytest.param(["--max_batch_size=8", "--max_threads=1"], id="batching"),
    ],
    scope="module",
)
def queued_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One predict at a time: a second request waits for the first."""
    server = slow_server(tmp_path_factory.mktemp("queued"), *request.param)
    with server:
        yield server


def _raw_request_then_close(server: ServerProcess, path: str, body: Any, linger: float) -> None:
    """Send a whole HTTP request on a raw socket and close it without reading the answer."""
    data = orjson.dumps(body)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {server.http_address}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=WAIT_S) as s:
        s.sendall(head + data)
        time.sleep(linger)


def test_departed_clients_work_never_runs(queued_server: ServerProcess) -> None:
    server = queued_server
    before = calls(server)
    predicts_before = metric(server, "modelserver_predict_duration_seconds_count", "slow")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(infer_v2, server, 2.5)
        wait_inflight(server, 1)
        time.sleep(0.2)  # the first request is in its predict; everything after it waits
        # REST v2: the client times out and closes its connection
        with pytest.raises(httpx.TimeoutException):
            infer_v2(server, 0.25, timeout=0.3)
        # REST v1 on a raw socket, closed without reading
        _raw_request_then_close(server, PREDICT, {"instances": [[0.5]]}, linger=0.2)
        # gRPC: the client's deadline passes while the call waits
        with pytest.raises(grpc.RpcError) as info:
            grpc_infer(server)(grpc_request(0.75), timeout=0.3)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert not first.done()
        assert_ok_v2(first.result(), 2.5)
    # Only the first request's predict ran: had any abandoned one run, it ran
    # before this (one predict at a time, in arrival order) and was counted.
    assert calls(server) == before + 1
    predicts = metric(server, "modelserver_predict_duration_seconds_count", "slow")
    # the first request and the `calls` query above
    assert predicts == predicts_before + 2
    assert_ok_v2(infer_v2(server, 0), 0)

"""End-to-end graceful shutdown: SIGTERM and SIGINT while requests are in flight.

Each test starts its own ``python -m modelserver`` serving
``ops_models:CountingSlowModel`` (predict sleeps its input in seconds) and
stops it with a signal while REST v2, REST v1 and gRPC requests are running.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import serverproc
from modelserver import protos as M
from serverproc import ServerProcess, grpc_output

pytestmark = pytest.mark.e2e

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
WAIT_S = 30.0
SLOW_S = 2.0


def slow_server(tmp_path: Path, *flags: str) -> ServerProcess:
    return serverproc.slow_server(tmp_path, "--max_threads=8", *flags)


def infer_v2(server: ServerProcess, seconds: float) -> httpx.Response:
    body = {"inputs": [{"name": "s", "shape": [1], "datatype": "FP64", "data": [seconds]}]}
    return httpx.post(f"{server.http_url}/v2/models/slow/infer", json=body, timeout=WAIT_S)


def predict_v1(server: ServerProcess, seconds: float) -> httpx.Response:
    return httpx.post(
        f"{server.http_url}/v1/models/slow:predict", json={"instances": [[seconds]]}, timeout=WAIT_S
    )


def grpc_infer(address: str) -> Callable[..., Any]:
    channel = grpc.insecure_channel(address)
    return channel.unary_unary(
        "/inference.GRPCInferenceService/ModelInfer",
        request_serializer=M.ModelInferRequest.SerializeToString,
        response_deserializer=M.ModelInferResponse.FromString,
    )


def grpc_request(seconds: float) -> Any:
    req = M.ModelInferRequest(model_name="slow", id=f"req-{seconds}")
    req.inputs.add(name="s", datatype="FP64", shape=[1]).contents.fp64_contents.append(seconds)
    return req


def inflight(server: ServerProcess) -> float:
    text = httpx.get(f"{server.http_url}/metrics", timeout=WAIT_S).text
    match = re.search(r"^modelserver_inflight_requests (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def wait_inflight(server: ServerProcess, n: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while inflight(server) < n:
        assert time.monotonic() < deadline, f"never saw {n} requests in flight"
        time.sleep(0.05)


def http_refused(server: ServerProcess) -> bool:
    with socket.socket() as s:
        s.settimeout(2.0)
        return s.connect_ex(("127.0.0.1", server.http_port)) != 0


def wait_exit(server: ServerProcess, timeout: float) -> int:
    assert server.proc is not None
    try:
        return server.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        server.proc.kill()  # do not let the failure wait for the process too
        server.proc.wait()
        pytest.fail(f"server still running {timeout}s after the signal:\n{server.output()}")


def _drain_with_signal(server: ServerProcess, signum: int) -> None:
    """Several requests of each protocol in flight, then ``signum``: all answered, exit 0."""
    values = {"v2": [2.0, 2.25], "v1": [2.5], "grpc": [2.125, 2.375]}
    n = sum(len(v) for v in values.values())
    with server, concurrent.futures.ThreadPoolExecutor(n) as pool:
        pending: list[tuple[str, float, concurrent.futures.Future[Any]]] = []
        for seconds in values["v2"]:
            pending.append(("v2", seconds, pool.submit(infer_v2, server, seconds)))
        for seconds in values["v1"]:
            pending.append(("v1", seconds, pool.submit(predict_v1, server, seconds)))
        for seconds in values["grpc"]:
            call = grpc_infer(server.grpc_address)
            future = pool.submit(call, grpc_request(seconds), timeout=WAIT_S)
            pending.append(("grpc", seconds, future))
        wait_inflight(server, n)
        assert server.proc is not None
        os.kill(server.proc.pid, signum)
        assert not any(f.done() for _, _, f in pending), "a request finished before the signal"

        # New connections are refused while the old requests drain.
        deadline = time.monotonic() + 1.0
        while not http_refused(server):
            assert time.monotonic() < deadline, "HTTP port still accepts connections"
            time.sleep(0.02)
        with pytest.raises(grpc.RpcError) as info:
            grpc_infer(server.grpc_address)(grpc_request(0.0), timeout=2.0)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value.details()
        assert server.proc.poll() is None, "exited before the in-flight requests finished"

        for kind, seconds, future in pending:
            result = future.result()
            if kind == "v2":
                assert result.status_code == 200, result.text
                out = result.json()["outputs"]
                assert out[0]["name"] == "predict" and out[0]["data"] == [seconds], result.text
            elif kind == "v1":
                assert result.status_code == 200, result.text
                assert result.json() == {"predictions": [seconds]}, result.text
            else:
                assert result.id == f"req-{seconds}"
                assert grpc_output(result) == [seconds]
        assert wait_exit(server, WAIT_S) == 0
    log = server.output()
    assert "shutting down" in log and "stopped" in log, log
    assert "Traceback" not in log, log


def test_sigterm_drains_in_flight_requests(tmp_path: Path) -> None:
    _drain_with_signal(slow_server(tmp_path), signal.SIGTERM)


def test_sigint_drains_in_flight_requests(tmp_path: Path) -> None:
    _drain_with_signal(slow_server(tmp_path), signal.SIGINT)


def test_idle_server_exits_zero_at_once(tmp_path: Path) -> None:
    server = slow_server(tmp_path)
    with server:
        assert infer_v2(server, 0).status_code == 200
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGTERM)
        assert wait_exit(server, 10) == 0


def test_grace_period_expiry_still_exits(tmp_path: Path) -> None:
    """A request longer than --grace_period does not keep the process alive.

    The 10 s predicts are cut off after the 1 s grace, the log says so, and
    the process exits well before the predicts would have finished.
    """
    grace = 1.0
    server = slow_server(tmp_path, f"--grace_period={grace}")
    with server, concurrent.futures.ThreadPoolExecutor(2) as pool:
        rest = pool.submit(infer_v2, server, 10.0)
        rpc = pool.submit(grpc_infer(server.grpc_address), grpc_request(10.0), timeout=WAIT_S)
        wait_inflight(server, 2)
        assert server.proc is not None
        signalled = time.monotonic()
        os.kill(server.proc.pid, signal.SIGTERM)
        wait_exit(server, grace + 4.0)
        assert time.monotonic() - signalled < 10.0
        # the cut-off clients got an answer or a closed connection, not a hang and not a 200
        with contextlib.suppress(httpx.HTTPError):  # a closed connection is fine too
            r = rest.result(timeout=WAIT_S)
            assert r.status_code != 200, r.text
        with pytest.raises(grpc.RpcError):
            rpc.result(timeout=WAIT_S)
    log = server.output()
    after = log[log.index("shutting down") :]
    assert re.search(r"cancel|exceeded|cut off|abandon", after, re.IGNORECASE), log

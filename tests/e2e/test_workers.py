"""``--workers N``: a dead worker is replaced while the others keep serving.

Each test runs a real supervisor with real worker processes and kills one
with SIGKILL, as the OOM killer would. Workers log ``worker-N started (pid
P)``; that is how the tests find them.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import signal
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from serverproc import TEST_MODELS, ServerProcess

pytestmark = pytest.mark.e2e

STARTED = re.compile(r"worker-(\d+) started \(pid (\d+)\)")


def _workers(server: ServerProcess) -> dict[int, int]:
    """slot -> pid of the latest worker started in that slot."""
    return {int(slot): int(pid) for slot, pid in STARTED.findall(server.output())}


def _wait_for(server: ServerProcess, predicate, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert server.proc is not None and server.proc.poll() is None, server.output()
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.05)


def _pid_server(tmp_path: Path, *flags: str) -> ServerProcess:
    return ServerProcess(
        "modelserver",
        [
            "--model_class=slow_model:PidModel",
            "--model_name=pid",
            f"--model_dir={tmp_path}",
            "--workers=2",
            *flags,
        ],
        env={"PYTHONPATH": str(TEST_MODELS)},
    )


def _infer(url: str, seconds: float, timeout: float = 30.0) -> httpx.Response:
    body = {"inputs": [{"name": "s", "shape": [1], "datatype": "FP64", "data": [seconds]}]}
    # A fresh connection per request: SO_REUSEPORT spreads them over the workers.
    return httpx.post(
        f"{url}/v2/models/pid/infer", json=body, timeout=timeout, headers={"Connection": "close"}
    )


def _served_by(reply: httpx.Response) -> int:
    assert reply.status_code == 200, reply.text
    return int(reply.json()["outputs"][0]["data"][0])


def _both_serving(server: ServerProcess) -> None:
    _wait_for(server, lambda: server.output().count("serving pid") >= 2)


def test_a_killed_worker_is_replaced_and_the_survivor_loses_nothing(tmp_path: Path) -> None:
    with _pid_server(tmp_path) as server:
        _both_serving(server)
        before = _workers(server)
        victim = before[0]
        # Slow requests in flight on both workers, then one worker dies.
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(_infer, server.http_url, 1.5) for _ in range(8)]
            time.sleep(0.5)
            os.kill(victim, signal.SIGKILL)
            outcomes = []
            for future in futures:
                try:
                    outcomes.append(_served_by(future.result()))
                except httpx.TransportError as exc:
                    outcomes.append(exc)
        served = [o for o in outcomes if isinstance(o, int)]
        lost = [o for o in outcomes if not isinstance(o, int)]
        # Only requests the dead worker had accepted are lost; the survivor answers all of its own.
        assert served, outcomes
        assert victim not in served
        assert all(pid == before[1] for pid in served), outcomes
        assert len(lost) < len(outcomes), outcomes
        # A new worker takes the dead one's place, and serving never stopped.
        _wait_for(server, lambda: _workers(server)[0] != victim)
        replacement = _workers(server)[0]
        assert f"worker-0 (pid {victim}) was killed by SIGKILL" in server.output()
        _wait_for(server, lambda: server.output().count("serving pid") >= 3)
        pids = {_served_by(_infer(server.http_url, 0.0)) for _ in range(40)}
        assert pids <= {replacement, before[1]}, pids
        assert replacement in pids, pids
        assert httpx.get(f"{server.http_url}/v2/health/ready").status_code == 200


def test_counters_survive_the_replacement(tmp_path: Path) -> None:
    with _pid_server(tmp_path) as server:
        _both_serving(server)
        for _ in range(20):
            _served_by(_infer(server.http_url, 0.0))
        victim = _workers(server)[1]
        os.kill(victim, signal.SIGKILL)
        _wait_for(server, lambda: _workers(server)[1] != victim)
        _wait_for(server, lambda: server.output().count("serving pid") >= 3)
        for _ in range(5):
            _served_by(_infer(server.http_url, 0.0))
        text = httpx.get(f"{server.http_url}/metrics").text
        total = sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "modelserver_requests_total" and sample.labels.get("model") == "pid"
        )
        # The dead worker's counts are kept: the sum never goes back.
        assert total == 25, text


def test_too_many_deaths_stop_the_server_with_one_clear_line(tmp_path: Path) -> None:
    server = _pid_server(tmp_path, "--worker_restarts_per_minute=1")
    with server:
        _both_serving(server)
        first = _workers(server)[0]
        os.kill(first, signal.SIGKILL)
        _wait_for(server, lambda: _workers(server)[0] != first)
        os.kill(_workers(server)[0], signal.SIGKILL)
        assert server.proc is not None
        assert server.proc.wait(30) == 1, server.output()
    lines = [line for line in server.output().splitlines() if "within a minute" in line]
    assert len(lines) == 1, server.output()
    assert "--worker_restarts_per_minute=1" in lines[0]


def test_a_worker_that_cannot_start_is_not_restarted(tmp_path: Path) -> None:
    """Exit 2 (a model that cannot load) is final: no restart loop."""
    server = ServerProcess(
        "sklearnserver",
        ["--model_name=iris", f"--model_dir={tmp_path / 'absent'}", "--workers=2"],
    )
    server.start(wait=False)
    assert server.proc is not None
    assert server.proc.wait(60) == 2, server.output()
    assert "replacing it" not in server.output()

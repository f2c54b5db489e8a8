"""Faults, every runtime: a corrupt reload, a sink down, a worker killed, SIGTERM under load.

* A reload from a corrupted model file fails with a 400 and the loaded model
  keeps serving, its answers unchanged.
* The request logger's sink goes down (it is slow throughout the suite):
  inference answers as before and the events are counted as failed.
* Under load over REST and gRPC, with ``--workers 2``: SIGKILL of one worker
  (as the OOM killer would) is survived: a new worker starts and every
  request after it is answered. Then SIGTERM: until the server stops
  listening every request is answered 200; after, new connections are
  refused (gRPC: UNAVAILABLE) and the server exits 0. A request the server
  took is never lost: no answer other than 200 ever comes back, and a
  connection closed before any answer is one whose request the server never
  read (uvicorn closes only connections without a request in flight).
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
import numpy as np
import orjson
import pytest
from conftest import Serving
from modelserver import protos as pb
from runtime_case import RuntimeCase
from serverproc import ServerProcess, poll_until
from sinks import Sink

pytestmark = pytest.mark.e2e

STARTED = re.compile(r"worker-(\d+) started \(pid (\d+)\)")


def test_corrupt_reload_keeps_the_loaded_model_serving(serving: Serving) -> None:
    case = serving.case
    (model_file,) = [
        p
        for p in serving.model_dir.iterdir()
        if (p.name == case.suffix if case.fixed_name else p.name.endswith(case.suffix))
    ]
    original = model_file.read_bytes()
    load = f"{serving.url}/v2/repository/models/m/load"
    try:
        model_file.write_bytes(b"\x00\x01 not a model \xff" * 64)
        reply = httpx.post(load, timeout=120)
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"], reply.text
        assert httpx.get(f"{serving.url}/v2/models/m/ready").status_code == 200
        serving.still_serves()
        index = httpx.post(f"{serving.url}/v2/repository/index", json={}).json()
        assert "still serving" in index[0]["reason"], index
    finally:
        model_file.write_bytes(original)
    reply = httpx.post(load, timeout=120)
    assert reply.status_code == 200, reply.text
    serving.still_serves()


def test_sink_down_costs_inference_nothing(serving: Serving, slow_sink: Sink) -> None:
    def lost() -> float:
        server = serving.server
        return metric_outcome(server, "failed") + metric_outcome(server, "dropped")

    slow_sink.down = True
    try:
        before = lost()
        for _ in range(10):
            serving.still_serves()
        poll_until(lost, lambda value: value > before, "events failed or dropped", timeout=30)
    finally:
        slow_sink.down = False
    serving.still_serves()


def metric_outcome(server: ServerProcess, outcome: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{server.http_url}/metrics", timeout=30).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "modelserver_logger_events_total" and s.labels.get("outcome") == outcome
    )


# -- worker death, then SIGTERM, under load -------------------------------------------


@dataclass
class Outcome:
    at: float
    protocol: str
    #: "ok", "refused" (no connection), "closed" (closed before any answer), or what came back
    result: str


@dataclass
class Load:
    """Clients sending good requests over REST (a new connection each) and gRPC until stopped."""

    server: ServerProcess
    case: RuntimeCase
    outcomes: list[Outcome] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    #: Set just before the server is sent SIGTERM.
    stopping: threading.Event = field(default_factory=threading.Event)

    def start(self, clients: int = 2) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.rest, daemon=True) for _ in range(clients)]
        threads.append(threading.Thread(target=self.grpc, daemon=True))
        for thread in threads:
            thread.start()
        return threads

    def rows(self) -> np.ndarray:
        return self.case.array()

    def rest(self) -> None:
        rows = self.rows()
        body = orjson.dumps(
            {
                "inputs": [
                    {
                        "name": self.case.input_name,
                        "shape": list(rows.shape),
                        "datatype": self.case.datatype,
                        "data": rows.reshape(-1).tolist(),
                    }
                ]
            }
        )
        url = f"{self.server.http_url}/v2/models/m/infer"
        headers = {"content-type": "application/json", "connection": "close"}
        while not self.stop.is_set():
            try:
                reply = httpx.post(url, content=body, headers=headers, timeout=30)
                result = "ok" if reply.status_code == 200 else f"{reply.status_code} {reply.text}"
            except httpx.ConnectError:
                result = "refused"
            except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
                result = f"closed: {exc}"
            self.outcomes.append(Outcome(time.monotonic(), "rest", result))

    def grpc(self) -> None:
        rows = self.rows()
        msg = pb.ModelInferRequest(model_name="m")
        msg.inputs.add(name=self.case.input_name, datatype=self.case.datatype, shape=rows.shape)
        msg.raw_input_contents.append(self.case.raw())
        raw = msg.SerializeToString()
        with grpc.insecure_channel(self.server.grpc_address) as channel:
            infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
            while not self.stop.is_set():
                try:
                    infer(raw, timeout=30)
                    result = "ok"
                except grpc.RpcError as exc:
                    code = exc.code()
                    result = "refused" if code == grpc.StatusCode.UNAVAILABLE else str(code)
                    if code == grpc.StatusCode.CANCELLED and self.stopping.is_set():
                        # gRPC's core cancels a call that arrived as the server stopped,
                        # before any handler took it (grpc/grpc#41785): never taken.
                        result = "refused"
                self.outcomes.append(Outcome(time.monotonic(), "grpc", result))
                time.sleep(0.005)

    def between(self, start: float, end: float) -> list[Outcome]:
        return [o for o in self.outcomes if start <= o.at < end]


def _answered(load: Load, since: float, what: str) -> None:
    """Wait until every client has been answered since ``since`` (a framework's first is slow)."""
    poll_until(
        lambda: {o.protocol for o in load.outcomes if o.at >= since and o.result == "ok"},
        lambda answered: answered == {"rest", "grpc"},
        what,
        timeout=60,
    )
    time.sleep(0.3)


def _wait(server: ServerProcess, what: str, predicate, timeout: float = 120.0) -> float:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate(server.output()):
        assert server.proc is not None and server.proc.poll() is None, server.output()[-3000:]
        assert time.monotonic() < deadline, f"no {what}:\n{server.output()[-3000:]}"
        time.sleep(0.05)
    return time.monotonic()


def test_worker_death_then_sigterm_under_load(
    case: RuntimeCase, framework_samples, tmp_path: Path
) -> None:
    model_dir = framework_samples(case.framework)[case.sample]
    server = ServerProcess(
        case.module,
        ["--model_name=m", f"--model_dir={model_dir}", "--workers=2", *case.flags],
        env=case.env,
    )
    load = Load(server, case)
    with server:
        _wait(server, "two workers serving", lambda log: log.count("serving m:") >= 2)
        threads = load.start()
        _answered(load, 0.0, "the load's first answers")
        killed_at = time.monotonic()
        victim = int(STARTED.findall(server.output())[0][1])
        os.kill(victim, signal.SIGKILL)
        replaced_at = _wait(
            server,
            "a replacement worker serving",
            lambda log: len(STARTED.findall(log)) >= 3 and log.count("serving m:") >= 3,
        )
        _answered(load, replaced_at, "answers after the replacement")
        assert server.proc is not None
        term_at = time.monotonic()
        load.stopping.set()
        server.proc.send_signal(signal.SIGTERM)
        code = server.proc.wait(60)
        load.stop.set()
        for thread in threads:
            thread.join(60)
    log = server.output()
    assert code == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]

    before = load.between(0, killed_at)
    assert before and all(o.result == "ok" for o in before), before[:5]
    # While one worker is dead, the survivor answers; the victim's own requests may be cut.
    dying = load.between(killed_at, replaced_at)
    assert all(o.result in ("ok", "refused") or o.result.startswith("closed") for o in dying)
    replaced = load.between(replaced_at, term_at)
    assert replaced, "no request after the replacement"
    assert all(o.result == "ok" for o in replaced), [o for o in replaced if o.result != "ok"][:5]
    # SIGTERM: everything answered is answered 200; the rest was never taken.
    after = load.between(term_at, float("inf"))
    bad = [o for o in after if not (o.result in ("ok", "refused") or o.result.startswith("closed"))]
    assert not bad, bad[:5]
    assert any(o.result == "refused" for o in after), "the server never stopped listening"

"""OpenTelemetry tracing: a span per inference, its phases as children, W3C propagation.

The real server runs in this process (built as ``cli.serve_process`` builds
it, in a thread with its own event loop) after ``tracing.setup`` was given
the SDK's in-memory exporter, so the spans it finishes can be read back.
Requests go over real sockets with real clients. Tracing state is global
to the process, so one server serves the whole module and tracing is turned
off again when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
from serverproc import free_port

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode

pytestmark = pytest.mark.e2e

ROW = [[6.7, 3.0, 5.2, 2.3]]
V2_BODY = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}
PHASES = ("decode", "queue", "predict", "encode")


class _ThreadLoop(asyncio.SelectorEventLoop):
    """An event loop for a non-main thread: signals can only be handled in the main one."""

    def add_signal_handler(self, sig, callback, *args):  # type: ignore[override]
        """Ignored: the test stops the server with request_stop instead."""


class InProcessServer:
    """The real ModelServer over the real sklearnserver model, in a background thread."""

    def __init__(self, model_dir: Path) -> None:
        from modelserver.server.process import prepare_server
        from sklearnserver import SKLearnModel

        self.http_port, self.grpc_port = free_port(), free_port()
        settings = SKLearnModel.settings_class.parse(
            [
                "--model_name=iris",
                f"--model_dir={model_dir}",
                "--host=127.0.0.1",
                f"--http_port={self.http_port}",
                f"--grpc_port={self.grpc_port}",
                "--grace_period=5",
                "--log_level=warning",
            ],
            "sklearnserver",
        )
        self.server, _executor = prepare_server(SKLearnModel, settings)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="inprocess-server", daemon=True)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def _run(self) -> None:
        try:
            with asyncio.Runner(loop_factory=_ThreadLoop) as runner:
                self.loop = runner.get_loop()
                runner.run(self.server.serve())
        except BaseException as exc:
            self.error = exc

    def start(self, timeout: float = 30.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.thread.is_alive():
                raise RuntimeError(f"in-process server stopped: {self.error!r}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.http_url}/v2/health/ready", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        raise TimeoutError("in-process server not ready")

    def stop(self, timeout: float = 20.0) -> None:
        if self.loop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.server.request_stop)
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "in-process server did not stop"
        assert self.error is None, repr(self.error)


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    from modelserver.observability import tracing

    assert not tracing.enabled(), "tracing is already on in this process"
    spans = InMemorySpanExporter()
    assert tracing.setup(exporter=spans)
    try:
        yield spans
    finally:
        # Leave the process as it was: other tests in it run without tracing.
        tracing._tracer = None


@pytest.fixture(scope="module")
def server(exporter, iris_dir: Path) -> Iterator[InProcessServer]:
    s = InProcessServer(iris_dir)
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _traceparent() -> tuple[str, int, int]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", int(trace_id, 16), int(span_id, 16)


def _spans_of(exporter: InMemorySpanExporter, trace_id: int, names: set[str], timeout=10.0):
    """The finished spans of one trace, once all of ``names`` are there: name -> span."""
    deadline = time.monotonic() + timeout
    while True:
        found = [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]
        by_name = {s.name: s for s in found}
        if names <= set(by_name):
            assert len(by_name) == len(found), f"duplicate span names: {[s.name for s in found]}"
            return by_name
        if time.monotonic() > deadline:
            raise AssertionError(f"spans {names} of trace {trace_id:032x}: got {sorted(by_name)}")
        time.sleep(0.02)


def _check_request_trace(spans: dict, parent_span_id: int | None, protocol: str, status: str):
    infer = spans["infer"]
    assert set(spans) == {"infer", *PHASES}, sorted(spans)
    assert infer.kind is SpanKind.SERVER
    if parent_span_id is None:
        assert infer.parent is None
    else:
        assert infer.parent is not None
        assert infer.parent.span_id == parent_span_id
        assert infer.parent.is_remote
    assert infer.attributes["model"] == "iris"
    assert infer.attributes["protocol"] == protocol
    assert infer.attributes["modelserver.status"] == status
    assert infer.status.status_code is not StatusCode.ERROR
    assert infer.start_time <= infer.end_time
    for name in PHASES:
        child = spans[name]
        assert child.parent is not None and child.parent.span_id == infer.context.span_id, name
        assert child.context.trace_id == infer.context.trace_id, name
        assert child.start_time <= child.end_time, name
        assert infer.start_time <= child.start_time and child.end_time <= infer.end_time, name
    # The phases happen one after the other.
    starts = [spans[name].start_time for name in PHASES]
    assert starts == sorted(starts), list(zip(PHASES, starts, strict=True))
    assert spans["decode"].end_time <= spans["queue"].start_time
    assert spans["queue"].end_time <= spans["predict"].start_time
    assert spans["predict"].end_time <= spans["encode"].start_time


def test_rest_v2_infer_continues_the_callers_trace(server, exporter):
    traceparent, trace_id, parent = _traceparent()
    r = httpx.post(
        f"{server.http_url}/v2/models/iris/infer",
        json=V2_BODY,
        headers={"traceparent": traceparent, "tracestate": "vendor=value"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    spans = _spans_of(exporter, trace_id, {"infer", *PHASES})
    _check_request_trace(spans, parent, "v2-rest", "200")
    assert spans["infer"].context.trace_state.get("vendor") == "value"


def test_grpc_infer_continues_the_callers_trace(server, exporter):
    traceparent, trace_id, parent = _traceparent()
    client = tgrpc.InferenceServerClient(server.grpc_address)
    try:
        inp = tgrpc.InferInput("x", [1, 4], "FP64")
        inp.set_data_from_numpy(np.array(ROW))
        result = client.infer("iris", [inp], headers={"traceparent": traceparent})
        assert result.as_numpy("predict").shape == (1,)
    finally:
        client.close()
    spans = _spans_of(exporter, trace_id, {"infer", *PHASES})
    _check_request_trace(spans, parent, "v2-grpc", "OK")


def test_rest_v1_predict_continues_the_callers_trace(server, exporter):
    traceparent, trace_id, parent = _traceparent()
    r = httpx.post(
        f"{server.http_url}/v1/models/iris:predict",
        json={"instances": ROW},
        headers={"traceparent": traceparent},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    spans = _spans_of(exporter, trace_id, {"infer", *PHASES})
    _check_request_trace(spans, parent, "v1-rest", "200")


def test_without_traceparent_the_infer_span_is_a_root(server, exporter):
    exporter.clear()
    r = httpx.post(f"{server.http_url}/v2/models/iris/infer", json=V2_BODY, timeout=30)
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 10
    while not [s for s in exporter.get_finished_spans() if s.name == "infer"]:
        assert time.monotonic() < deadline, "no infer span"
        time.sleep(0.02)
    (infer,) = [s for s in exporter.get_finished_spans() if s.name == "infer"]
    spans = _spans_of(exporter, infer.context.trace_id, {"infer", *PHASES})
    _check_request_trace(spans, None, "v2-rest", "200")


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v2/models/nope/infer", V2_BODY, "404"),
        ("/v2/models/iris/infer", {"inputs": "not a list"}, "400"),
    ],
    ids=["unknown-model", "bad-request"],
)
def test_a_failed_request_has_an_error_span(server, exporter, path, body, status):
    traceparent, trace_id, parent = _traceparent()
    r = httpx.post(
        server.http_url + path, json=body, headers={"traceparent": traceparent}, timeout=30
    )
    assert r.status_code == int(status), r.text
    spans = _spans_of(exporter, trace_id, {"infer"})
    infer = spans["infer"]
    assert infer.parent is not None and infer.parent.span_id == parent
    assert infer.status.status_code is StatusCode.ERROR
    assert infer.status.description
    assert infer.attributes["modelserver.status"] == status
    # Nothing was predicted.
    assert "predict" not in spans and "encode" not in spans

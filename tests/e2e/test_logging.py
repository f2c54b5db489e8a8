"""Server logs: JSON lines, the access log and its probe filter, and silence by default.

Each test reads the combined stdout/stderr of a real server process. Lines a
request causes are written before its answer is sent, so once a client has
its answer, the log already holds everything that request will ever log.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
from serverproc import ServerProcess
from tritonclient.utils import InferenceServerException

pytestmark = pytest.mark.e2e

ROW = [[6.7, 3.0, 5.2, 2.3]]
V2_BODY = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}
PROBES = ["/v2/health/ready", "/v2/health/live", "/metrics", "/v2/models/iris/ready"]
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}


def _grpc_infer(server: ServerProcess, name: str = "iris") -> np.ndarray:
    client = tgrpc.InferenceServerClient(server.grpc_address)
    try:
        inp = tgrpc.InferInput("x", [1, 4], "FP64")
        inp.set_data_from_numpy(np.array(ROW))
        return client.infer(name, [inp]).as_numpy("predict")
    finally:
        client.close()


def _wait_for(server: ServerProcess, text: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        out = server.output()
        if text in out:
            return out
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} never logged:\n{out}")
        time.sleep(0.05)


def _access(method: str, path: str) -> str:
    """How uvicorn's access log writes a request line."""
    return f'"{method} {path} HTTP/1.1"'


def _traffic(server: ServerProcess, client: httpx.Client) -> None:
    """Probes, then inferences over every protocol (every answer checked)."""
    for path in PROBES:
        assert client.get(server.http_url + path).status_code == 200, path
    r = client.post(f"{server.http_url}/v2/models/iris/infer", json=V2_BODY)
    assert r.status_code == 200, r.text
    r = client.post(f"{server.http_url}/v1/models/iris:predict", json={"instances": ROW})
    assert r.status_code == 200, r.text
    assert _grpc_infer(server).shape == (1,)


# -- JSON log lines ------------------------------------------------------------------


def _json_lines(output: str) -> list[dict]:
    entries = []
    for line in output.splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}\n--- whole log:\n{output}") from None
        assert isinstance(entry, dict), line
        for key in ("time", "level", "logger", "message"):
            assert isinstance(entry.get(key), str), (key, line)
        assert TIME.match(entry["time"]), line
        assert entry["level"] in LEVELS, line
        entries.append(entry)
    return entries


def test_json_log_format_makes_every_line_a_json_object(iris_dir: Path):
    server = ServerProcess(
        "sklearnserver",
        ["--model_name=iris", f"--model_dir={iris_dir}", "--log_format=json", "--access_log=true"],
    )
    with server, httpx.Client(timeout=30) as client:
        _traffic(server, client)
        # Errors log warnings of their own, REST and gRPC.
        assert (
            client.post(f"{server.http_url}/v2/models/nope/infer", json=V2_BODY).status_code == 404
        )
        bad = client.post(f"{server.http_url}/v2/models/iris/infer", content=b"{oops")
        assert bad.status_code == 400
        with pytest.raises(InferenceServerException):
            _grpc_infer(server, "nope")
        assert client.get(f"{server.http_url}/no/such/route").status_code == 404
    assert server.proc.returncode == 0
    entries = _json_lines(server.output())
    messages = [e["message"] for e in entries]
    assert any("loading model iris" in m for m in messages), messages
    assert any(m.startswith("serving iris") for m in messages), messages
    assert messages[-1] == "stopped", messages
    access = [e for e in entries if e["logger"] == "uvicorn.access"]
    assert any(_access("POST", "/v2/models/iris/infer") in e["message"] for e in access), access
    warnings = [e for e in entries if e["level"] == "WARNING"]
    assert any("nope" in e["message"] and "404" in e["message"] for e in warnings), warnings
    assert any("NOT_FOUND" in e["message"] for e in warnings), warnings


def test_json_log_format_with_workers(iris_dir: Path):
    """The supervisor and each worker process write JSON lines too."""
    server = ServerProcess(
        "sklearnserver",
        ["--model_name=iris", f"--model_dir={iris_dir}", "--log_format=json", "--workers=2"],
    )
    with server, httpx.Client(timeout=30) as client:
        # Both workers up (the first one alone already answers readiness).
        deadline = time.monotonic() + 60
        while server.output().count('"message":"serving iris') < 2:
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.05)
        r = client.post(f"{server.http_url}/v2/models/iris/infer", json=V2_BODY)
        assert r.status_code == 200, r.text
    assert server.proc.returncode == 0, server.output()
    messages = [e["message"] for e in _json_lines(server.output())]
    assert sum("loading model iris" in m for m in messages) == 2, messages
    assert sum(m.startswith("serving iris") for m in messages) == 2, messages
    assert sum(m == "stopped" for m in messages) == 2, messages
    assert any("started 2 workers" in m for m in messages), messages


# -- the access log --------------------------------------------------------------------


@pytest.mark.parametrize("probes", [False, True], ids=["probes-filtered", "probes-logged"])
def test_access_log(iris_dir: Path, probes: bool):
    server = ServerProcess(
        "sklearnserver",
        [
            "--model_name=iris",
            f"--model_dir={iris_dir}",
            "--access_log=true",
            f"--access_log_probes={str(probes).lower()}",
        ],
    )
    with server, httpx.Client(timeout=30) as client:
        _traffic(server, client)
        # The last request: once its line is there, every earlier line is too.
        r = client.get(f"{server.http_url}/v2/models/iris")
        assert r.status_code == 200
        out = _wait_for(server, _access("GET", "/v2/models/iris"))
    assert _access("POST", "/v2/models/iris/infer") in out, out
    # (httpx sends the ':' of ':predict' percent-encoded)
    assert _access("POST", "/v1/models/iris%3Apredict") in out, out
    for path in PROBES:
        logged = _access("GET", path) in out
        assert logged is probes, f"{path} logged={logged} with --access_log_probes={probes}:\n{out}"


def test_without_access_log_a_request_logs_nothing(iris_dir: Path):
    server = ServerProcess("sklearnserver", ["--model_name=iris", f"--model_dir={iris_dir}"])
    with server, httpx.Client(timeout=30) as client:
        before = server.output()
        _traffic(server, client)
        assert client.get(f"{server.http_url}/v2/models/iris").status_code == 200
        assert client.get(f"{server.http_url}/v2").status_code == 200
        assert client.get(f"{server.http_url}/v1/models/iris").status_code == 200
        assert server.output() == before
    # Nothing shows up late either: after the stop, only the shutdown lines are new.
    new = server.output()[len(before) :].splitlines()
    assert len(new) == 2, new
    assert "shutting down" in new[0]
    assert new[1].endswith("stopped")

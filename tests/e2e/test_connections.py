"""HTTP connections: time limits for each phase, and errors below the application as JSON.

Raw sockets against a real server process: these are the requests no HTTP
client library will send (trickled headers, a body that stops, a malformed
request line), so the bytes are written by hand.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serverproc import ServerProcess

pytestmark = pytest.mark.e2e

INFER = "/v2/models/iris/infer"
GOOD = json.dumps(
    {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [6.7, 3.0, 5.2, 2.3]}]}
).encode()


@pytest.fixture(scope="module")
def strict(iris_dir: Path) -> Iterator[ServerProcess]:
    """A server with one-second limits for every phase of a connection."""
    flags = ["--http_keepalive_timeout=1", "--http_header_timeout=1", "--http_body_timeout=1"]
    with ServerProcess(
        "sklearnserver", ["--model_name=iris", f"--model_dir={iris_dir}", *flags]
    ) as server:
        yield server


def _connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=10)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection (or 10 s pass)."""
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _status_and_json(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower(), raw
    return status, json.loads(body)


def _still_serves(server: ServerProcess) -> None:
    reply = httpx.post(f"{server.http_url}{INFER}", content=GOOD)
    assert reply.status_code == 200, reply.text


def test_a_connection_that_sends_nothing_is_closed(strict: ServerProcess) -> None:
    with _connect(strict) as sock:
        started = time.monotonic()
        assert _read_all(sock) == b""
        assert time.monotonic() - started < 5
    _still_serves(strict)


def test_headers_that_never_end_get_408(strict: ServerProcess) -> None:
    with _connect(strict) as sock:
        sock.sendall(f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Type: app".encode())
        status, body = _status_and_json(_read_all(sock))
    assert status == 408
    assert "headers" in body["error"]
    _still_serves(strict)


def test_a_body_that_stops_arriving_gets_408(strict: ServerProcess) -> None:
    with _connect(strict) as sock:
        sock.sendall(
            f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(GOOD)}\r\n\r\n".encode()
            + GOOD[:10]
        )
        status, body = _status_and_json(_read_all(sock))
    assert status == 408
    assert "body" in body["error"]
    _still_serves(strict)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        pytest.param(
            b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\n",
            400,
            id="malformed-content-length",
        ),
        pytest.param(b"GARBAGE\r\n\r\n", 400, id="bad-request-line"),
        pytest.param(
            b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
            501,
            id="transfer-encoding-gzip",
        ),
    ],
)
def test_errors_below_the_application_are_json(
    strict: ServerProcess, request_bytes: bytes, status: int
) -> None:
    with _connect(strict) as sock:
        sock.sendall(request_bytes)
        got, body = _status_and_json(_read_all(sock))
    assert got == status
    assert body["error"]
    _still_serves(strict)


def test_head_on_probes_answers_like_get_without_a_body(iris_server: ServerProcess) -> None:
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/iris/ready", "/v1/models/iris"):
        get = httpx.get(f"{iris_server.http_url}{path}")
        head = httpx.head(f"{iris_server.http_url}{path}")
        assert head.status_code == get.status_code == 200, path
        assert head.content == b""
        assert head.headers["content-length"] == str(len(get.content))


def test_405_names_the_allowed_methods(iris_server: ServerProcess) -> None:
    reply = httpx.get(f"{iris_server.http_url}{INFER}")
    assert reply.status_code == 405
    assert reply.headers["allow"] == "POST"
    assert reply.json() == {"error": "Method Not Allowed"}
    reply = httpx.post(f"{iris_server.http_url}/v2/health/ready")
    assert reply.status_code == 405
    assert reply.headers["allow"] == "GET, HEAD"


def _one_response(sock: socket.socket) -> int:
    """Read exactly one response (headers and Content-Length body); its status."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split(b" ", 2)[1])


def test_an_idle_keep_alive_connection_outlives_uvicorns_five_seconds(
    iris_server: ServerProcess,
) -> None:
    """A proxy's pooled connection idles for a while; we must not close it under it."""
    request = (
        f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(GOOD)}\r\n\r\n".encode() + GOOD
    )
    with socket.create_connection(("127.0.0.1", iris_server.http_port), timeout=10) as sock:
        sock.sendall(request)
        assert _one_response(sock) == 200
        time.sleep(6)
        sock.sendall(request)
        assert _one_response(sock) == 200

"""Hostile REST requests, every runtime: each gets a 4xx with ``{"error": ...}``, never a 5xx.

After each one the server must answer a good request exactly as before. Some
requests are sent over a raw socket, since no client library sends them
(a Content-Length that lies, a broken chunked body, a thousand headers).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from conftest import Serving

pytestmark = pytest.mark.e2e

INFER = "/v2/models/m/infer"


def _tensor(serving: Serving, **fields: Any) -> bytes:
    tensor = {**serving.good_body()["inputs"][0], **fields}
    # The standard library writes integers past 64 bits, which orjson refuses to.
    return json.dumps({"inputs": [tensor]}, separators=(",", ":")).encode()


def _raw(serving: Serving, request: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    """Send bytes as they are; the first response's status and body."""
    with socket.create_connection(("127.0.0.1", serving.server.http_port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                raise AssertionError(f"closed without an answer; got {data!r}")
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next(
            (
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        while len(rest) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
        return status, rest[:length]


def _post(serving: Serving, body: bytes, path: str = INFER, **headers: str) -> tuple[int, bytes]:
    reply = httpx.post(
        f"{serving.url}{path}",
        content=body,
        headers={"content-type": "application/json", **headers},
        timeout=30,
    )
    return reply.status_code, reply.content


def _request(path: str, body: bytes, *headers: str, length: int | None = None) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"Content-Length: {len(body) if length is None else length}",
        *headers,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _chunked(path: str, chunks: list[bytes], trailer: bytes = b"0\r\n\r\n") -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    return head + b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + trailer


# Each hostile request: serving -> (status, body) of the server's answer.
HOSTILE: dict[str, Callable[[Serving], tuple[int, bytes]]] = {
    "deep-nesting-json": lambda s: _post(
        s,
        b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": '
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}]}",
    ),
    "deep-nesting-data": lambda s: _post(
        s, _tensor(s, data=[[[[[[[[[[[[[[[[[[1.0] * 3]]]]]]]]]]]]]]]]] * 1)
    ),
    "nested-past-rank": lambda s: _post(
        s, _tensor(s, shape=[1], data=orjson.loads(b"[" * 200 + b"1" + b"]" * 200))
    ),
    "content-length-longer-than-body": lambda s: _raw(
        s, _request(INFER, b'{"inputs": []}', length=1000)
    ),
    "content-length-shorter-than-body": lambda s: _raw(
        s, _request(INFER, orjson.dumps(s.good_body()), length=7)
    ),
    "content-length-not-a-number": lambda s: _raw(
        s, _request(INFER, b"{}", length=None).replace(b"Content-Length: 2", b"Content-Length: 2x")
    ),
    "chunked-good": lambda s: _raw(
        s, _chunked(INFER, [orjson.dumps(s.good_body())[:9], orjson.dumps(s.good_body())[9:]])
    ),
    "chunked-broken-size": lambda s: _raw(
        s, _chunked(INFER, [b'{"inputs": []}'], trailer=b"zz\r\nabc\r\n0\r\n\r\n")
    ),
    "transfer-encoding-gzip-only": lambda s: _raw(
        s, _request(INFER, b"{}", "Transfer-Encoding: gzip")
    ),
    "invalid-utf8-name": lambda s: _post(
        s, _tensor(s).replace(b'"name":"', b'"name":"\xff\xfe', 1)
    ),
    "invalid-utf8-body": lambda s: _post(s, b"\xff\xfe\x00{not json"),
    "nan-infinity": lambda s: _post(
        s, _tensor(s).replace(b'"data":[', b'"data":[NaN,Infinity,-Infinity,', 1)
    ),
    "huge-float": lambda s: _post(s, _tensor(s).replace(b'"data":[', b'"data":[1e999,', 1)),
    "huge-shape": lambda s: _post(s, _tensor(s, shape=[2**62, 2**62])),
    "shape-past-int64": lambda s: _post(s, _tensor(s, shape=[2**70])),
    "negative-shape": lambda s: _post(s, _tensor(s, shape=[-1, 4])),
    "float-shape": lambda s: _post(s, _tensor(s, shape=[1.5, 4])),
    "binary-size-past-body": lambda s: _post(
        s,
        _tensor(s, data=None, parameters={"binary_data_size": 1 << 40}).replace(
            b',"data":null', b""
        ),
        **{"inference-header-content-length": "0"},
    ),
    "binary-size-negative": lambda s: _binary(s, -8),
    "binary-size-short": lambda s: _binary(s, 3),
    "header-length-past-body": lambda s: _post(
        s, orjson.dumps(s.good_body()), **{"inference-header-content-length": "99999999"}
    ),
    "header-length-not-a-number": lambda s: _post(
        s, orjson.dumps(s.good_body()), **{"inference-header-content-length": "-1"}
    ),
    "odd-input-names": lambda s: _post(
        s,
        orjson.dumps(
            {
                "inputs": [
                    {**s.good_body()["inputs"][0], "name": name}
                    for name in ["", "\u0000", "../../etc/passwd", "é" * 5000]
                ]
            }
        ),
    ),
    "long-input-name": lambda s: _post(s, _tensor(s, name="x" * 100_000)),
    "odd-model-name": lambda s: _post(
        s, orjson.dumps(s.good_body()), path="/v2/models/%00%ff%2e/infer"
    ),
    "long-model-name": lambda s: _post(
        s, orjson.dumps(s.good_body()), path=f"/v2/models/{'m' * 20000}/infer"
    ),
    "traversal-infer": lambda s: _post(
        s, orjson.dumps(s.good_body()), path="/v2/models/..%2F..%2F..%2Fetc%2Fpasswd/infer"
    ),
    "traversal-load": lambda s: _post(s, b"{}", path="/v2/repository/models/..%2F..%2Fetc/load"),
    "traversal-ready": lambda s: _raw(
        s, b"GET /v2/models/../../../etc/passwd/ready HTTP/1.1\r\nHost: x\r\n\r\n"
    ),
    "many-headers": lambda s: _raw(
        s, _request(INFER, orjson.dumps(s.good_body()), *(f"X-H{i}: {i}" for i in range(2000)))
    ),
    "huge-header": lambda s: _raw(
        s, _request(INFER, orjson.dumps(s.good_body()), "X-Big: " + "a" * 200_000)
    ),
    "many-inputs": lambda s: _post(
        s,
        orjson.dumps(
            {
                "inputs": [
                    {"name": f"x{i}", "shape": [1], "datatype": "FP64", "data": [1.0]}
                    for i in range(20_000)
                ]
            }
        ),
    ),
    "v1-many-columns": lambda s: _post(
        s,
        orjson.dumps({"inputs": {f"x{i}": [1.0] for i in range(20_000)}}),
        path="/v1/models/m:predict",
    ),
    "v1-deep-instances": lambda s: _post(
        s, b'{"instances": ' + b"[" * 1000 + b"]" * 1000 + b"}", path="/v1/models/m:predict"
    ),
}


def _binary(serving: Serving, size: int) -> tuple[int, bytes]:
    tensor = {**serving.good_body()["inputs"][0], "parameters": {"binary_data_size": size}}
    del tensor["data"]
    header = orjson.dumps({"inputs": [tensor]})
    return _post(
        serving,
        header + b"\x00" * 16,
        **{
            "inference-header-content-length": str(len(header)),
            "content-type": "application/octet-stream",
        },
    )


#: The hostile requests a server may answer 200: a legitimate one sent in an odd way.
MAY_SUCCEED = {
    "chunked-good",
    "many-headers",
    "huge-header",
    "huge-float",
    "deep-nesting-data",
    "long-input-name",
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_request_is_refused_and_the_server_serves_on(serving: Serving, kind: str) -> None:
    status, body = HOSTILE[kind](serving)
    assert status < 500, f"{kind}: {status} {body[:300]!r}"
    if status >= 400 and body:
        error = orjson.loads(body)["error"]
        assert isinstance(error, str) and error, body
    elif kind not in MAY_SUCCEED:
        raise AssertionError(f"{kind} was accepted: {status} {body[:300]!r}")
    serving.still_serves()

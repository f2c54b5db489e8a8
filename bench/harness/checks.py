"""Is the answer right? Checked before every run, because a fast error is not a result.

wrk only counts statuses above 399 and h2load never sees gRPC's trailers, so
before each measured run the harness sends the run's exact body once and
compares the predictions with the ones computed from the model file. gRPC is
checked with a real client (grpcio in our venv, bench/tools/grpc_check.py).
"""

from __future__ import annotations

import json
import struct
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JSON_HEADERS = {"Content-Type": "application/json"}
HEADER_LENGTH = "Inference-Header-Content-Length"
_INT_FORMATS = {"INT64": "q", "INT32": "i", "UINT64": "Q", "UINT32": "I", "FP32": "f", "FP64": "d"}


@dataclass
class Check:
    ok: bool
    detail: str
    response_kind: str = ""  # json | binary | grpc


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [item for sub in value for item in _flatten(sub)]
    return [value]


def _binary_output(header: dict[str, Any], blob: bytes) -> list[Any] | None:
    """The first output's values from a binary-extension response, or None if it was JSON."""
    offset = 0
    for index, output in enumerate(header["outputs"]):
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is None:
            if index == 0:
                return None
            continue
        if index == 0:
            fmt = _INT_FORMATS[output["datatype"]]
            chunk = blob[offset : offset + size]
            return list(struct.unpack(f"<{size // struct.calcsize(fmt)}{fmt}", chunk))
        offset += size
    return None


def predictions(status: int, headers: dict[str, str], body: bytes) -> tuple[list[Any], str]:
    """Predictions from a v1, v2 JSON or v2 binary response, and which kind it was."""
    if status != 200:
        raise ValueError(f"HTTP {status}: {body[:300]!r}")
    lowered = {k.lower(): v for k, v in headers.items()}
    length = lowered.get(HEADER_LENGTH.lower())
    if length is not None:
        split = int(length)
        header = json.loads(body[:split])
        values = _binary_output(header, body[split:])
        if values is not None:
            return values, "binary"
        return _flatten(header["outputs"][0]["data"]), "json"
    document = json.loads(body)
    if "predictions" in document:
        return _flatten(document["predictions"]), "json"
    return _flatten(document["outputs"][0]["data"]), "json"


def matches(values: list[Any], expected: list[Any]) -> bool:
    """Class labels exactly; scores (floats: probabilities) within float32 rounding."""
    if len(values) != len(expected):
        return False
    if all(isinstance(e, int) for e in expected):
        return [int(v) for v in values] == expected
    return all(
        abs(float(v) - e) <= 1e-4 + 1e-3 * abs(e) for v, e in zip(values, expected, strict=True)
    )


def post(
    url: str, body: bytes, headers: dict[str, str], timeout: float = 10.0
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def check_rest(url: str, body: bytes, headers: dict[str, str], expected: list[Any]) -> Check:
    try:
        values, kind = predictions(*post(url, body, headers))
    except (OSError, ValueError, KeyError, IndexError, struct.error) as exc:
        return Check(False, f"{type(exc).__name__}: {exc}")
    if not matches(values, expected):
        return Check(False, f"wrong predictions: {values[:8]}... expected {expected[:8]}...", kind)
    return Check(True, f"{len(values)} correct predictions", kind)


@dataclass
class GrpcCheck(Check):
    code: str = ""
    response_frame_bytes: int = 0


def check_grpc(
    ours_python: Path, tool: Path, port: int, frame: Path, expected: list[Any]
) -> GrpcCheck:
    done = subprocess.run(
        [str(ours_python), str(tool), "--port", str(port), "--frame", str(frame)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if done.returncode != 0:
        return GrpcCheck(False, f"grpc_check failed: {done.stderr.strip()[-500:]}", "grpc")
    result = json.loads(done.stdout)
    code = result["code"]
    if code != "OK":
        return GrpcCheck(False, f"grpc-status {code}: {result['details']}", "grpc", code)
    values = result["predictions"]
    ok = matches(values, expected)
    detail = "grpc-status 0, correct predictions" if ok else f"wrong predictions {values}"
    return GrpcCheck(ok, detail, "grpc", code, int(result["response_frame_bytes"]))

"""The loads and the two load generators that drive them.

HTTP loads run ``wrk`` with bench/wrk/post.lua (one fixed body, replayed;
p50/p99 from wrk's own latency histogram, printed by the script's done()
hook). gRPC loads run ``h2load`` posting a pre-serialized, length-prefixed
ModelInferRequest frame over h2c; its per-request log gives the percentiles.
Both are C programs on their own CPU(s), and their CPU time is measured
(rusage of the exited process) so the report shows when the generator, not
the server, is the limit.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checks import HEADER_LENGTH, JSON_HEADERS
from .system import CpuLayout
from .targets import GRPC, MODEL_NAME, V1, V2_BINARY, V2_JSON

GRPC_PATH = "/inference.GRPCInferenceService/ModelInfer"


@dataclass(frozen=True)
class Load:
    name: str
    title: str
    feature: str
    payload: str
    rows: int
    connections: int
    streams: int = 1  # gRPC: concurrent streams per connection
    #: Extra request headers (gRPC: e.g. the client deadline real clients send).
    extra_headers: tuple[str, ...] = ()

    @property
    def concurrency(self) -> int:
        return self.connections * self.streams

    @property
    def expected_key(self) -> str:
        return "rows1" if self.rows == 1 else "rows1000"

    def path(self) -> str:
        if self.feature == V1:
            return f"/v1/models/{MODEL_NAME}:predict"
        if self.feature == GRPC:
            return GRPC_PATH
        return f"/v2/models/{MODEL_NAME}/infer"

    def headers(self, binary_header_length: int) -> dict[str, str]:
        if self.feature == V2_BINARY:
            return {
                "Content-Type": "application/octet-stream",
                HEADER_LENGTH: str(binary_header_length),
            }
        return dict(JSON_HEADERS)


LOADS = [
    Load("v2-1row-c1", "v2 REST JSON, 1 row, c=1", V2_JSON, "v2-1.json", 1, 1),
    Load("v2-1row-c32", "v2 REST JSON, 1 row, c=32", V2_JSON, "v2-1.json", 1, 32),
    Load(
        "v2-1000row-json-c32", "v2 REST JSON, 1,000 rows, c=32", V2_JSON, "v2-1000.json", 1000, 32
    ),
    Load(
        "v2-1000row-bin-c32",
        "v2 REST binary ext., 1,000 rows, c=32",
        V2_BINARY,
        "v2-1000.bin",
        1000,
        32,
    ),
    Load("v1-1row-c32", "v1 REST, 1 row, c=32", V1, "v1-1.json", 1, 32),
    Load("grpc-1row-c1", "v2 gRPC, 1 row, c=1", GRPC, "grpc-1.frame", 1, 1),
    Load("grpc-1row-c32", "v2 gRPC, 1 row, 32 connections", GRPC, "grpc-1.frame", 1, 32),
    Load(
        "grpc-1row-c32-deadline",
        "v2 gRPC, 1 row, 32 connections, client deadline (grpc-timeout 10S)",
        GRPC,
        "grpc-1.frame",
        1,
        32,
        extra_headers=("grpc-timeout: 10S",),
    ),
    Load(
        "grpc-1row-1x32",
        "v2 gRPC, 1 row, 1 connection x 32 streams",
        GRPC,
        "grpc-1.frame",
        1,
        1,
        32,
    ),
]
LOADS_BY_NAME = {load.name: load for load in LOADS}
DEFAULT_LOADS = [load.name for load in LOADS if load.name != "grpc-1row-1x32"]


@dataclass
class GeneratorResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    generator_cpu_s: float
    argv: list[str]
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


class GeneratorError(RuntimeError):
    """The load generator failed or printed nothing we could read."""


def _run_measured(argv: list[str], out: Path, timeout_s: float) -> tuple[str, float]:
    """Run a generator to completion; its stdout+stderr text and its CPU seconds (rusage)."""
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            argv, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout_s
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise GeneratorError(f"{argv[0]} did not finish in {timeout_s:.0f}s")
            time.sleep(0.02)
    text = out.read_text(errors="replace")
    if proc.returncode != 0:
        raise GeneratorError(f"{' '.join(argv)} exited {proc.returncode}: {text[-800:]}")
    return text, usage.ru_utime + usage.ru_stime


def _threads(layout: CpuLayout, concurrency: int) -> int:
    return max(1, min(len(layout.generator), concurrency))


def run_wrk(
    load: Load,
    port: int,
    seconds: int,
    layout: CpuLayout,
    body: Path,
    headers: dict[str, str],
    script: Path,
    scratch: Path,
) -> GeneratorResult:
    argv = [
        *layout.generator_prefix(), "wrk",
        "-t", str(_threads(layout, load.connections)), "-c", str(load.connections),
        "-d", f"{seconds}s", "--timeout", "10s", "-s", str(script),
        f"http://127.0.0.1:{port}{load.path()}", "--", str(body),
        *(f"{name}: {value}" for name, value in headers.items()),
    ]  # fmt: skip
    text, cpu = _run_measured(argv, scratch / "wrk.out", seconds + 60)
    match = re.search(r"^BENCH_JSON (\{.*\})$", text, re.MULTILINE)
    if match is None:
        raise GeneratorError(f"no summary from wrk: {text[-800:]}")
    s = json.loads(match.group(1))
    errors = sum(s[k] for k in s if k.startswith("errors_"))
    return GeneratorResult(
        requests=s["requests"],
        seconds=s["duration_us"] / 1e6,
        p50_ms=s["p50_us"] / 1000,
        p99_ms=s["p99_us"] / 1000,
        errors=errors,
        generator_cpu_s=cpu,
        argv=argv,
        detail={
            k: v
            for k, v in s.items()
            if k.startswith("errors_") or k in ("bytes", "mean_us", "max_us", "p90_us")
        },
    )


def _h2load_number(pattern: str, text: str) -> float:
    match = re.search(pattern, text, re.MULTILINE)
    if match is None:
        raise GeneratorError(f"h2load output lacks /{pattern}/: {text[-800:]}")
    return float(match.group(1))


def _data_bytes(text: str) -> int:
    """h2load's traffic line: '... total, ... headers (...), 567.27KB (580880) data'."""
    match = re.search(r"\((\d+)\) data", text)
    return int(match.group(1)) if match else 0


def run_h2load(
    load: Load,
    port: int,
    seconds: int,
    layout: CpuLayout,
    frame: Path,
    scratch: Path,
    response_frame_bytes: int = 0,
) -> GeneratorResult:
    log = scratch / "h2load.tsv"
    log.unlink(missing_ok=True)
    argv = [
        *layout.generator_prefix(), "h2load",
        "-t", str(_threads(layout, load.connections)), "-c", str(load.connections),
        "-m", str(load.streams), "-D", str(seconds),
        "-d", str(frame), "-H", "content-type: application/grpc", "-H", "te: trailers",
        *(arg for header in load.extra_headers for arg in ("-H", header)),
        "--log-file", str(log), f"http://127.0.0.1:{port}{load.path()}",
    ]  # fmt: skip
    text, cpu = _run_measured(argv, scratch / "h2load.out", seconds + 60)
    succeeded = int(_h2load_number(r"^requests: .*?(\d+) succeeded", text))
    failed = int(_h2load_number(r"^requests: .*?(\d+) failed", text))
    errored = int(_h2load_number(r"^requests: .*?(\d+) errored", text))
    timeouts = int(_h2load_number(r"^requests: .*?(\d+) timeout", text))
    not_2xx = sum(int(_h2load_number(rf"^status codes: .*?(\d+) {c}xx", text)) for c in (3, 4, 5))
    latencies = sorted(
        int(line.split("\t")[2]) for line in log.read_text().splitlines() if line.count("\t") >= 2
    )
    if not latencies:
        raise GeneratorError(f"h2load logged no requests: {text[-800:]}")
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    data_bytes = _data_bytes(text)
    per_request = data_bytes / succeeded if succeeded else 0.0
    detail: dict[str, Any] = {
        "failed": failed,
        "errored": errored,
        "timeout": timeouts,
        "status_not_2xx": not_2xx,
        "data_bytes_per_request": round(per_request, 1),
        "response_frame_bytes": response_frame_bytes,
    }
    # An error answer is trailers-only: no DATA frame. Fewer data bytes than one
    # correct response per request means some answers were errors h2load cannot see.
    suspect = bool(response_frame_bytes) and per_request < 0.95 * response_frame_bytes
    detail["grpc_errors_suspected"] = suspect
    return GeneratorResult(
        requests=succeeded,
        seconds=float(seconds),
        p50_ms=q[49] / 1000,
        p99_ms=q[98] / 1000,
        errors=failed + errored + timeouts + not_2xx,
        generator_cpu_s=cpu,
        argv=argv,
        detail=detail,
    )

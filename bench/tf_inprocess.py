"""tfserver against TensorFlow in-process behind the bare route, on the same SavedModel.

TF Serving's own server cannot be installed here (bench/servers/bare_tf.py
says why), so the comparison is with its floor in Python: the Keras iris
export (examples/sample_models.py) served by ``python -m tfserver`` and by
``bench/servers/bare_tf.py`` (the same session call inline in one Starlette
route), each pinned to one CPU when the machine has two, and sent
sequential requests (c=1) over one keep-alive connection: TF Serving's REST
``:predict`` (row format) and v2 REST (JSON and binary), 1 and 1,000 rows.
The two servers take turns, ``--rounds`` times per case, so that a machine
busy with something else for a while weighs on both; the table gives the
median over the rounds of each round's median and p99, and ours ÷ bare.

    .venv/bin/python bench/tf_inprocess.py [--requests 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from runtime_latency import _iris_rows, _request, sample_models  # noqa: E402
from serverproc import ServerProcess, free_port  # noqa: E402

WARMUP_S = 3.0


def _timed(
    conn: http.client.HTTPConnection, path: str, body: bytes, headers: dict, n: int, warm_s: float
):
    """Median and p99 seconds of ``n`` sequential POSTs, after ``warm_s`` of warm-up."""
    warm_until = time.perf_counter() + warm_s
    while time.perf_counter() < warm_until:
        conn.request("POST", path, body, headers)
        reply = conn.getresponse()
        data = reply.read()
        if reply.status != 200:
            raise RuntimeError(f"{path}: {reply.status}: {data[:300]!r}")
    times = []
    for _ in range(n):
        started = time.perf_counter()
        conn.request("POST", path, body, headers)
        conn.getresponse().read()
        times.append(time.perf_counter() - started)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1]


def _pin(pid: int) -> None:
    if (os.cpu_count() or 1) > 1:
        subprocess.run(["taskset", "-apc", "0", str(pid)], capture_output=True)


def _bare(model_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "servers" / "bare_tf.py"),
            f"--model_dir={model_dir}",
            f"--port={port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/v2/health/ready")
            if conn.getresponse().status == 200:
                return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise TimeoutError("bare_tf did not start")


def _cases(meta: dict) -> list[tuple[str, int, str, bytes, dict]]:
    cases = []
    for rows in (1, 1000):
        x = _iris_rows(rows).astype(np.float32)
        body = json.dumps({"instances": x.tolist()}).encode()
        cases.append(("tf-rest :predict", rows, "/v1/models/m:predict", body, {}))
        for binary in (False, True):
            v2_body, headers = _request(meta, x, binary)
            label = "v2 binary" if binary else "v2 json"
            cases.append((label, rows, "/v2/models/m/infer", v2_body, headers))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="1-row requests per case")
    parser.add_argument("--rounds", type=int, default=3, help="turns of each server per case")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tf-inprocess-") as scratch:
        model_dir = sample_models.write("tensorflow", Path(scratch))["iris-keras"]
        ours = ServerProcess(
            "tfserver",
            ["--model_name=m", f"--model_dir={model_dir}", "--device=cpu", "--nthread=1"],
        )
        ours.start(timeout=180)
        bare, bare_port = _bare(model_dir)
        try:
            _pin(ours.proc.pid)
            _pin(bare.pid)
            conns = {
                "ours": http.client.HTTPConnection("127.0.0.1", ours.http_port),
                "bare": http.client.HTTPConnection("127.0.0.1", bare_port),
            }
            conns["ours"].request("GET", "/v2/models/m")
            meta = json.loads(conns["ours"].getresponse().read())
            results = []
            for label, rows, path, body, headers in _cases(meta):
                n = args.requests if rows == 1 else max(20, args.requests // 5)
                rounds: dict[str, list[tuple[float, float]]] = {who: [] for who in conns}
                for turn in range(args.rounds):
                    warm_s = WARMUP_S if turn == 0 else 0.3
                    for who, conn in conns.items():
                        rounds[who].append(_timed(conn, path, body, headers, n, warm_s))
                timing = {
                    who: tuple(statistics.median(r[i] for r in runs) for i in (0, 1))
                    for who, runs in rounds.items()
                }
                results.append((label, rows, timing))
        finally:
            ours.stop()
            bare.terminate()
            bare.wait(30)
    print("| request | rows | tfserver p50 ms | p99 | bare TF p50 ms | p99 | ours ÷ bare (p50) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, rows, timing in results:
        (o50, o99), (b50, b99) = timing["ours"], timing["bare"]
        print(
            f"| {label} | {rows} | {o50 * 1e3:.2f} | {o99 * 1e3:.2f} | {b50 * 1e3:.2f} | "
            f"{b99 * 1e3:.2f} | {o50 / b50:.2f} |"
        )


if __name__ == "__main__":
    main()

"""Does a slow predict delay anything else? Health checks and another model, measured.

One server (ours) serves three models from one directory: ``slow-sleep``
(predict sleeps 100 ms), ``slow-compute`` (numpy busy for 100 ms) and
``fast`` (answers at once). While eight clients keep a slow model busy, a
probe loop measures /v2/health/ready and a fast-model inference, one at a
time; the same loop with no slow load is the baseline. Run:

    .venv/bin/python bench/nonblocking.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BODY = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [[1, 2, 3, 4]]}]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def probe(base: str, seconds: float) -> dict[str, dict[str, float]]:
    """Sequential health checks and fast inferences for ``seconds``: latencies in ms."""
    health, fast = [], []
    with httpx.Client(base_url=base, timeout=30) as client:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            assert client.get("/v2/health/ready").status_code == 200
            t1 = time.perf_counter()
            assert client.post("/v2/models/fast/infer", json=BODY).status_code == 200
            t2 = time.perf_counter()
            health.append((t1 - t0) * 1000)
            fast.append((t2 - t1) * 1000)
    return {
        name: {
            "n": len(v),
            "p50_ms": statistics.median(v),
            "p99_ms": percentile(v, 0.99),
            "max_ms": max(v),
        }
        for name, v in (("health", health), ("fast_model", fast))
    }


def load_slow(base: str, model: str, stop: threading.Event, done: list[int]) -> None:
    with httpx.Client(base_url=base, timeout=60) as client:
        while not stop.is_set():
            r = client.post(f"/v2/models/{model}/infer", json=BODY)
            assert r.status_code == 200, r.text
            done.append(1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in (
            ("slow-sleep", "sleep 0.1"),
            ("slow-compute", "compute 0.1"),
            ("fast", "sleep 0"),
        ):
            (Path(tmp) / name).mkdir()
            (Path(tmp) / name / "model.sleep").write_text(spec)
        port, grpc_port = free_port(), free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT / "bench" / "models")}
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelserver",
                "--model_class=sleep_model:SleepModel",
                f"--model_dir={tmp}",
                f"--http_port={port}",
                f"--grpc_port={grpc_port}",
                "--host=127.0.0.1",
                "--max_threads=16",
            ],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{base}/v2/health/ready").status_code == 200:
                        break
                time.sleep(0.1)
            results: dict[str, object] = {"baseline": probe(base, args.seconds)}
            for model in ("slow-sleep", "slow-compute"):
                stop, done = threading.Event(), []
                workers = [
                    threading.Thread(target=load_slow, args=(base, model, stop, done))
                    for _ in range(args.clients)
                ]
                for w in workers:
                    w.start()
                time.sleep(0.5)
                measured = probe(base, args.seconds)
                stop.set()
                for w in workers:
                    w.join()
                results[f"while {args.clients} clients keep {model} busy"] = {
                    **measured,
                    "slow_requests_done": len(done),
                }
        finally:
            server.terminate()
            server.wait(30)
    print("| condition | health p50 ms | health p99 ms | fast model p50 ms | fast model p99 ms |")
    print("|---|---|---|---|---|")
    for condition, r in results.items():
        h, f = r["health"], r["fast_model"]  # type: ignore[index]
        print(
            f"| {condition} | {h['p50_ms']:.2f} | {h['p99_ms']:.2f} "
            f"| {f['p50_ms']:.2f} | {f['p99_ms']:.2f} |"
        )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

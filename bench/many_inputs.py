"""What a request of many one-element named inputs costs the server (issue 17, item 2).

sklearnserver serves the iris sample; one request of ``--inputs`` named
inputs is sent (v2 REST JSON, v1 columns or v2 gRPC) while a readiness probe
runs every 10 ms on its own connection. Printed: the request's answer and
time, the probe's slowest and p99 latency (how long the event loop was held),
and the server's RSS before, at its peak and after.

    .venv/bin/python bench/many_inputs.py [--inputs 1000000] [--protocol rest|v1|grpc]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "tests"))

import sample_models  # noqa: E402  (the repo's sample trainer; examples/ is not a package)
from many_inputs import many_inputs, send  # noqa: E402  (the request, as the test sends it)
from serverproc import Prober, ServerProcess, rss_mib  # noqa: E402  (the tests' launcher)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--protocol", choices=["rest", "v1", "grpc"], default="rest")
    parser.add_argument("--repeat", type=int, default=1, help="send it this many times")
    args = parser.parse_args()
    path, raw = many_inputs(args.protocol, args.inputs, "iris")
    answers: list[str] = []
    afters: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = sample_models.write("sklearn", Path(tmp))["iris"]
        with ServerProcess("sklearnserver", ["--model_name=iris", f"--model_dir={model_dir}"]) as s:
            assert s.proc is not None
            good = {"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}
            httpx.post(f"{s.http_url}/v2/models/iris/infer", json={"inputs": [good]})
            before = peak = rss_mib(s.proc.pid)
            prober = Prober(s.http_url)
            prober.start()
            time.sleep(0.3)
            busy = 0.0
            for _ in range(args.repeat):
                started = time.perf_counter()
                sender = threading.Thread(
                    target=lambda: answers.append(
                        " ".join(send(s.http_url, s.grpc_address, path, raw))[:120]
                    )
                )
                sender.start()
                while sender.is_alive():
                    peak = max(peak, rss_mib(s.proc.pid))
                    sender.join(0.05)
                busy += time.perf_counter() - started
                time.sleep(1.0)
                afters.append(f"{rss_mib(s.proc.pid):.0f}")
            prober.done.set()
            prober.join()
    lat = np.asarray(prober.latencies) * 1000
    print(f"{args.protocol}, {args.inputs:,} inputs ({len(raw) / 1e6:.0f} MB): {answers[0]}")
    print(f"  {args.repeat} request(s) sent and answered in {busy:.2f} s")
    print(
        f"  readiness probe: {len(lat)} answered, slowest {lat.max():.0f} ms, "
        f"p99 {np.percentile(lat, 99):.0f} ms, median {np.median(lat):.1f} ms, "
        f"failed {len(prober.failures)}"
    )
    print(
        f"  server RSS: {before:.0f} MiB before, {peak:.0f} peak, "
        f"{', '.join(afters)} a second after each"
    )


if __name__ == "__main__":
    main()

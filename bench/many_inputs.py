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

import grpc
import httpx
import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "tests"))

import sample_models  # noqa: E402  (the repo's sample trainer; examples/ is not a package)
from serverproc import Prober, ServerProcess, rss_mib  # noqa: E402  (the tests' launcher)


def payload(protocol: str, count: int) -> tuple[str, bytes]:
    """The request's path (or gRPC method) and its bytes."""
    if protocol == "grpc":
        from modelserver import protos as pb

        msg = pb.ModelInferRequest(model_name="iris")
        for i in range(count):
            tensor = msg.inputs.add(name=f"x{i}", datatype="FP64", shape=[1])
            tensor.contents.fp64_contents.append(1.0)
        return "/inference.GRPCInferenceService/ModelInfer", msg.SerializeToString()
    if protocol == "v1":
        body = orjson.dumps({"inputs": {f"x{i}": [1.0] for i in range(count)}})
        return "/v1/models/iris:predict", body
    inputs = [
        {"name": f"x{i}", "shape": [1], "datatype": "FP64", "data": [1.0]} for i in range(count)
    ]
    return "/v2/models/iris/infer", orjson.dumps({"inputs": inputs})


def send(server: ServerProcess, path: str, raw: bytes) -> str:
    """Send the request; its answer in a few words."""
    size = f"{len(raw) / 1e6:.0f} MB"
    if not path.startswith("/inference"):
        reply = httpx.post(f"{server.http_url}{path}", content=raw, timeout=300)
        return f"{reply.status_code} ({size}): {reply.text[:80]}"
    options = [("grpc.max_send_message_length", 200 * 2**20)]
    with grpc.insecure_channel(server.grpc_address, options=options) as channel:
        call = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
        try:
            call(raw, timeout=300)
            return f"OK ({size})"
        except grpc.RpcError as exc:
            return f"{exc.code().name} ({size}): {exc.details()[:80]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--protocol", choices=["rest", "v1", "grpc"], default="rest")
    parser.add_argument("--repeat", type=int, default=1, help="send it this many times")
    args = parser.parse_args()
    path, raw = payload(args.protocol, args.inputs)
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
                sender = threading.Thread(target=lambda: answers.append(send(s, path, raw)))
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
    print(f"{args.protocol}, {args.inputs:,} inputs: {answers[0]}")
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

"""A bounded mixed soak of one runtime: does it stay flat and answer everything right?

The runtime (a case of tests/runtimes/cases, so every runtime can be soaked)
serves its sample on 127.0.0.1, and ``--clients`` threads send a seeded mix
until ``--minutes`` have passed: v2 REST JSON, v2 REST with the binary tensor
extension, v2 gRPC and v1 REST, about ``--bad`` of them bad on purpose (a
row of the wrong width, malformed JSON, a wrong datatype, an unknown model,
a malformed gRPC message). A good request must answer 200 / OK and a bad one
4xx / its gRPC error; anything else is an error, and any 5xx (or gRPC
INTERNAL / UNKNOWN) is counted apart.

Per window: requests, errors, 5xx, p99 latency, and the server's RSS and
open file descriptors. At the end: the RSS and fd slopes, least squares over
the samples after the first window (warm-up: allocators and caches fill).

    .venv/bin/python bench/soak.py --runtime sklearnserver [--minutes 10] [--window 60]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "runtimes"))

import sample_models  # noqa: E402  (the repo's sample trainer; examples/ is not a package)
from modelserver import protos as pb  # noqa: E402
from runtime_case import RuntimeCase, all_cases  # noqa: E402  (the shared runtime cases)
from serverproc import ServerProcess, rss_mib  # noqa: E402  (the tests' launcher)

KINDS = ("json", "binary", "grpc", "v1")
BAD_KINDS = ("width", "json", "datatype", "model", "grpc")
INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
#: gRPC codes of a server fault (REST's 5xx).
GRPC_FAULTS = {"INTERNAL", "UNKNOWN", "DATA_LOSS", "UNIMPLEMENTED"}


@dataclass
class Payloads:
    """Every request the soak sends, built once."""

    json: bytes
    binary: tuple[bytes, int]
    grpc: bytes
    v1: bytes
    bad: dict[str, Any] = field(default_factory=dict)


def payloads(case: RuntimeCase) -> Payloads:
    rows = case.array()
    tensor = {"name": case.input_name, "shape": list(rows.shape), "datatype": case.datatype}
    raw = case.raw()
    header = orjson.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": len(raw)}}]})
    msg = pb.ModelInferRequest(model_name="m")
    msg.inputs.add(name=case.input_name, datatype=case.datatype, shape=list(rows.shape))
    msg.raw_input_contents.append(raw)
    width = {**tensor, "shape": [1, len(case.bad_row)], "data": case.bad_row}
    strings = {**tensor, "datatype": "BYTES", "data": [f"{v}x" for v in rows.reshape(-1)]}
    return Payloads(
        json=orjson.dumps({"inputs": [{**tensor, "data": rows.reshape(-1).tolist()}]}),
        binary=(header + raw, len(header)),
        grpc=msg.SerializeToString(),
        v1=orjson.dumps({"instances": rows.tolist()}),
        bad={
            "width": orjson.dumps({"inputs": [width]}),
            "json": b'{"inputs": [{"name": "x", "shape": [1,',
            "datatype": orjson.dumps({"inputs": [strings]}),
            "model": orjson.dumps({"inputs": [{**tensor, "data": rows.reshape(-1).tolist()}]}),
            # cut inside the raw tensor: the length prefix runs past the end (unparseable)
            "grpc": msg.SerializeToString()[:-3],
        },
    )


@dataclass
class Outcome:
    at: float
    latency: float
    ok: bool
    fault: bool
    #: what was sent ("bad-" for a bad one) and what came back
    what: str


class Client(threading.Thread):
    """One connection per protocol, sending the seeded mix until the deadline."""

    def __init__(
        self, server: ServerProcess, p: Payloads, bad: float, seed: int, deadline: float
    ) -> None:
        super().__init__(daemon=True)
        self.server, self.p, self.bad, self.deadline = server, p, bad, deadline
        self.rng = random.Random(seed)
        self.outcomes: list[Outcome] = []

    def run(self) -> None:
        url = self.server.http_url
        with (
            httpx.Client(timeout=30) as http,
            grpc.insecure_channel(self.server.grpc_address) as channel,
        ):
            infer = channel.unary_unary(INFER_METHOD)
            while time.monotonic() < self.deadline:
                bad = self.rng.random() < self.bad
                kind = self.rng.choice(BAD_KINDS if bad else KINDS)
                started = time.perf_counter()
                status = self.send(http, infer, url, kind, bad)
                latency = time.perf_counter() - started
                if isinstance(status, int):
                    ok = (400 <= status < 500) if bad else status == 200
                    fault = status >= 500
                else:
                    ok = (status not in ("OK", *GRPC_FAULTS)) if bad else status == "OK"
                    fault = status in GRPC_FAULTS
                what = f"{'bad-' if bad else ''}{kind}: {status}"
                self.outcomes.append(Outcome(time.monotonic(), latency, ok, fault, what))

    def send(self, http: httpx.Client, infer: Any, url: str, kind: str, bad: bool) -> int | str:
        p = self.p
        try:
            if kind == "grpc":
                infer(p.bad["grpc"] if bad else p.grpc, timeout=30)
                return "OK"
        except grpc.RpcError as exc:
            return str(exc.code().name)
        v2 = f"{url}/v2/models/m/infer"
        json_type = {"content-type": "application/json"}
        if bad:
            target = f"{url}/v2/models/absent/infer" if kind == "model" else v2
            return http.post(target, content=p.bad[kind], headers=json_type).status_code
        if kind == "json":
            return http.post(v2, content=p.json, headers=json_type).status_code
        if kind == "binary":
            body, length = p.binary
            headers = {
                "content-type": "application/octet-stream",
                "inference-header-content-length": str(length),
            }
            return http.post(v2, content=body, headers=headers).status_code
        v1 = f"{url}/v1/models/m:predict"
        return http.post(v1, content=p.v1, headers=json_type).status_code


class Monitor(threading.Thread):
    """The server's RSS (MiB) and open file descriptors, once a second."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, float, int]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(1.0):
            fds = len(os.listdir(f"/proc/{self.pid}/fd"))
            self.samples.append((time.monotonic(), rss_mib(self.pid), fds))


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    if len(points) < 2:
        return float("nan")
    t = np.asarray([p[0] for p in points]) / 60.0
    y = np.asarray([p[1] for p in points])
    return float(np.polyfit(t, y, 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runtime", required=True, help="a module of tests/runtimes/cases")
    parser.add_argument("--sample", help="the case's sample (default: its first case's)")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--window", type=float, default=60.0, help="seconds per row")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--bad", type=float, default=0.05, help="share of bad requests")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    case = next(c for c in all_cases() if c.module == args.runtime)
    sample = args.sample or case.sample
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = sample_models.write(case.framework, Path(tmp))[sample]
        flags = ["--model_name=m", f"--model_dir={model_dir}", *case.flags]
        with ServerProcess(case.module, flags, env=case.env) as server:
            assert server.proc is not None
            start = time.monotonic()
            deadline = start + args.minutes * 60
            monitor = Monitor(server.proc.pid)
            monitor.start()
            p = payloads(case)
            clients = [
                Client(server, p, args.bad, args.seed * 1000 + i, deadline)
                for i in range(args.clients)
            ]
            for client in clients:
                client.start()
            for client in clients:
                client.join()
            monitor.done.set()
            monitor.join()
    report(args, case, sample, start, clients, monitor.samples, load_before)


def report(
    args: argparse.Namespace,
    case: RuntimeCase,
    sample: str,
    start: float,
    clients: list[Client],
    samples: list[tuple[float, float, int]],
    load_before: tuple[float, float, float],
) -> None:
    outcomes = sorted((o for c in clients for o in c.outcomes), key=lambda o: o.at)
    print(
        f"## {case.module} ({case.framework}/{sample}): {args.minutes:g} min, "
        f"{args.clients} clients, {args.bad:.0%} bad, seed {args.seed}"
    )
    print()
    print("| window | requests | errors | 5xx | p99 ms | RSS MiB | open fds |")
    print("|---|---|---|---|---|---|---|")
    windows = int(np.ceil(args.minutes * 60 / args.window))
    for w in range(windows):
        lo, hi = start + w * args.window, start + (w + 1) * args.window
        chunk = [o for o in outcomes if lo <= o.at < hi]
        ss = [s for s in samples if lo <= s[0] < hi]
        if not chunk:
            continue
        p99 = np.percentile([o.latency for o in chunk], 99) * 1000
        rss = f"{ss[-1][1]:.0f}" if ss else "-"
        fds = f"{ss[-1][2]}" if ss else "-"
        print(
            f"| {w + 1} | {len(chunk)} | {sum(not o.ok for o in chunk)} | "
            f"{sum(o.fault for o in chunk)} | {p99:.1f} | {rss} | {fds} |"
        )
    steady = [s for s in samples if s[0] >= start + args.window]
    rss_slope = slope_per_minute([(s[0], s[1]) for s in steady])
    fd_slope = slope_per_minute([(s[0], float(s[2])) for s in steady])
    total = len(outcomes)
    unexpected = Counter(o.what for o in outcomes if not o.ok)
    print()
    if unexpected:
        print("unexpected answers:", ", ".join(f"{w} ({n})" for w, n in unexpected.most_common(5)))
    print(
        f"total {total} requests ({total / (args.minutes * 60):.0f}/s), "
        f"{sum(not o.ok for o in outcomes)} errors, {sum(o.fault for o in outcomes)} 5xx, "
        f"p99 {np.percentile([o.latency for o in outcomes], 99) * 1000:.1f} ms; "
        f"RSS slope {rss_slope:+.2f} MiB/min, fd slope {fd_slope:+.2f}/min after window 1; "
        f"load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after"
    )


if __name__ == "__main__":
    main()

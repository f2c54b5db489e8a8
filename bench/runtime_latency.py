"""Predict latency of every runtime for 1 row and 1,000 rows, through the real server.

Each runtime is started as ``python -m <runtime>`` on its iris sample (built
by examples/sample_models.py), pinned to one CPU when the machine has two,
and sent sequential v2 REST requests (c=1) over one keep-alive connection,
as JSON and with the binary tensor extension. The table gives the median and
p99 round trip and the model's own predict time as the server measured it
(``modelserver_predict_duration_seconds``), so protocol cost and framework
cost can be told apart. Text models (huggingfaceserver's tasks) get lines of
the Zen of Python instead of iris rows: 1 and 100 texts, and one prompt (8
greedy tokens) for generation. Streamed generation is measured by
bench/generation.py.

    .venv/bin/python bench/runtime_latency.py [--runtime onnxserver ...] [--requests 300]

Two more modes, for what the server does besides serving a warm model:

* ``--mode first-request`` starts each runtime ``--starts`` times with
  ``--warmup=false`` and as many with warm-up (the default), and gives the
  median time to ready and the median latency of the first and the second
  1-row v2 JSON request after ready: what warm-up moves from the first
  client to the start.
* ``--mode cache`` serves each runtime with ``--response_cache_size`` and
  gives the median and p99 of the same request again and again (every one a
  hit after the first), of requests whose rows change every time (every one
  a miss: computed, hashed and kept), and of those changing requests on a
  server without the cache, for 1 and 1,000 rows, JSON and binary.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "tests"))

import sample_models  # noqa: E402  (the repo's sample trainer; examples/ is not a package)
from serverproc import ServerProcess  # noqa: E402  (the same launcher the tests use)


@dataclass(frozen=True)
class Subject:
    runtime: str
    framework: str
    sample: str
    flags: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    #: Rows of the small and the large request.
    rows: tuple[int, ...] = (1, 1000)
    #: The request's parameters (a generation's options).
    parameters: tuple[tuple[str, object], ...] = ()


SUBJECTS = [
    Subject("sklearnserver", "sklearn", "iris"),
    Subject("xgbserver", "xgboost", "iris-json"),
    Subject("lgbserver", "lightgbm", "iris"),
    Subject("pmmlserver", "pmml", "iris"),
    Subject("paddleserver", "paddle", "iris-mlp"),
    Subject("onnxserver", "onnx", "iris-pipeline"),
    Subject("onnxserver", "onnx", "iris-mlp"),
    Subject("mlflowserver", "mlflow", "iris"),
    Subject("mlflowserver", "mlflow", "iris-xgboost"),
    Subject("tfserver", "tensorflow", "iris-keras"),
    Subject(
        "modelserver",
        "custom",
        "iris",
        flags=("--model_class=custom_model.iris_custom:IrisModel",),
        env=(("PYTHONPATH", str(ROOT / "examples")),),
    ),
    # One core: torch's intra-op pool sized to it (as the KServe manifest does).
    Subject("torchserver", "torch", "iris-torchscript", flags=("--nthread=1",)),
    Subject("torchserver", "torch", "iris-export", flags=("--nthread=1",)),
    Subject("torchserver", "torch", "iris-aoti", flags=("--nthread=1", "--allow_unchecked_aoti")),
    Subject(
        "torchserver",
        "torch",
        "iris-state-dict",
        flags=("--nthread=1", "--model_class=samples.torch_models:IrisMLP"),
        env=(("PYTHONPATH", str(ROOT / "examples")),),
    ),
    *(
        Subject("huggingfaceserver", "huggingface", sample, ("--nthread=1",), rows=(1, 100))
        for sample in ("bert-classifier", "bert-ner", "bert-fill-mask", "bert-embedding")
    ),
    *(
        Subject(
            "huggingfaceserver",
            "huggingface",
            sample,
            ("--nthread=1",),
            rows=(1,),
            parameters=(("max_tokens", 8), ("min_tokens", 8), ("temperature", 0)),
        )
        for sample in ("gpt2-chat", "t5-text2text")
    ),
]

NUMPY = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64}
BINARY_PARAM = {"binary_data_output": True}
WARMUP_S = 3.0
#: Cache mode: unmeasured requests before each measured run (the server warmed itself up).
CACHE_WARM_N = 50


def _iris_rows(n: int) -> np.ndarray:
    from sklearn.datasets import load_iris

    X = load_iris().data
    return X[np.arange(n) % len(X)]


def _texts(n: int) -> list[str]:
    """``n`` lines of English that ship with Python (the Zen), some with a [MASK] for fill-mask."""
    import codecs
    import contextlib
    import importlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # importing ``this`` prints the Zen
        zen = importlib.import_module("this")
    lines = [line for line in codecs.decode(zen.s, "rot13").splitlines() if line.strip()]
    return [f"{lines[i % len(lines)]} [MASK]." for i in range(n)]


def _text_request(
    meta: dict, texts: list[str], binary: bool, parameters: dict
) -> tuple[bytes, dict[str, str]]:
    """A v2 request of one BYTES tensor of ``texts`` (binary: each length-prefixed)."""
    name = meta["inputs"][0]["name"]
    tensor: dict = {"name": name, "shape": [len(texts)], "datatype": "BYTES"}
    if not binary:
        tensor["data"] = texts
        body = {"inputs": [tensor], "parameters": parameters}
        return json.dumps(body).encode(), {"Content-Type": "application/json"}
    raw = b"".join(len(t.encode()).to_bytes(4, "little") + t.encode() for t in texts)
    tensor["parameters"] = {"binary_data_size": len(raw)}
    head = json.dumps({"inputs": [tensor], "parameters": {**parameters, **BINARY_PARAM}})
    return head.encode() + raw, {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(head.encode())),
    }


def _request(meta: dict, rows: np.ndarray, binary: bool) -> tuple[bytes, dict[str, str]]:
    """A v2 request for ``rows`` shaped by the model's metadata (one tensor, or a column each)."""
    inputs = meta["inputs"]
    if len(inputs) == 1:
        spec = inputs[0]
        tensors = [(spec["name"], spec["datatype"], rows.astype(NUMPY[spec["datatype"]]))]
    else:
        tensors = [
            (spec["name"], spec["datatype"], rows[:, i].astype(NUMPY[spec["datatype"]]))
            for i, spec in enumerate(inputs)
        ]
    if not binary:
        body = {
            "inputs": [
                {"name": n, "shape": list(a.shape), "datatype": d, "data": a.reshape(-1).tolist()}
                for n, d, a in tensors
            ]
        }
        return json.dumps(body).encode(), {"Content-Type": "application/json"}
    header = {
        "inputs": [
            {
                "name": n,
                "shape": list(a.shape),
                "datatype": d,
                "parameters": {"binary_data_size": a.nbytes},
            }
            for n, d, a in tensors
        ],
        "parameters": BINARY_PARAM,
    }
    head = json.dumps(header).encode()
    body = head + b"".join(np.ascontiguousarray(a).tobytes() for _, _, a in tensors)
    return body, {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(head)),
    }


def timed(call, n: int) -> float:
    """Median seconds of ``call()`` over ``n`` runs after a warm-up (in-process timings)."""
    for _ in range(max(20, n // 5)):
        call()
    times = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


PREDICT = re.compile(r"^modelserver_predict_duration_seconds_(sum|count)\{[^}]*\} (\S+)$", re.M)


def _predict_totals(conn: http.client.HTTPConnection) -> tuple[float, float]:
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    found = {kind: float(value) for kind, value in PREDICT.findall(text)}
    return found.get("sum", 0.0), found.get("count", 0.0)


Request = tuple[bytes, dict[str, str]]


def _post(conn: http.client.HTTPConnection, request: Request) -> float:
    """One inference's round trip in seconds; RuntimeError for any answer but 200."""
    body, headers = request
    started = time.perf_counter()
    conn.request("POST", "/v2/models/m/infer", body, headers)
    reply = conn.getresponse()
    data = reply.read()
    elapsed = time.perf_counter() - started
    if reply.status != 200:
        raise RuntimeError(f"{reply.status}: {data[:300]!r}")
    return elapsed


def _measure(
    conn: http.client.HTTPConnection,
    requests: list[Request],
    n: int,
    warm_s: float = WARMUP_S,
    warm_n: int = 10,
):
    """Median and p99 round trip and mean predict time of ``n`` requests (cycling ``requests``).

    ``warm_n`` requests, and more until ``warm_s`` seconds passed, go first, unmeasured.
    """
    # Warm up for a while, not a count: a JIT (pmml4s on the JVM) needs seconds.
    warm_until, warmed = time.perf_counter() + warm_s, 0
    while warmed < warm_n or time.perf_counter() < warm_until:
        _post(conn, requests[warmed % len(requests)])
        warmed += 1
    before = _predict_totals(conn)
    times = [_post(conn, requests[(warmed + i) % len(requests)]) for i in range(n)]
    after = _predict_totals(conn)
    calls = after[1] - before[1]
    predict = (after[0] - before[0]) / calls if calls else float("nan")
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1], predict


_BUILT: dict[tuple[str, Path], dict[str, Path]] = {}


def samples(framework: str, models: Path) -> dict[str, Path]:
    """A framework's samples under ``models``, built once per run (torch's compile for minutes)."""
    if (framework, models) not in _BUILT:
        _BUILT[framework, models] = sample_models.write(framework, models)
    return _BUILT[framework, models]


def _started(subject: Subject, models: Path, *flags: str) -> tuple[ServerProcess, float]:
    """The subject's server, ready and pinned to CPU 0, and its exec-to-ready seconds."""
    model_dir = samples(subject.framework, models)[subject.sample]
    server = ServerProcess(
        subject.runtime,
        ["--model_name=m", f"--model_dir={model_dir}", *subject.flags, *flags],
        env=dict(subject.env),
    )
    started = time.perf_counter()
    server.start(timeout=300)
    ready = time.perf_counter() - started
    if os.cpu_count() and os.cpu_count() > 1:
        subprocess.run(["taskset", "-apc", "0", str(server.proc.pid)], capture_output=True)
    return server, ready


def _metadata(conn: http.client.HTTPConnection) -> dict:
    conn.request("GET", "/v2/models/m")
    return json.loads(conn.getresponse().read())


def run_subject(subject: Subject, models: Path, requests: int) -> list[dict]:
    server, cold = _started(subject, models)
    rows_out = []
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.http_port)
        meta = _metadata(conn)
        text = meta["inputs"][0]["datatype"] == "BYTES"
        for n_rows in subject.rows:
            n_requests = requests if n_rows == 1 else max(20, requests // 5)
            for binary in (False, True):
                if text:
                    parameters = dict(subject.parameters)
                    body, headers = _text_request(meta, _texts(n_rows), binary, parameters)
                else:
                    body, headers = _request(meta, _iris_rows(n_rows), binary)
                p50, p99, predict = _measure(conn, [(body, headers)], n_requests)
                rows_out.append(
                    {
                        "runtime": subject.runtime,
                        "sample": f"{subject.framework}/{subject.sample}",
                        "rows": n_rows,
                        "encoding": "binary" if binary else "json",
                        "p50_ms": p50 * 1e3,
                        "p99_ms": p99 * 1e3,
                        "predict_ms": predict * 1e3,
                        "cold_start_s": cold,
                    }
                )
    finally:
        server.stop()
    return rows_out


def first_request(subject: Subject, models: Path, starts: int) -> list[dict]:
    """Time to ready and the first two requests' latency, without and with warm-up."""
    rows_out = []
    for warmup in (False, True):
        ready, first, second = [], [], []
        for _ in range(starts):
            server, seconds = _started(subject, models, f"--warmup={str(warmup).lower()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", server.http_port)
                request = _request(_metadata(conn), _iris_rows(1), binary=False)
                first.append(_post(conn, request))
                second.append(_post(conn, request))
                ready.append(seconds)
            finally:
                server.stop()
        rows_out.append(
            {
                "runtime": subject.runtime,
                "sample": f"{subject.framework}/{subject.sample}",
                "warmup": warmup,
                "ready_s": statistics.median(ready),
                "first_ms": statistics.median(first) * 1e3,
                "second_ms": statistics.median(second) * 1e3,
                "starts": starts,
            }
        )
    return rows_out


def _varied(meta: dict, n_rows: int, binary: bool, count: int) -> list[Request]:
    """``count`` requests of ``n_rows`` rows whose values all differ: every one a miss.

    JSON and binary get other values: the cache keys the decoded tensors, so the
    same rows sent both ways are one entry.
    """
    rows = _iris_rows(n_rows) + (0.5 if binary else 0.0)
    return [_request(meta, rows + 1e-3 * (i + 1), binary) for i in range(count)]


def cache_costs(subject: Subject, models: Path, requests: int) -> list[dict]:
    """Hit, miss and uncached round trips, for 1 and 1,000 rows, JSON and binary."""
    cases = [(n_rows, binary) for n_rows in (1, 1000) for binary in (False, True)]
    measured: dict[tuple[str, int, bool], tuple[float, float]] = {}
    for cached in (True, False):
        flags = ("--response_cache_size=100000",) if cached else ()
        server, _ = _started(subject, models, *flags)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", server.http_port)
            meta = _metadata(conn)
            for n_rows, binary in cases:
                n = requests if n_rows == 1 else max(20, requests // 5)
                # A count of unmeasured requests first, not a time: no changing request repeats.
                varied = _varied(meta, n_rows, binary, n + CACHE_WARM_N)
                kinds = {"miss" if cached else "off": varied}
                if cached:
                    kinds["hit"] = [_request(meta, _iris_rows(n_rows), binary)]
                for kind, bodies in kinds.items():
                    p50, p99, _ = _measure(conn, bodies, n, warm_s=0.0, warm_n=CACHE_WARM_N)
                    measured[kind, n_rows, binary] = (p50, p99)
        finally:
            server.stop()
    return [
        {
            "runtime": subject.runtime,
            "sample": f"{subject.framework}/{subject.sample}",
            "rows": n_rows,
            "encoding": "binary" if binary else "json",
            **{
                f"{kind}_{stat}_ms": measured[kind, n_rows, binary][i] * 1e3
                for kind in ("hit", "miss", "off")
                for i, stat in enumerate(("p50", "p99"))
            },
        }
        for n_rows, binary in cases
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runtime", action="append", help="only these runtimes")
    parser.add_argument("--sample", action="append", help="only these samples (FRAMEWORK/NAME)")
    parser.add_argument("--mode", choices=["latency", "first-request", "cache"], default="latency")
    parser.add_argument("--requests", type=int, default=300, help="1-row requests per case")
    parser.add_argument("--starts", type=int, default=3, help="first-request: starts per case")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    subjects = [
        s
        for s in SUBJECTS
        if (not args.runtime or s.runtime in args.runtime)
        and (not args.sample or f"{s.framework}/{s.sample}" in args.sample)
    ]
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="runtime-latency-") as scratch:
        for subject in subjects:
            if args.mode == "first-request":
                results.extend(first_request(subject, Path(scratch), args.starts))
            elif args.mode == "cache":
                results.extend(cache_costs(subject, Path(scratch), args.requests))
            else:
                results.extend(run_subject(subject, Path(scratch), args.requests))
    if args.mode == "first-request":
        _print_first_requests(results)
    elif args.mode == "cache":
        _print_cache_costs(results)
    else:
        _print_latency(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def _print_first_requests(results: list[dict]) -> None:
    print("| runtime | sample | warm-up | ready s | 1st request ms | 2nd request ms |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for r in results:
        print(
            f"| {r['runtime']} | {r['sample']} | {'on' if r['warmup'] else 'off'} | "
            f"{r['ready_s']:.2f} | {r['first_ms']:.2f} | {r['second_ms']:.2f} |"
        )


def _print_cache_costs(results: list[dict]) -> None:
    print("| runtime | sample | rows | body | hit p50/p99 ms | miss p50/p99 ms | no cache |")
    print("| --- | --- | ---: | --- | ---: | ---: | ---: |")
    for r in results:
        cells = " | ".join(
            f"{r[f'{k}_p50_ms']:.3f} / {r[f'{k}_p99_ms']:.3f}" for k in ("hit", "miss", "off")
        )
        print(f"| {r['runtime']} | {r['sample']} | {r['rows']} | {r['encoding']} | {cells} |")


def _print_latency(results: list[dict]) -> None:
    print("| runtime | sample | rows | body | p50 ms | p99 ms | predict ms | cold start s |")
    print("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |")
    for r in results:
        print(
            f"| {r['runtime']} | {r['sample']} | {r['rows']} | {r['encoding']} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['predict_ms']:.3f} | "
            f"{r['cold_start_s']:.2f} |"
        )


if __name__ == "__main__":
    main()

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


def _measure(conn: http.client.HTTPConnection, body: bytes, headers: dict[str, str], n: int):
    # Warm up for a while, not a count: a JIT (pmml4s on the JVM) needs seconds.
    warm_until, warmed = time.perf_counter() + WARMUP_S, 0
    while warmed < 10 or time.perf_counter() < warm_until:
        conn.request("POST", "/v2/models/m/infer", body, headers)
        reply = conn.getresponse()
        data = reply.read()
        if reply.status != 200:
            raise RuntimeError(f"{reply.status}: {data[:300]!r}")
        warmed += 1
    before = _predict_totals(conn)
    times = []
    for _ in range(n):
        started = time.perf_counter()
        conn.request("POST", "/v2/models/m/infer", body, headers)
        reply = conn.getresponse()
        reply.read()
        times.append(time.perf_counter() - started)
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


def run_subject(subject: Subject, models: Path, requests: int) -> list[dict]:
    model_dir = samples(subject.framework, models)[subject.sample]
    server = ServerProcess(
        subject.runtime,
        ["--model_name=m", f"--model_dir={model_dir}", *subject.flags],
        env=dict(subject.env),
    )
    started = time.perf_counter()
    server.start(timeout=120)
    cold = time.perf_counter() - started
    if os.cpu_count() and os.cpu_count() > 1:
        subprocess.run(["taskset", "-apc", "0", str(server.proc.pid)], capture_output=True)
    rows_out = []
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.http_port)
        conn.request("GET", "/v2/models/m")
        meta = json.loads(conn.getresponse().read())
        text = meta["inputs"][0]["datatype"] == "BYTES"
        for n_rows in subject.rows:
            n_requests = requests if n_rows == 1 else max(20, requests // 5)
            for binary in (False, True):
                if text:
                    parameters = dict(subject.parameters)
                    body, headers = _text_request(meta, _texts(n_rows), binary, parameters)
                else:
                    body, headers = _request(meta, _iris_rows(n_rows), binary)
                p50, p99, predict = _measure(conn, body, headers, n_requests)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runtime", action="append", help="only these runtimes")
    parser.add_argument("--requests", type=int, default=300, help="1-row requests per case")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    subjects = [s for s in SUBJECTS if not args.runtime or s.runtime in args.runtime]
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="runtime-latency-") as scratch:
        for subject in subjects:
            results.extend(run_subject(subject, Path(scratch), args.requests))
    print("| runtime | sample | rows | body | p50 ms | p99 ms | predict ms | cold start s |")
    print("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |")
    for r in results:
        print(
            f"| {r['runtime']} | {r['sample']} | {r['rows']} | {r['encoding']} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['predict_ms']:.3f} | "
            f"{r['cold_start_s']:.2f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

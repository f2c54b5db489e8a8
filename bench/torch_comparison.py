"""One network three ways: torch in-process, through torchserver, and as ONNX through onnxserver.

The iris MLP of examples/samples/torch_models.py (onnx/iris-mlp is the same
trained network exported by torch.onnx) is

- called in this process with torch's own loaders, one intra-op thread,
  pinned to CPU 0: ``model(tensor)`` under ``torch.inference_mode()`` plus the
  numpy conversions a caller needs (the floor a server cannot beat);
- served by torchserver in each format, and by onnxserver, ``--nthread=1``,
  every server thread pinned to CPU 0, sent v2 REST requests with the binary
  tensor extension from CPU 1 (c=1, one keep-alive connection;
  bench/runtime_latency.py's method), with the model's own time from the
  server's ``modelserver_predict_duration_seconds``.

The difference between a server's round trip and the in-process call is
what serving adds (HTTP, decoding, checks, encoding); the difference between
the servers' predict times is what ONNX Runtime and torch cost for the same
network.

    .venv/bin/python bench/torch_comparison.py [--requests 300]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

# bench/ is this script's directory, so on sys.path: the latency script's launcher,
# requests and measurement.
import runtime_latency as latency

FORMATS = ["iris-torchscript", "iris-export", "iris-aoti", "iris-state-dict"]
ONNX = latency.Subject("onnxserver", "onnx", "iris-mlp", flags=("--nthread=1", "--device=cpu"))


def _in_process(name: str, directory: Path, rows: int, calls: int) -> float:
    """Median seconds of one in-process call on ``rows`` rows, numpy in and out."""
    import torch
    from samples.torch_models import load_with_torch

    model = load_with_torch(name, directory)
    x = latency._iris_rows(rows).astype(np.float32)

    def call() -> None:
        with torch.inference_mode():
            answer = model(torch.from_numpy(x))
            [v.numpy() for v in answer.values()]

    return latency.timed(call, calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="1-row requests per case")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})
    few = max(20, args.requests // 5)
    table: list[tuple[str, str, float, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="torch-comparison-") as scratch:
        models = Path(scratch)
        torch_samples = latency.samples("torch", models)
        for name in FORMATS:
            one = _in_process(name, torch_samples[name], 1, args.requests)
            many = _in_process(name, torch_samples[name], 1000, few)
            table.append(("torch in-process", name, one, many, ""))
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)) - {0} or {0})
        subjects = [s for s in latency.SUBJECTS if s.sample in FORMATS] + [ONNX]
        for subject in subjects:
            rows = latency.run_subject(subject, models, args.requests)
            binary = {r["rows"]: r for r in rows if r["encoding"] == "binary"}
            predict = f"{binary[1]['predict_ms']:.3f} / {binary[1000]['predict_ms']:.3f}"
            label = f"{subject.runtime}, v2 binary"
            sample = f"{subject.framework}/{subject.sample}"
            table.append(
                (label, sample, binary[1]["p50_ms"] / 1e3, binary[1000]["p50_ms"] / 1e3, predict)
            )
    print("| how | model | 1 row p50 ms | 1,000 rows p50 ms | server's predict ms, 1 / 1,000 |")
    print("| --- | --- | ---: | ---: | ---: |")
    for how, model, one, many, predict in table:
        print(f"| {how} | {model} | {one * 1e3:.3f} | {many * 1e3:.3f} | {predict} |")


if __name__ == "__main__":
    main()

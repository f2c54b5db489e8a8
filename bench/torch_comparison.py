"""One network three ways: torch in-process, through torchserver, and as ONNX through onnxserver.

The iris MLP of examples/samples/torch_models.py (onnx/iris-mlp is the same
trained network exported by torch.onnx) is

- called in a child process with torch's own loaders, one intra-op thread,
  pinned to CPU 0: ``model(tensor)`` under ``torch.inference_mode()`` plus the
  numpy conversions a caller needs (the floor a server cannot beat);
- served by torchserver in each format, and by onnxserver, ``--nthread=1``,
  every server thread pinned to CPU 0, sent v2 REST requests with the binary
  tensor extension (c=1, one keep-alive connection; bench/runtime_latency.py's
  method), with the model's own time from the server's
  ``modelserver_predict_duration_seconds``.

The difference between a server's round trip and the in-process call is
what serving adds (HTTP, decoding, checks, encoding); the difference between
the servers' predict times is what ONNX Runtime and torch cost for the same
network.

    .venv/bin/python bench/torch_comparison.py [--requests 300]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

# bench/ is this script's directory, so on sys.path: the latency script's launcher,
# requests and measurement.
import runtime_latency as latency

FORMATS = ["iris-torchscript", "iris-export", "iris-aoti", "iris-state-dict"]
ONNX = latency.Subject("onnxserver", "onnx", "iris-mlp", flags=("--nthread=1", "--device=cpu"))


def in_process(samples: dict[str, str], requests: int) -> None:
    """In the child: one JSON line per format, median seconds for 1 and 1,000 rows."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})  # before torch starts its threads
    import torch
    from samples.torch_models import load_with_torch

    torch.set_num_threads(1)
    for name in FORMATS:
        model = load_with_torch(name, Path(samples[name]))
        medians = []
        for rows, calls in ((1, requests), (1000, max(20, requests // 5))):
            x = latency._iris_rows(rows).astype(np.float32)

            def call(model=model, x=x) -> None:
                with torch.inference_mode():
                    [v.numpy() for v in model(torch.from_numpy(x)).values()]

            medians.append(latency.timed(call, calls))
        print(json.dumps([name, *medians]), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="1-row requests per case")
    parser.add_argument("--in-process", help=argparse.SUPPRESS)  # the child's samples (JSON)
    args = parser.parse_args()
    if args.in_process:
        in_process(json.loads(args.in_process), args.requests)
        return
    table: list[tuple[str, str, float, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="torch-comparison-") as scratch:
        models = Path(scratch)
        torch_samples = {k: str(v) for k, v in latency.samples("torch", models).items()}
        child = [sys.executable, __file__, f"--requests={args.requests}"]
        done = subprocess.run(
            [*child, f"--in-process={json.dumps(torch_samples)}"],
            capture_output=True,
            text=True,
            check=True,
        )
        for line in done.stdout.splitlines():
            name, one, many = json.loads(line)
            table.append(("torch in-process", name, one, many, ""))
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

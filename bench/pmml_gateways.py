"""PMML scoring cost through pypmml's two JVM gateways: py4j (socket) and JPype (in-process).

pypmml 1.5.8 talks to pmml4s either through py4j (a separate ``java``
process, every call a round trip over a local socket) or through JPype (the
JVM inside the Python process, calls through JNI). The gateway is chosen
once per process, so each one is measured in its own child process, on the
iris sample (examples/samples/pmml.py), for 1 and 1,000 rows, three ways:

- ``ndarray``: ``Model.predict(ndarray)``, pypmml's own batch path (a pandas
  frame written as split JSON, one Java call, the answer read back by pandas);
- ``json``: one Java ``predict(String)`` call on split JSON written and read
  with orjson, what pmmlserver does;
- ``rows``: one Java call per row with a dict (how KServe's pmmlserver scores a batch).

    .venv/bin/python bench/pmml_gateways.py [--requests 300]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from runtime_latency import timed

ROOT = Path(__file__).resolve().parents[1]


def child(gateway: str, model_path: str, requests: int) -> None:
    """Measure one gateway in this process and print one line per case."""
    import orjson
    from pypmml import Model, PMMLContext
    from sklearn.datasets import load_iris

    started = time.perf_counter()
    PMMLContext.getOrCreate(gateway=gateway)
    model = Model.fromFile(model_path)
    startup = time.perf_counter() - started
    names = list(model.inputNames)
    X = load_iris().data
    print(f"{gateway}\tstartup+load\t-\t{startup * 1e3:.1f}")
    for rows in (1, 1000):
        data = X[np.arange(rows) % len(X)]
        n = requests if rows == 1 else max(20, requests // 5)

        def split_json(data=data) -> list:
            body = orjson.dumps(
                {"columns": names, "data": data}, option=orjson.OPT_SERIALIZE_NUMPY
            ).decode()
            return orjson.loads(model.call("predict", body))["data"]

        records = [dict(zip(names, row, strict=True)) for row in data.tolist()]
        cases = {
            "ndarray": lambda data=data: model.predict(data),
            "json": split_json,
            "rows": lambda records=records: [model.call("predict", r) for r in records],
        }
        for case, call in cases.items():
            runs = n if case != "rows" or rows == 1 else max(5, n // 10)
            print(f"{gateway}\t{case}\t{rows}\t{timed(call, runs) * 1e3:.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="1-row calls per case")
    parser.add_argument("--child", nargs=2, metavar=("GATEWAY", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.requests)
        return
    sys.path.insert(0, str(ROOT / "examples"))
    import sample_models

    with tempfile.TemporaryDirectory(prefix="pmml-gateways-") as scratch:
        model = sample_models.write("pmml", Path(scratch))["iris"] / "model.pmml"
        print("| gateway | call | rows | median ms |")
        print("| --- | --- | ---: | ---: |")
        for gateway in ("py4j", "jpype"):
            command = [sys.executable, __file__, "--requests", str(args.requests)]
            done = subprocess.run(
                [*command, "--child", gateway, str(model)],
                capture_output=True,
                text=True,
                check=True,
            )
            for line in done.stdout.splitlines():
                print("| " + " | ".join(line.split("\t")) + " |")


if __name__ == "__main__":
    main()

"""Write the model file, every request body the loads send, and the answers they must get.

Runs in our venv (scikit-learn, numpy, protobuf and ``modelserver`` are all
there). One model file is trained once and served by every server, so the
servers differ only in their serving stack. The expected predictions are
computed here from the same file, so the harness can check each server's
answers without numpy of its own.

    python bench/tools/payloads.py OUT_DIR

writes ``OUT_DIR/model/model.joblib`` and ``OUT_DIR/payloads/*`` (see
``PAYLOADS`` in bench/harness/loads.py for the names).

The MLflow comparison serves ``OUT_DIR/mlflow-model/`` (the iris
LogisticRegression as ``mlflow.sklearn.save_model`` writes it, fitted on
named columns: examples/samples/mlflow_models.py) and sends the same rows as
one FP64 input per column, the form an MLflow signature of named columns
asks for (``mlflow-v2-*.json``; expected answers ``mlflow-rows*``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.datasets import load_iris

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "examples"))

import sample_models  # noqa: E402  (the repo's own sample trainer; examples/ is not a package)
from modelserver import protos as pb  # noqa: E402

MODEL_NAME = "iris"
INPUT_NAME = "input-0"
BIG_ROWS = 1000


def rows_for(model: Any, n: int) -> np.ndarray:
    """``n`` iris rows (cycled, as float64) whose class is the same in float32 and float64.

    Servers decode FP32 JSON to float32 (v2) or to float64 (v1); keeping only
    rows both agree on makes one expected answer valid for every server.
    """
    x, _ = load_iris(return_X_y=True)
    agree = model.predict(x.astype(np.float32)) == model.predict(x)
    pool = x[agree]
    return np.resize(pool, (n, pool.shape[1]))


def v2_json(rows: np.ndarray) -> bytes:
    """A v2 REST JSON body with flat FP32 data (the form every server accepts)."""
    body = {
        "inputs": [
            {
                "name": INPUT_NAME,
                "shape": list(rows.shape),
                "datatype": "FP32",
                "data": [float(v) for v in rows.ravel()],
            }
        ]
    }
    return json.dumps(body, separators=(",", ":")).encode()


def v2_columns(rows: np.ndarray, names: list[str]) -> bytes:
    """A v2 REST JSON body with one FP64 input per named column."""
    body = {
        "inputs": [
            {"name": name, "shape": [len(rows)], "datatype": "FP64", "data": rows[:, i].tolist()}
            for i, name in enumerate(names)
        ]
    }
    return json.dumps(body, separators=(",", ":")).encode()


def write_mlflow(out: Path, one: np.ndarray, big: np.ndarray) -> dict[str, Any]:
    """The MLflow model, its column bodies and its answers (MLflow's pyfunc, run here)."""
    import mlflow.pyfunc
    import pandas as pd
    from samples import mlflow_models

    model_dir = out / "mlflow-model"
    if not (model_dir / "MLmodel").exists():
        mlflow_models.save_iris(model_dir)
    model = mlflow.pyfunc.load_model(str(model_dir))
    names = model.metadata.get_input_schema().input_names()
    for label, rows in (("1", one), ("1000", big)):
        (out / "payloads" / f"mlflow-v2-{label}.json").write_bytes(v2_columns(rows, names))
    return {
        "mlflow_model": str(model_dir),
        "mlflow-rows1": model.predict(pd.DataFrame(one, columns=names)).tolist(),
        "mlflow-rows1000": model.predict(pd.DataFrame(big, columns=names)).tolist(),
    }


def v2_binary(rows: np.ndarray) -> tuple[bytes, int]:
    """A binary-extension body (JSON header + little-endian FP32) asking for binary output."""
    data = rows.astype("<f4").tobytes()
    header = {
        "inputs": [
            {
                "name": INPUT_NAME,
                "shape": list(rows.shape),
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(data)},
            }
        ],
        "parameters": {"binary_data_output": True},
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    return head + data, len(head)


def v1_json(rows: np.ndarray) -> bytes:
    return json.dumps({"instances": rows.tolist()}, separators=(",", ":")).encode()


def grpc_frame(rows: np.ndarray) -> bytes:
    """A length-prefixed gRPC message (flag byte, 4-byte big-endian length, ModelInferRequest)."""
    request = pb.ModelInferRequest(model_name=MODEL_NAME)
    tensor = request.inputs.add(name=INPUT_NAME, datatype="FP32", shape=list(rows.shape))
    tensor.contents.fp32_contents.extend(float(v) for v in rows.ravel())
    message = request.SerializeToString()
    return b"\x00" + len(message).to_bytes(4, "big") + message


def write_all(out: Path) -> dict[str, Any]:
    model_dir = out / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    model_path = model_dir / "model.joblib"
    if not model_path.exists():
        joblib.dump(sample_models.iris_logistic_regression(), model_path)
    model = joblib.load(model_path)
    payloads = out / "payloads"
    payloads.mkdir(parents=True, exist_ok=True)
    one, big = rows_for(model, 1), rows_for(model, BIG_ROWS)
    binary, header_length = v2_binary(big)
    files = {
        "v2-1.json": v2_json(one),
        "v2-1000.json": v2_json(big),
        "v2-1000.bin": binary,
        "v1-1.json": v1_json(one),
        "grpc-1.frame": grpc_frame(one),
    }
    for name, data in files.items():
        (payloads / name).write_bytes(data)
    expected = {
        "model": str(model_path),
        "rows1": model.predict(one).tolist(),
        "rows1000": model.predict(big).tolist(),
        "binary_header_length": header_length,
        **write_mlflow(out, one, big),
    }
    (payloads / "expected.json").write_text(json.dumps(expected))
    return expected


#: --framework: the sample each framework's comparison serves (examples/sample_models.py).
FRAMEWORK_SAMPLES = {"xgboost": "iris-json", "lightgbm": "iris"}


def framework_predict(framework: str, model_dir: Path) -> Any:
    """The framework's own in-process prediction for FP32 rows (what every server must answer)."""
    if framework == "xgboost":
        import xgboost

        booster = xgboost.Booster(model_file=str(next(model_dir.glob("model.*"))))
        return lambda rows: booster.inplace_predict(rows.astype(np.float32))
    import lightgbm

    model = lightgbm.Booster(model_file=str(next(model_dir.glob("model.*"))))
    return lambda rows: model.predict(rows.astype(np.float32))


def write_framework(out: Path, framework: str) -> dict[str, Any]:
    """One framework's iris sample, its bodies (prefixed ``<framework>-``) and answers."""
    samples = out / "samples"
    model_dir = samples / framework / FRAMEWORK_SAMPLES[framework]
    if not model_dir.exists():
        sample_models.write(framework, samples, {FRAMEWORK_SAMPLES[framework]})
    predict = framework_predict(framework, model_dir)
    x, _ = load_iris(return_X_y=True)
    one, big = x[:1], np.resize(x, (BIG_ROWS, x.shape[1]))
    binary, header_length = v2_binary(big)
    payloads = out / "payloads"
    payloads.mkdir(parents=True, exist_ok=True)
    files = {
        "v2-1.json": v2_json(one),
        "v2-1000.json": v2_json(big),
        "v2-1000.bin": binary,
        "v1-1.json": v1_json(one),
        "grpc-1.frame": grpc_frame(one),
    }
    for name, data in files.items():
        (payloads / f"{framework}-{name}").write_bytes(data)
    return {
        f"{framework}_model": str(model_dir),
        f"{framework}-rows1": np.asarray(predict(one)).ravel().tolist(),
        f"{framework}-rows1000": np.asarray(predict(big)).ravel().tolist(),
        f"{framework}-binary_header_length": header_length,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument(
        "--framework",
        action="append",
        default=[],
        choices=sorted(FRAMEWORK_SAMPLES),
        help="also write this framework's model, bodies and answers (repeatable)",
    )
    args = parser.parse_args()
    expected = write_all(args.out)
    for framework in args.framework:
        expected.update(write_framework(args.out, framework))
    (args.out / "payloads" / "expected.json").write_text(json.dumps(expected))
    print(json.dumps({"model": expected["model"], "rows1": expected["rows1"]}))


if __name__ == "__main__":
    main()

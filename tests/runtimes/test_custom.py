"""A user's own Model class (examples/custom_model) served end to end by the core.

The artefact is written by the example's own trainer; the expected answers
come from the scikit-learn pipeline that trainer fits, computed here on the
same rows: the server's standardise -> softmax -> class-name steps must give
sklearn's probabilities and labels through v1, v2 JSON, v2 binary and gRPC,
for rows sent as one [N, 4] tensor or as one tensor per named feature.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from custom_model import train_iris
from custom_model.iris_custom import IrisModel
from modelserver.types import InferRequest, Tensor
from serverproc import ServerProcess, run_to_exit
from tritonclient.utils import InferenceServerException

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
#: The server process imports the class by name: examples/ on its path.
ENV = {"PYTHONPATH": str(EXAMPLES)}
FEATURES = train_iris.FEATURE_NAMES
TRANSPORTS = ["json", "binary", "grpc"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_iris.write(tmp_path_factory.mktemp("custom"))["iris"]


@pytest.fixture(scope="module")
def reference() -> Any:
    """The fitted sklearn pipeline the artefact describes (the trainer is deterministic)."""
    return train_iris.fit()


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    """Every 10th iris row and as many nearby rows the model never saw."""
    from sklearn.datasets import load_iris

    X = load_iris().data[::10]
    noise = np.random.default_rng(7).normal(0.0, 0.3, X.shape)
    return np.vstack([X, X + noise])


@pytest.fixture(scope="module")
def server(model_dir: Path) -> Iterator[ServerProcess]:
    """``python -m modelserver --model_class custom_model.iris_custom:IrisModel``."""
    proc = ServerProcess(
        "modelserver",
        [
            "--model_class=custom_model.iris_custom:IrisModel",
            "--model_name=iris",
            f"--model_dir={model_dir}",
        ],
        env=ENV,
    )
    with proc:
        yield proc


def expected(reference: Any, rows: np.ndarray) -> dict[str, np.ndarray]:
    names = np.asarray(train_iris.class_names(), dtype=object)
    return {
        "class": names[reference.predict(rows)],
        "probabilities": reference.predict_proba(rows),
    }


def assert_matches(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert got.keys() == want.keys()
    for name, value in got.items():
        if name == "class":
            text = [v.decode() if isinstance(v, bytes) else str(v) for v in value.reshape(-1)]
            assert text == want[name].tolist()
        else:
            np.testing.assert_allclose(value, want[name], rtol=1e-9, atol=1e-12)


def infer(
    server: ServerProcess,
    transport: str,
    inputs: dict[str, np.ndarray],
    outputs: list[str] | None = None,
) -> dict[str, np.ndarray]:
    """One v2 request through tritonclient: {input name: array} -> {output name: array}."""
    names = outputs or ["class", "probabilities"]
    if transport == "grpc":
        client: Any = grpcclient.InferenceServerClient(server.grpc_address)
        module: Any = grpcclient
        tensors = [module.InferInput(n, list(a.shape), _datatype(a)) for n, a in inputs.items()]
        for tensor, data in zip(tensors, inputs.values(), strict=True):
            tensor.set_data_from_numpy(data)
        wanted = [module.InferRequestedOutput(n) for n in outputs] if outputs else None
    else:
        binary = transport == "binary"
        client = httpclient.InferenceServerClient(server.http_address)
        module = httpclient
        tensors = [module.InferInput(n, list(a.shape), _datatype(a)) for n, a in inputs.items()]
        for tensor, data in zip(tensors, inputs.values(), strict=True):
            tensor.set_data_from_numpy(data, binary_data=binary)
        wanted = [module.InferRequestedOutput(n, binary_data=binary) for n in names]
    result = client.infer("iris", tensors, outputs=wanted)
    response = result.get_response(as_json=True) if transport == "grpc" else result.get_response()
    return {o["name"]: result.as_numpy(o["name"]) for o in response["outputs"]}


def _datatype(data: np.ndarray) -> str:
    return {"f": f"FP{data.dtype.itemsize * 8}", "i": "INT64", "b": "BOOL"}[data.dtype.kind]


def _columns(rows: np.ndarray) -> dict[str, np.ndarray]:
    """One tensor per feature, in a shuffled order, with mixed datatypes and shapes."""
    return {
        "petal_width": rows[:, 3:4].copy(),  # [N, 1]
        "sepal_length": rows[:, 0].astype(np.float32),
        "petal_length": rows[:, 2].copy(),
        "sepal_width": rows[:, 1].copy(),
    }


def _as_sent(columns: dict[str, np.ndarray]) -> np.ndarray:
    """The rows the model receives from ``columns``: float64, in feature order."""
    return np.column_stack([columns[n].reshape(-1).astype(np.float64) for n in FEATURES])


# -- metadata ----------------------------------------------------------------


def test_metadata_describes_inputs_outputs_and_names(server: ServerProcess) -> None:
    meta = httpx.get(f"{server.http_url}/v2/models/iris").json()
    assert meta["platform"] == "custom"
    assert meta["inputs"] == [{"name": "features", "datatype": "FP64", "shape": [-1, 4]}]
    assert meta["outputs"] == [
        {"name": "class", "datatype": "BYTES", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP64", "shape": [-1, 3]},
    ]
    params = meta["parameters"]
    assert params["feature_names"] == FEATURES
    assert params["class_names"] == train_iris.class_names()
    assert params["artefact"] == "model.json"
    over_grpc = grpcclient.InferenceServerClient(server.grpc_address).get_model_metadata(
        "iris", as_json=True
    )
    assert [(o["name"], o["datatype"]) for o in over_grpc["outputs"]] == [
        ("class", "BYTES"),
        ("probabilities", "FP64"),
    ]


# -- the three steps, through every protocol -----------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_rows_match_sklearn(
    server: ServerProcess, transport: str, reference: Any, rows: np.ndarray
) -> None:
    got = infer(server, transport, {"features": rows})
    assert_matches(got, expected(reference, rows))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_named_feature_inputs_match_sklearn(
    server: ServerProcess, transport: str, reference: Any, rows: np.ndarray
) -> None:
    columns = _columns(rows)
    got = infer(server, transport, columns)
    assert_matches(got, expected(reference, _as_sent(columns)))


def test_single_row_without_batch_dimension(server: ServerProcess, reference: Any) -> None:
    row = np.array([6.1, 2.8, 4.7, 1.2])
    got = infer(server, "json", {"features": row})
    assert_matches(got, expected(reference, row.reshape(1, -1)))


def test_v1_rows_named_rows_and_columns(
    server: ServerProcess, reference: Any, rows: np.ndarray
) -> None:
    want = expected(reference, rows)
    url = f"{server.http_url}/v1/models/iris:predict"
    named = [dict(zip(FEATURES, row, strict=True)) for row in rows.tolist()]
    columnar = {name: rows[:, i].tolist() for i, name in enumerate(FEATURES)}
    for body in ({"instances": rows.tolist()}, {"instances": named}, {"inputs": columnar}):
        reply = httpx.post(url, json=body)
        assert reply.status_code == 200, reply.text
        predictions = reply.json()["predictions"]
        got = {
            "class": np.asarray([p["class"] for p in predictions], dtype=object),
            "probabilities": np.asarray([p["probabilities"] for p in predictions]),
        }
        assert_matches(got, want)


def test_stages_match_sklearn_steps(model_dir: Path, reference: Any, rows: np.ndarray) -> None:
    """Each step on its own, in process: preprocess = scaler, predict = softmax, postprocess."""
    model = IrisModel("iris", model_dir)
    model.load()
    request = InferRequest("iris", [Tensor("features", "FP64", rows.shape, rows)])
    scaled = model.preprocess(request)
    np.testing.assert_allclose(scaled, reference.named_steps["scale"].transform(rows), rtol=1e-12)
    probabilities = model.predict(scaled)
    softmax = reference.named_steps["softmax"]
    np.testing.assert_allclose(probabilities, softmax.predict_proba(scaled), rtol=1e-9)
    outputs = model.postprocess(probabilities)
    assert outputs["class"].tolist() == expected(reference, rows)["class"].tolist()
    assert outputs["probabilities"] is probabilities


# -- output selection --------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_output_selection(
    server: ServerProcess, transport: str, reference: Any, rows: np.ndarray
) -> None:
    want = expected(reference, rows)
    for name in ("class", "probabilities"):
        got = infer(server, transport, {"features": rows}, outputs=[name])
        assert_matches(got, {name: want[name]})


def test_output_selection_v1_and_unknown_output(server: ServerProcess, rows: np.ndarray) -> None:
    url = f"{server.http_url}/v1/models/iris:predict"
    body = {"instances": rows[:2].tolist(), "parameters": {"outputs": "class"}}
    reply = httpx.post(url, json=body)
    assert reply.status_code == 200, reply.text
    assert all(isinstance(p, str) for p in reply.json()["predictions"])

    v2 = {
        "inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}],
        "outputs": [{"name": "predict"}],
    }
    reply = httpx.post(f"{server.http_url}/v2/models/iris/infer", json=v2)
    assert reply.status_code == 400, reply.text
    assert "available: class, probabilities" in reply.json()["error"]


# -- bad input: 400 with the reason, and the server keeps serving ----------------------


def _tensor(name: str, datatype: str, shape: list[int], data: list[Any]) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


BAD_REQUESTS = {
    "width": ([_tensor("features", "FP64", [1, 3], [1.0, 2.0, 3.0])], "4 features per row"),
    "rank": ([_tensor("features", "FP64", [1, 2, 2], [1.0, 2.0, 3.0, 4.0])], "shape [1, 2, 2]"),
    "bytes": ([_tensor("features", "BYTES", [1, 4], ["a", "b", "c", "d"])], "got BYTES"),
    "bool": ([_tensor("features", "BOOL", [1, 4], [True, False, True, False])], "got BOOL"),
    "missing feature": (
        [_tensor(n, "FP64", [1], [1.0]) for n in FEATURES[:3]],
        "missing: petal_width",
    ),
    "unknown feature": (
        [_tensor(n, "FP64", [1], [1.0]) for n in [*FEATURES[:3], "petal_widht"]],
        "unknown: petal_widht",
    ),
    "ragged features": (
        [_tensor(n, "FP64", [1 + i % 2], [1.0] * (1 + i % 2)) for i, n in enumerate(FEATURES)],
        "different row counts",
    ),
    "feature as matrix": (
        [_tensor(n, "FP64", [1, 2], [1.0, 2.0]) for n in FEATURES],
        "each one is a column",
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS), ids=list(BAD_REQUESTS))
def test_bad_input_is_400_with_reason(server: ServerProcess, rows: np.ndarray, case: str) -> None:
    inputs, reason = BAD_REQUESTS[case]
    reply = httpx.post(f"{server.http_url}/v2/models/iris/infer", json={"inputs": inputs})
    assert reply.status_code == 400, reply.text
    assert reason in reply.json()["error"]
    assert infer(server, "json", {"features": rows[:1]})["class"].shape == (1,)


def test_non_finite_values_are_400_over_binary_and_grpc(server: ServerProcess) -> None:
    bad = np.array([[5.1, np.nan, 1.4, 0.2]])
    with pytest.raises(InferenceServerException) as info:
        infer(server, "binary", {"features": bad})
    assert "400" in str(info.value.status()) and "finite" in str(info.value)
    with pytest.raises(InferenceServerException) as info:
        infer(server, "grpc", {"features": np.array([[5.1, np.inf, 1.4, 0.2]])})
    assert info.value.status() == str(grpc.StatusCode.INVALID_ARGUMENT)
    assert "finite" in str(info.value)


# -- the serve.py-style entry (cli.run(IrisModel)), with adaptive batching ------------


def test_run_entry_point_with_batching(model_dir: Path, reference: Any, rows: np.ndarray) -> None:
    """``python -m custom_model.iris_custom`` is a whole server; batching keeps answers apart."""
    proc = ServerProcess(
        "custom_model.iris_custom",
        ["--model_name=iris", f"--model_dir={model_dir}", "--max_batch_size=64"],
        env=ENV,
    )
    parts = [rows[i : i + 1 + i % 3] for i in range(len(rows))]
    with proc:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda part: infer(proc, "binary", {"features": part}), parts))
        metrics = httpx.get(f"{proc.http_url}/metrics").text
    for part, got in zip(parts, answers, strict=True):
        assert_matches(got, expected(reference, part))
    batches = re.search(r'^modelserver_batch_requests_count\{model="iris"\} (\S+)$', metrics, re.M)
    assert batches is not None and float(batches.group(1)) > 0, metrics


# -- startup errors: clear message, no traceback, exit 2 --------------------------------


def _startup(model_dir: Path) -> str:
    """Start the README's flat form: this folder on PYTHONPATH, ``iris_custom:IrisModel``."""
    done = run_to_exit(
        "modelserver",
        ["--model_class=iris_custom:IrisModel", "--model_name=iris", f"--model_dir={model_dir}"],
        env={"PYTHONPATH": str(EXAMPLES / "custom_model")},
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output, output
    return output


def test_missing_model_file_is_a_clear_startup_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("the artefact is elsewhere\n")
    output = _startup(tmp_path)
    assert "No model file (.json)" in output and "notes.txt" in output, output


def test_malformed_artefact_names_file_and_field(model_dir: Path, tmp_path: Path) -> None:
    text = (model_dir / "model.json").read_text().replace('"bias"', '"bias_"')
    (tmp_path / "model.json").write_text(text)
    output = _startup(tmp_path)
    assert "model.json is missing bias" in output, output

"""mlflowserver through real servers, checked against MLflow answering in this process.

One server serves every MLflow sample (one sub-folder each): scikit-learn
saved with skops and as a pickle, an XGBoost Booster, a LightGBM classifier,
a ColumnTransformer pipeline over number and string columns, a PythonModel
with params answering a DataFrame, and a PythonModel with type hints. Every
answer over v2 (JSON, binary, gRPC) and v1 is compared with
``mlflow.pyfunc.load_model(...).predict`` here on the same rows and params.

MLflow's own scoring protocol is checked against MLflow's scoring server
code run here on the same body (``mlflow.pyfunc.scoring_server.invocations``,
what ``mlflow models serve`` answers), for each input format and CSV, on
servers of one model each (``/invocations`` names no model).

Then what MLflow users most often hit: the recorded environment differing
from the server's (logged once, in metadata, refused with
``--strict_requirements``), a flavor whose package is missing, a
``models:/`` URI, and no network use at all.
"""

from __future__ import annotations

import functools
import math
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import orjson
import pandas as pd
import protocol_clients as clients
import pytest
from samples import mlflow_models, tables
from serverproc import ServerProcess, run_to_exit
from tritonclient.utils import InferenceServerException

pytestmark = pytest.mark.e2e

#: The samples taking the four iris columns, and the one adding a string column.
IRIS = ["iris", "iris-pickle", "iris-xgboost", "iris-lightgbm", "iris-params"]
MIXED = "iris-mixed"
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def samples(framework_samples) -> dict[str, Path]:
    return framework_samples("mlflow")


@pytest.fixture(scope="module")
def server(samples: dict[str, Path]) -> Iterator[ServerProcess]:
    root = samples["iris"].parent
    args = ["--model_name=unused", f"--model_dir={root}", "--nthread=1"]
    with ServerProcess("mlflowserver", args) as proc:
        yield proc


@pytest.fixture(scope="module")
def single(samples: dict[str, Path]) -> Iterator[Callable[[str], ServerProcess]]:
    """name -> a server of that sample alone (MLflow's scoring protocol scores the only model)."""
    started: dict[str, ServerProcess] = {}

    def get(name: str) -> ServerProcess:
        if name not in started:
            proc = ServerProcess("mlflowserver", ["--model_name=m", f"--model_dir={samples[name]}"])
            started[name] = proc.start()
        return started[name]

    yield get
    for proc in started.values():
        proc.stop()


@pytest.fixture(scope="module")
def pyfunc(samples: dict[str, Path]) -> Callable[[str], Any]:
    """name -> the sample loaded by MLflow here, as its user would load it."""
    import mlflow.pyfunc

    return functools.cache(lambda name: mlflow.pyfunc.load_model(str(samples[name])))


def _iris(n: int | None = None) -> pd.DataFrame:
    """``n`` iris rows from every class (a stride of 13 through the 150 visits each row once)."""
    frame = tables.iris()[0]
    rows = np.arange(len(frame) if n is None else n) * 13 % len(frame)
    return frame.iloc[rows].reset_index(drop=True)


def _mixed(n: int = 12) -> pd.DataFrame:
    frame = mlflow_models.iris_mixed_frame()[0]
    return frame.iloc[np.arange(n) * 11 % len(frame)].reset_index(drop=True)


def _frame(name: str, n: int = 12) -> pd.DataFrame:
    return _mixed(n) if name == MIXED else _iris(n)


def _columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """One named tensor per column: numbers as FP64, strings as BYTES."""
    return {
        str(c): frame[c].to_numpy(dtype=np.float64 if frame[c].dtype.kind == "f" else object)
        for c in frame.columns
    }


def _want(result: Any) -> dict[str, np.ndarray]:
    """MLflow's result as outputs: a DataFrame's columns, else the one output ``predict``."""
    if isinstance(result, pd.DataFrame):
        return {str(c): result[c].to_numpy() for c in result.columns}
    return {"predict": np.asarray(result)}


def _same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert list(got) == list(want)
    for name, value in want.items():
        if value.dtype.kind in "OUS":
            plain = [v.decode() if isinstance(v, bytes) else v for v in got[name].tolist()]
            assert plain == value.tolist(), name
        else:
            clients.assert_close(got[name], value)


# -- every flavor over v2 and v1 --------------------------------------------------------------


@pytest.mark.parametrize("protocol", clients.PROTOCOLS)
@pytest.mark.parametrize("name", [*IRIS, MIXED])
def test_named_columns_are_what_mlflow_predicts(server, pyfunc, name: str, protocol: str) -> None:
    frame = _frame(name)
    columns = _columns(frame)
    shuffled = dict(reversed(list(columns.items())))  # any order: columns go by name
    got = clients.infer(server, name, shuffled, protocol)
    _same(got, _want(pyfunc(name).predict(frame)))


@pytest.mark.parametrize("name", IRIS)
def test_one_tensor_of_rows_is_the_columns_in_signature_order(server, pyfunc, name: str) -> None:
    frame = _iris(150)
    got = clients.infer(server, name, {"input-0": frame.to_numpy()}, "binary")
    _same(got, _want(pyfunc(name).predict(frame)))


@pytest.mark.parametrize("name", [*IRIS, MIXED])
def test_v1_rows_and_objects(server, pyfunc, name: str) -> None:
    frame = _frame(name)
    want = _want(pyfunc(name).predict(frame))
    records = frame.to_dict(orient="records")
    bodies = [{"instances": records}]
    if name != MIXED:
        bodies.append({"instances": frame.to_numpy().tolist()})
    for body in bodies:
        reply = clients.v1_predict(server, name, body)
        assert reply.status_code == 200, reply.text
        predictions = reply.json()["predictions"]
        if list(want) == ["predict"]:
            clients.assert_close(np.asarray(predictions), want["predict"])
        else:  # a DataFrame: one object per row
            assert pd.DataFrame(predictions).to_dict("list") == pyfunc(name).predict(frame).to_dict(
                "list"
            )


def test_the_type_hinted_python_model(server, pyfunc) -> None:
    texts = ["one", "two words", "a text of five words", ""]
    want = np.asarray(pyfunc("word-lengths").predict(texts))
    for protocol in clients.PROTOCOLS:
        got = clients.infer(
            server, "word-lengths", {"input-0": np.array(texts, dtype=object)}, protocol
        )
        _same(got, {"predict": want})
    reply = clients.v1_predict(server, "word-lengths", {"instances": texts})
    assert reply.json()["predictions"] == want.tolist()


def test_a_thousand_rows(server, pyfunc) -> None:
    frame = _iris(1000)
    for name in ("iris", "iris-xgboost"):
        got = clients.infer(server, name, _columns(frame), "binary")
        _same(got, _want(pyfunc(name).predict(frame)))


# -- metadata from the signature ----------------------------------------------------------------


def test_metadata_comes_from_the_signature(server, samples) -> None:
    iris = clients.v2_metadata(server, "iris")
    assert iris["platform"] == "mlflow"
    assert iris["inputs"] == [
        {"name": n, "datatype": "FP64", "shape": [-1]} for n in tables.iris()[0].columns
    ]
    assert iris["outputs"] == [{"name": "predict", "datatype": "INT64", "shape": [-1]}]
    params = iris["parameters"]
    assert params["flavors"] == ["sklearn"] and params["loader_module"] == "mlflow.sklearn"
    assert params["signature"]["inputs"][0] == {
        "type": "double",
        "name": "sepal_length",
        "required": True,
    }
    assert params["requirement_mismatches"] == []
    assert params["nthread"] == 1
    # Each flavor, each serialization: the files MLflow wrote.
    assert (samples["iris"] / "model.skops").is_file()
    assert (samples["iris-pickle"] / "model.pkl").is_file()
    assert clients.v2_metadata(server, "iris-xgboost")["outputs"] == [
        {"name": "predict", "datatype": "FP32", "shape": [-1, 3]}
    ]
    assert clients.v2_metadata(server, "iris-lightgbm")["parameters"]["flavors"] == ["lightgbm"]
    mixed = clients.v2_metadata(server, MIXED)["inputs"]
    assert mixed[-1] == {"name": "size", "datatype": "BYTES", "shape": [-1]}
    bands = clients.v2_metadata(server, "iris-params")
    assert bands["outputs"] == [
        {"name": "score", "datatype": "FP64", "shape": [-1]},
        {"name": "band", "datatype": "BYTES", "shape": [-1]},
    ]
    assert [p["name"] for p in bands["parameters"]["signature"]["params"]] == ["scale", "threshold"]
    words = clients.v2_metadata(server, "word-lengths")
    assert words["inputs"] == [{"name": "input-0", "datatype": "BYTES", "shape": [-1]}]
    assert words["outputs"] == [{"name": "predict", "datatype": "INT64", "shape": [-1]}]


# -- params --------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["v2", "grpc", "v1"])
def test_params_come_from_the_request_parameters(server, pyfunc, protocol: str) -> None:
    frame = _iris(12)
    params = {"scale": 2.0, "threshold": -1.5}
    want = pyfunc("iris-params").predict(frame, params=params)
    assert set(want["band"]) == {"low", "high"}  # the params change the answer
    if protocol == "v1":
        body = {"instances": frame.to_numpy().tolist(), "parameters": params}
        reply = clients.v1_predict(server, "iris-params", body)
        assert reply.status_code == 200, reply.text
        assert pd.DataFrame(reply.json()["predictions"]).to_dict("list") == want.to_dict("list")
        return
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    module: Any = grpcclient if protocol == "grpc" else httpclient
    address = server.grpc_address if protocol == "grpc" else server.http_address
    tensor = module.InferInput("input-0", [12, 4], "FP64")
    tensor.set_data_from_numpy(frame.to_numpy())
    result = module.InferenceServerClient(address).infer("iris-params", [tensor], parameters=params)
    clients.assert_close(result.as_numpy("score"), want["score"].to_numpy())
    band = [b.decode() if isinstance(b, bytes) else b for b in result.as_numpy("band").tolist()]
    assert band == want["band"].tolist()


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"scale": "large"}, "'scale': double"),
        ({"scale": [1.0, 2.0]}, "must be a scalar"),
        ({"scael": 2.0}, "no param 'scael'; its signature's params: 'scale': double"),
    ],
)
def test_bad_params_are_400_naming_the_param(server, params, reason: str) -> None:
    row = {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}
    clients.assert_rejected(server, "iris-params", {"inputs": [row], "parameters": params}, reason)


def test_params_for_a_model_without_params_are_400(server) -> None:
    row = {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}
    body = {"inputs": [row], "parameters": {"scale": 2.0}}
    clients.assert_rejected(server, "iris", body, "its signature's params: none")


# -- bad input: 400 naming the column and its type, then the server still answers -------------


def _named(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {
            "name": str(c),
            "shape": [len(frame)],
            "datatype": "BYTES" if frame[c].dtype.kind not in "biuf" else "FP64",
            "data": frame[c].tolist(),
        }
        for c in frame.columns
    ]


BAD = [
    pytest.param(
        MIXED,
        _named(_mixed(2).drop(columns=["size"])),
        "missing input 'size' (string)",
        id="missing",
    ),
    pytest.param(
        "iris",
        _named(_iris(2).assign(petal_colour=1.0)),
        "no input 'petal_colour'; its signature's columns: sepal_length (double)",
        id="extra",
    ),
    pytest.param(
        MIXED,
        _named(_mixed(2).astype({"sepal_width": object}).assign(sepal_width=["wide", "3.0"])),
        "column sepal_width. Can not safely convert",
        id="uncastable",
    ),
    pytest.param(
        "iris",
        [{"name": "input-0", "shape": [1, 3], "datatype": "FP64", "data": [5.1, 3.5, 1.4]}],
        "rows of 4 columns (sepal_length (double), sepal_width (double)",
        id="width",
    ),
    pytest.param(
        "word-lengths",
        [{"name": "input-0", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]}],
        "word-lengths' rejected the input",
        id="numbers for text",
    ),
]


@pytest.mark.parametrize(("name", "inputs", "reason"), BAD)
def test_bad_input_is_400_then_the_server_still_answers(server, pyfunc, name, inputs, reason):
    clients.assert_rejected(server, name, {"inputs": inputs}, reason)
    frame = _mixed(3)
    _same(
        clients.infer(server, MIXED, _columns(frame), "json"), _want(pyfunc(MIXED).predict(frame))
    )


def test_bad_input_over_grpc_is_invalid_argument(server) -> None:
    with pytest.raises(InferenceServerException) as info:
        clients.infer(server, MIXED, _columns(_mixed(2).drop(columns=["size"])), "grpc")
    assert info.value.status() == str(grpc.StatusCode.INVALID_ARGUMENT)
    assert "'size' (string)" in info.value.message()


# -- MLflow's scoring protocol -----------------------------------------------------------------


def _mlflow_answer(model: Any, body: bytes, content_type: str) -> Any:
    """What MLflow's scoring server (``mlflow models serve``) answers, run here."""
    from mlflow.pyfunc.scoring_server import invocations

    answer = invocations(body, content_type, model, model.metadata.get_input_schema())
    assert answer.status == 200, answer.response
    return orjson.loads(answer.response)


def _close(got: Any, want: Any) -> None:
    """Equal JSON, numbers to float32 precision (XGBoost's probabilities)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), (got, want)
        for key in want:
            _close(got[key], want[key])
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), (got, want)
        for a, b in zip(got, want, strict=True):
            _close(a, b)
    elif isinstance(want, float):
        assert math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-7), (got, want)
    else:
        assert got == want


def _bodies(frame: pd.DataFrame, params: dict[str, Any] | None) -> dict[str, tuple[bytes, str]]:
    """The same rows in each form MLflow's scoring server reads."""
    extra = {"params": params} if params else {}
    forms = {
        "dataframe_split": {"dataframe_split": orjson.loads(frame.to_json(orient="split"))},
        "dataframe_records": {"dataframe_records": frame.to_dict(orient="records")},
        "instances": {"instances": frame.to_dict(orient="records")},
        "inputs": {"inputs": frame.to_dict(orient="list")},
    }
    found = {k: (orjson.dumps({**v, **extra}), "application/json") for k, v in forms.items()}
    if not params:
        found["csv"] = (frame.to_csv(index=False).encode(), "text/csv")
    return found


@pytest.mark.parametrize(
    ("name", "params"),
    [
        (MIXED, None),
        ("iris-xgboost", None),
        ("iris-params", None),
        ("iris-params", mlflow_models.PARAMS | {"scale": 3.0}),
    ],
    ids=["mixed", "xgboost", "dataframe", "dataframe-params"],
)
def test_invocations_answer_as_mlflow_models_serve(single, pyfunc, name: str, params) -> None:
    server = single(name)
    frame = _frame(name, 6)
    for form, (body, content_type) in _bodies(frame, params).items():
        reply = httpx.post(
            f"{server.http_url}/invocations", content=body, headers={"Content-Type": content_type}
        )
        assert reply.status_code == 200, (form, reply.text)
        _close(reply.json(), _mlflow_answer(pyfunc(name), body, content_type))


def test_invocations_with_type_hints_take_inputs(single, pyfunc) -> None:
    server = single("word-lengths")
    body = orjson.dumps({"inputs": ["one", "two words", "and three words"]})
    reply = httpx.post(f"{server.http_url}/invocations", content=body, headers=JSON)
    assert reply.status_code == 200, reply.text
    _close(reply.json(), _mlflow_answer(pyfunc("word-lengths"), body, "application/json"))


@pytest.mark.parametrize(
    ("body", "content_type", "status", "reason"),
    [
        (b"{not json", "application/json", 400, "Malformed JSON"),
        (b'{"data": [[1]]}', "application/json", 400, "exactly one of the fields"),
        (
            b'{"dataframe_records": [{"sepal_length": 5.1}]}',
            "application/json",
            400,
            "missing input",
        ),
        (b"sepal_length\n5.1\n", "text/plain", 415, "application/json or text/csv"),
        (
            b'{"inputs": [[1, 2, 3, 4]], "params": {"scale": "x"}}',
            "application/json",
            400,
            "'scale'",
        ),
    ],
)
def test_invocations_errors_in_mlflows_shape(single, body, content_type, status, reason) -> None:
    server = single("iris-params")
    reply = httpx.post(
        f"{server.http_url}/invocations", content=body, headers={"Content-Type": content_type}
    )
    assert reply.status_code == status, reply.text
    error = reply.json()
    assert set(error) == {"error_code", "message"}
    assert error["error_code"] == "BAD_REQUEST"
    assert reason in error["message"]
    # The v2 routes of the same server keep their own error shape.
    assert set(clients.v2_post(server, "m", {"inputs": []}).json()) == {"error"}


def test_ping_and_health(single) -> None:
    server = single("iris-params")
    for path in ("/ping", "/health"):
        reply = httpx.get(f"{server.http_url}{path}")
        assert (reply.status_code, reply.text) == (200, "\n")


def test_invocations_needs_exactly_one_model(server) -> None:
    body = {"inputs": [[5.1, 3.5, 1.4, 0.2]]}
    reply = httpx.post(f"{server.http_url}/invocations", json=body)
    assert reply.status_code == 400
    assert reply.json()["error_code"] == "BAD_REQUEST"
    assert "serves 7" in reply.json()["message"] and "iris-params" in reply.json()["message"]


# -- environment drift, missing flavors, URIs, the network ------------------------------------


@pytest.fixture(scope="module")
def drifted(tmp_path_factory) -> Path:
    """The iris estimator as a model logged elsewhere: older scikit-learn, Python 3.9."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    estimator, X, _ = mlflow_models.sklearn_iris()
    directory = tmp_path_factory.mktemp("drift") / "iris"
    mlflow.sklearn.save_model(
        estimator,
        str(directory),
        signature=infer_signature(X, estimator.predict(X)),
        pip_requirements=["scikit-learn==1.5.2", "skops==0.16.0", "mlflow==3.18.0"],
    )
    env = directory / "python_env.yaml"
    lines = env.read_text().splitlines()
    env.write_text(
        "\n".join("python: 3.9.18" if line.startswith("python:") else line for line in lines)
    )
    return directory


def test_drift_is_logged_once_and_reported(drifted: Path, pyfunc) -> None:
    import sklearn

    proc = ServerProcess("mlflowserver", ["--model_name=old", f"--model_dir={drifted}"])
    with proc:
        meta = clients.v2_metadata(proc, "old")
        frame = _iris(5)
        got = clients.infer(proc, "old", _columns(frame), "json")
        clients.assert_close(got["predict"], pyfunc("iris").predict(frame))
        log = proc.output()
    assert meta["parameters"]["requirement_mismatches"] == [
        {"package": "python", "recorded": "3.9.18", "installed": meta_python()},
        {
            "package": "scikit-learn",
            "recorded": "scikit-learn==1.5.2",
            "installed": sklearn.__version__,
        },
    ]
    line = f"scikit-learn: the model recorded scikit-learn==1.5.2, installed {sklearn.__version__}"
    assert log.count(line) == 1, log
    assert log.count("python: the model recorded 3.9.18") == 1, log


def meta_python() -> str:
    import platform

    return platform.python_version()


def test_strict_requirements_refuses_to_start(drifted: Path) -> None:
    done = run_to_exit("mlflowserver", [f"--model_dir={drifted}", "--strict_requirements"])
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "--strict_requirements" in output and "scikit-learn==1.5.2" in output
    assert "Traceback" not in output


#: The MLmodel ``mlflow.catboost.save_model`` writes (catboost is not in this environment).
CATBOOST_MLMODEL = """\
flavors:
  catboost:
    catboost_version: 1.2.8
    code: null
    data: model.cb
    model_type: CatBoostClassifier
    save_format: cbm
  python_function:
    data: model.cb
    env:
      conda: conda.yaml
      virtualenv: python_env.yaml
    loader_module: mlflow.catboost
    python_version: 3.11.7
mlflow_version: 3.18.0
model_uuid: 5e0c4d1a6f2b4b5f9a3c2d1e0f9a8b7c
"""


def test_a_missing_flavor_package_is_named(tmp_path: Path) -> None:
    directory = tmp_path / "catboost"
    directory.mkdir()
    (directory / "MLmodel").write_text(CATBOOST_MLMODEL)
    (directory / "model.cb").write_bytes(b"CBM1")
    (directory / "requirements.txt").write_text("mlflow==3.18.0\ncatboost==1.2.8\n")
    done = run_to_exit("mlflowserver", [f"--model_dir={directory}"])
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "needs the Python module 'catboost', which is not installed" in output
    assert "catboost==1.2.8" in output and "Traceback" not in output


@pytest.mark.parametrize("uri", ["models:/iris/1", "runs:/0a1b2c/model", "models:/iris@champion"])
def test_mlflow_uris_are_a_clear_startup_error(uri: str) -> None:
    done = run_to_exit("mlflowserver", [f"--model_dir={uri}"])
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "is a URI, not a directory" in output and "mlflow artifacts download" in output
    assert "Traceback" not in output


def test_nothing_reaches_a_tracking_server(samples) -> None:
    """MLFLOW_TRACKING_URI points at a listener here: loading and scoring never connect to it."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    accepted: list[Any] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(listener.accept())
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    env = {
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}",
        "MLFLOW_REGISTRY_URI": f"http://127.0.0.1:{port}",
    }
    try:
        with ServerProcess(
            "mlflowserver", ["--model_name=m", f"--model_dir={samples['iris-params']}"], env=env
        ) as proc:
            body = orjson.dumps({"dataframe_records": _iris(3).to_dict(orient="records")})
            assert (
                httpx.post(f"{proc.http_url}/invocations", content=body, headers=JSON).status_code
                == 200
            )
            assert clients.infer(proc, "m", {"input-0": _iris(3).to_numpy()}, "grpc")
    finally:
        stop.set()
        thread.join()
        listener.close()
    assert accepted == []

"""pmmlserver through a real server, checked against pypmml scoring the same rows here.

One server serves the four PMML samples (one sub-folder each, four models
in one process and one JVM): sklearn2pmml's iris LogisticRegression (four
double fields, a string target) and diabetes LinearRegression (one field),
the hand-written fruit tree (a string, a double and an integer field) and
the hand-written iris tree shaped like KServe's pmmlserver example. Every
answer is compared with pypmml's own prediction in this process, made
through pypmml's default py4j gateway while the server runs pmml4s through
JPype, over v2 JSON, v2 binary, gRPC and v1. Outputs are named as KServe's
pmmlserver names them: the target (pypmml's ``predicted_<target>``) and the
fields the file's <Output> declares, or pmml4s's extras when it has none.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pandas as pd
import pytest
from protocol_clients import PROTOCOLS, infer, v1_predict, v2_post
from pypmml import Model as PMML
from samples import tables
from serverproc import ServerProcess, run_to_exit
from tritonclient.utils import InferenceServerException

pytestmark = pytest.mark.e2e

FRUIT = pd.DataFrame(
    {
        "color": ["yellow", "red", "green", "red", "yellow", "green"],
        "weight": [150.0, 5.0, 5.5, 120.0, 3.0, 300.0],
        "seeds": [0, 3, 10, 4, 2, 0],
    }
)


#: Each sample's outputs, as KServe's pmmlserver answers them, in order.
OUTPUTS = {
    "iris": ["species", "probability(setosa)", "probability(versicolor)", "probability(virginica)"],
    "diabetes": ["progression"],
    "fruit": [
        "fruit",
        "predicted_fruit",
        "probability(apple)",
        "probability(banana)",
        "probability(grape)",
        "node_id",
    ],
    "iris-tree": [
        "Species",
        "Probability_setosa",
        "Probability_versicolor",
        "Probability_virginica",
        "Node_Id",
    ],
}


def _want(pmml, name: str, rows: pd.DataFrame) -> pd.DataFrame:
    """pypmml's answer under the served names: a target is pypmml's predicted value."""
    frame = pmml(name).predict(rows)
    targets = pmml(name).targetNames
    return pd.DataFrame(
        {
            out: frame[f"predicted_{out}" if out in targets else out].to_numpy()
            for out in OUTPUTS[name]
        }
    )


@pytest.fixture(scope="module")
def samples(framework_samples) -> dict[str, Path]:
    return framework_samples("pmml")


@pytest.fixture(scope="module")
def server(samples: dict[str, Path]) -> Iterator[ServerProcess]:
    root = samples["iris"].parent
    with ServerProcess("pmmlserver", ["--model_name=unused", f"--model_dir={root}"]) as proc:
        yield proc


@pytest.fixture(scope="module")
def pmml(samples: dict[str, Path]) -> Iterator[Any]:
    """name -> that sample loaded by pypmml here, with pmml4s's supplementary outputs."""
    loaded: dict[str, Any] = {}

    def load(name: str) -> Any:
        if name not in loaded:
            model = PMML.fromFile(str(samples[name] / "model.pmml"))
            loaded[name] = model.setSupplementOutput(True)
        return loaded[name]

    yield load
    PMML.close()


def _iris(n: int | None = None) -> pd.DataFrame:
    frame = tables.iris()[0]
    if n is None:
        return frame
    return pd.DataFrame(np.resize(frame.to_numpy(), (n, 4)), columns=frame.columns)


def _plain(values: Any) -> list[Any]:
    """Values as Python objects, BYTES decoded."""
    flat = np.asarray(values, dtype=object).reshape(-1)
    return [v.decode() if isinstance(v, bytes) else v for v in flat]


def _matches(got: dict[str, Any], want: pd.DataFrame) -> None:
    """The server's outputs are pypmml's columns, same names, same order, same values.

    pypmml reads pmml4s's answer back with pandas, whose fast float parser
    keeps about 15 decimal places (the server passes pmml4s's doubles on
    exactly: hence the absolute tolerance) and which turns text such as a
    node id "1" into the number 1 (hence text is compared as text).
    """
    assert list(got) == list(want.columns)
    for name, column in want.items():
        value = np.asarray(got[name])
        assert value.shape == (len(want),), name
        if column.dtype.kind in "fiu" and value.dtype.kind in "fiu":
            np.testing.assert_allclose(
                value, column.to_numpy(), rtol=1e-12, atol=1e-14, err_msg=name
            )
        else:
            assert _plain(value) == [str(v) for v in column], name


def _columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """One named v2 input per column (strings as BYTES)."""
    return {
        name: column.to_numpy(dtype=object if column.dtype.kind == "O" else None)
        for name, column in frame.items()
    }


def _error(reply: httpx.Response) -> str:
    assert reply.status_code == 400, reply.text
    return reply.json()["error"]


def _still_serves(server: ServerProcess, pmml) -> None:
    _matches(
        infer(server, "iris", {"input-0": _iris().to_numpy()}, "json"),
        _want(pmml, "iris", _iris()),
    )


# -- metadata -----------------------------------------------------------------


def test_metadata_lists_fields_and_output_fields(server: ServerProcess, pmml) -> None:
    iris = httpx.get(f"{server.http_url}/v2/models/iris").json()
    assert iris["platform"] == "pmml"
    assert iris["inputs"] == [
        {"name": name, "datatype": "FP64", "shape": [-1]} for name in pmml("iris").inputNames
    ]
    outputs = {o["name"]: o["datatype"] for o in iris["outputs"]}
    assert list(outputs) == [*OUTPUTS["iris"], "contributions"]
    assert outputs["species"] == "BYTES"
    assert outputs["probability(virginica)"] == "FP64"
    assert iris["parameters"]["classes"] == pmml("iris").classes
    assert iris["parameters"]["targets"] == ["species"]

    fruit = httpx.get(f"{server.http_url}/v2/models/fruit").json()
    assert {i["name"]: i["datatype"] for i in fruit["inputs"]} == {
        "color": "BYTES",
        "weight": "FP64",
        "seeds": "INT64",
    }
    assert [o["name"] for o in fruit["outputs"]] == OUTPUTS["fruit"]
    diabetes = httpx.get(f"{server.http_url}/v2/models/diabetes").json()
    assert diabetes["inputs"] == [{"name": "bmi", "datatype": "FP64", "shape": [-1]}]
    assert diabetes["outputs"] == [
        {"name": "progression", "datatype": "FP64", "shape": [-1]},
        {"name": "contributions", "datatype": "FP64", "shape": [-1, 2]},
    ]


# -- predictions equal pypmml's ------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_rows_in_one_tensor_match_pypmml(server: ServerProcess, pmml, protocol: str) -> None:
    rows = _iris()
    got = infer(server, "iris", {"input-0": rows.to_numpy()}, protocol)
    _matches(got, _want(pmml, "iris", rows))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_named_fields_in_any_order_match_pypmml(server: ServerProcess, pmml, protocol: str) -> None:
    rows = _iris()
    shuffled = rows[["petal_width", "sepal_length", "petal_length", "sepal_width"]]
    got = infer(server, "iris", _columns(shuffled), protocol)
    _matches(got, _want(pmml, "iris", rows))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_string_fields_match_pypmml(server: ServerProcess, pmml, protocol: str) -> None:
    got = infer(server, "fruit", _columns(FRUIT), protocol)
    _matches(got, _want(pmml, "fruit", FRUIT))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_thousand_rows_match_pypmml(server: ServerProcess, pmml, protocol: str) -> None:
    rows = _iris(1000)
    got = infer(server, "iris", {"input-0": rows.to_numpy()}, protocol)
    _matches(got, _want(pmml, "iris", rows))


def test_one_field_model_takes_its_column(server: ServerProcess, pmml) -> None:
    """A one-field model's input is the [N] column its metadata declares: N rows."""
    rows = tables.diabetes()[0][["bmi"]].iloc[:25]
    want = _want(pmml, "diabetes", rows)
    for protocol in PROTOCOLS:
        got = infer(server, "diabetes", {"bmi": rows["bmi"].to_numpy()}, protocol)
        # pypmml writes its input with 10 decimals; the server sends every digit.
        np.testing.assert_allclose(got["progression"], want["progression"], rtol=1e-9)
    # v1: a list of single values is the one field's rows
    values = rows["bmi"].tolist()
    reply = v1_predict(server, "diabetes", {"instances": values})
    assert reply.status_code == 200, reply.text
    np.testing.assert_allclose(reply.json()["predictions"], want["progression"], rtol=1e-9)


def _records_match(predictions: list[dict[str, Any]], want: pd.DataFrame) -> None:
    assert len(predictions) == len(want)
    assert all(list(p) == list(want.columns) for p in predictions)
    _matches({name: [p[name] for p in predictions] for name in want.columns}, want)


def test_v1_answers_one_object_per_row(server: ServerProcess, pmml) -> None:
    """Every output field per row, as KServe's pmmlserver answers v1."""
    rows = _iris().iloc[::10]
    want = _want(pmml, "iris", rows)
    for instances in (rows.to_numpy().tolist(), rows.to_dict(orient="records")):
        reply = v1_predict(server, "iris", {"instances": instances})
        assert reply.status_code == 200, reply.text
        _records_match(reply.json()["predictions"], want)
    reply = v1_predict(server, "fruit", {"instances": FRUIT.to_dict(orient="records")})
    assert reply.status_code == 200, reply.text
    _records_match(reply.json()["predictions"], _want(pmml, "fruit", FRUIT))


IRIS_TREE_ROWS = pd.DataFrame(
    [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [6.7, 3.0, 5.2, 2.3]],
    columns=["Sepal_Length", "Sepal_Width", "Petal_Length", "Petal_Width"],
)


def test_declared_outputs_answer_as_kserve_names_them(server: ServerProcess, pmml) -> None:
    """A tree whose <Output> names its fields (as KServe's pmmlserver example does): the
    target and exactly those fields, by their names, in metadata and in every answer."""
    meta = httpx.get(f"{server.http_url}/v2/models/iris-tree").json()
    assert [o["name"] for o in meta["outputs"]] == OUTPUTS["iris-tree"]
    want = _want(pmml, "iris-tree", IRIS_TREE_ROWS)
    assert want["Species"].tolist() == ["setosa", "versicolor", "virginica"]
    reply = v1_predict(server, "iris-tree", {"instances": IRIS_TREE_ROWS.to_numpy().tolist()})
    assert reply.status_code == 200, reply.text
    _records_match(reply.json()["predictions"], want)
    for protocol in PROTOCOLS:
        _matches(infer(server, "iris-tree", {"input-0": IRIS_TREE_ROWS.to_numpy()}, protocol), want)


# -- output selection -----------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_outputs_are_selected_by_name(server: ServerProcess, pmml, protocol: str) -> None:
    rows = _iris()
    names = ["species", "probability(virginica)"]
    got = infer(server, "iris", {"input-0": rows.to_numpy()}, protocol, outputs=names)
    _matches(got, _want(pmml, "iris", rows)[names])


def test_v1_outputs_parameter_selects(server: ServerProcess, pmml) -> None:
    rows = _iris().iloc[:5]
    body = {"instances": rows.to_numpy().tolist(), "parameters": {"outputs": "species"}}
    reply = v1_predict(server, "iris", body)
    assert reply.status_code == 200, reply.text
    assert reply.json()["predictions"] == _want(pmml, "iris", rows)["species"].tolist()


def test_unknown_output_is_400(server: ServerProcess, pmml) -> None:
    body = {
        "inputs": [
            {"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}
        ],
        "outputs": [{"name": "predict_proba"}],
    }
    message = _error(v2_post(server, "iris", body))
    assert "predict_proba" in message and "species" in message


# -- concurrency: one JVM, many threads --------------------------------------------


def test_concurrent_batches_agree(server: ServerProcess, pmml) -> None:
    rows = _iris(1000)
    want = _want(pmml, "iris", rows)
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(
                lambda p: infer(server, "iris", {"input-0": rows.to_numpy()}, p),
                ["binary", "grpc"] * 8,
            )
        )
    for got in answers:
        _matches(got, want)


# -- bad requests: 400 / INVALID_ARGUMENT with the reason, then still serving -------------


def test_wrong_feature_count_is_400(server: ServerProcess, pmml) -> None:
    short = [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [5.1, 3.5, 1.4]}]
    assert "features" in _error(v2_post(server, "iris", {"inputs": short}))
    assert "features" in _error(v1_predict(server, "iris", {"instances": [[5.1, 3.5, 1.4]]}))
    with pytest.raises(InferenceServerException) as info:
        infer(server, "iris", {"x": np.asarray([[5.1, 3.5, 1.4]])}, "grpc")
    assert info.value.status() == str(grpc.StatusCode.INVALID_ARGUMENT)
    assert "features" in info.value.message()
    missing = _columns(_iris()[["sepal_length", "sepal_width", "petal_length"]])
    with pytest.raises(InferenceServerException, match="petal_width"):
        infer(server, "iris", missing, "json")
    one = [{"name": "sepal_length", "shape": [1], "datatype": "FP64", "data": [5.1]}]
    assert "petal_width" in _error(v2_post(server, "iris", {"inputs": one}))
    _still_serves(server, pmml)


def test_invalid_category_is_400_with_pmml4s_reason(server: ServerProcess, pmml) -> None:
    """The tree's color is invalidValueTreatment=returnInvalid: pmml4s gives no result."""
    rows = FRUIT.assign(color=["yellow", "purple", "red", "red", "red", "red"])
    with pytest.raises(InferenceServerException) as info:
        infer(server, "fruit", _columns(rows), "grpc")
    assert info.value.status() == str(grpc.StatusCode.INVALID_ARGUMENT)
    reply = v1_predict(server, "fruit", {"instances": rows.to_dict(orient="records")})
    for message in (info.value.message(), _error(reply)):
        assert "row 1" in message and "'purple'" in message and "'color'" in message
        assert "returnInvalid" in message
    _still_serves(server, pmml)


def test_text_for_a_number_is_400(server: ServerProcess, pmml) -> None:
    """pmml4s would read 'heavy' as a missing weight; the server refuses it."""
    inputs = [
        {"name": "color", "shape": [1], "datatype": "BYTES", "data": ["red"]},
        {"name": "weight", "shape": [1], "datatype": "BYTES", "data": ["heavy"]},
        {"name": "seeds", "shape": [1], "datatype": "INT64", "data": [3]},
    ]
    message = _error(v2_post(server, "fruit", {"inputs": inputs}))
    assert "'weight'" in message and "heavy" in message
    as_text = [
        {"name": "x", "shape": [1, 4], "datatype": "BYTES", "data": ["5.1", "3.5", "1.4x", "1"]}
    ]
    assert "1.4x" in _error(v2_post(server, "iris", {"inputs": as_text}))
    _still_serves(server, pmml)


def test_missing_value_without_result_is_400(server: ServerProcess, pmml) -> None:
    rows = _iris().iloc[:3].to_numpy().copy()
    rows[2, 1] = np.nan
    with pytest.raises(InferenceServerException) as info:
        infer(server, "iris", {"input-0": rows}, "binary")
    assert "row 2" in info.value.message() and "'sepal_width' is missing" in info.value.message()
    _still_serves(server, pmml)


# -- the process: one JVM inside it, shared by every model --------------------------


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_one_jvm_inside_the_server_process(server: ServerProcess, pmml) -> None:
    assert server.proc is not None
    pid = server.proc.pid
    assert _children(pid) == []  # py4j would have started a java process
    assert "libjvm.so" in Path(f"/proc/{pid}/maps").read_text()
    for name in OUTPUTS:
        assert httpx.get(f"{server.http_url}/v2/models/{name}/ready").status_code == 200
    # A reload loads the file again in the same JVM (JPype cannot start a second one).
    reply = httpx.post(f"{server.http_url}/v2/repository/models/fruit/load", timeout=60)
    assert reply.status_code == 200, reply.text
    _matches(infer(server, "fruit", _columns(FRUIT), "json"), _want(pmml, "fruit", FRUIT))
    assert _children(pid) == []


def test_sigterm_drains_and_exits_zero(samples: dict[str, Path]) -> None:
    """The in-process JVM leaves SIGTERM to the server (-Xrs): a clean drain and exit 0."""
    proc = ServerProcess("pmmlserver", ["--model_name=m", f"--model_dir={samples['diabetes']}"])
    with proc:
        assert v1_predict(proc, "m", {"instances": [[0.05]]}).status_code == 200
    assert proc.proc is not None and proc.proc.returncode == 0, proc.output()
    assert "stopped" in proc.output() and "Traceback" not in proc.output()


def test_pmml_without_a_model_is_a_startup_error(tmp_path: Path) -> None:
    """pmml4s reads a PMML with no model element; the server refuses to serve it."""
    (tmp_path / "empty.pmml").write_text(
        '<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4"><Header/><DataDictionary/></PMML>'
    )
    done = run_to_exit("pmmlserver", ["--model_name=m", f"--model_dir={tmp_path}"])
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "empty.pmml" in output and "no model pmml4s can score" in output
    assert "Traceback" not in output

"""lgbserver through real servers, checked against LightGBM predicting in this process.

One server serves every LightGBM sample (one sub-folder each) with KServe's
``--nthread=1``: iris as model.bst (KServe's name), breast cancer as
model.txt, and iris with a pandas categorical ``petal_size`` that clients
send as strings. Every answer is compared with ``Booster.predict`` here on
the same rows; categorical rows are given to LightGBM here as the DataFrame
of pandas Categoricals it was trained on, so the server's string-to-category
mapping is checked against LightGBM's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import lightgbm as lgb
import numpy as np
import pandas as pd
import protocol_clients as clients
import pytest
from samples import lgb as lgb_samples
from samples import tables
from serverproc import ServerProcess
from tritonclient.utils import InferenceServerException

pytestmark = pytest.mark.e2e

TABLES = {"iris": tables.iris, "breast-cancer": tables.breast_cancer}
CATEGORICAL = "iris-categorical"
#: Named inputs in an order other than the booster's.
CATEGORICAL_ORDER = ["petal_size", "sepal_width", "petal_width", "sepal_length"]


@pytest.fixture(scope="module")
def samples(framework_samples) -> dict[str, Path]:
    return framework_samples("lightgbm")


@pytest.fixture(scope="module")
def server(samples: dict[str, Path]) -> Iterator[ServerProcess]:
    root = samples["iris"].parent
    proc = ServerProcess("lgbserver", ["--model_name=unused", f"--model_dir={root}", "--nthread=1"])
    with proc:
        yield proc


@pytest.fixture(scope="module")
def booster(samples: dict[str, Path]) -> Callable[[str], lgb.Booster]:
    """A sample's booster loaded in this process, as its user would load it."""

    def load(name: str) -> lgb.Booster:
        (path,) = samples[name].iterdir()
        return lgb.Booster(model_file=str(path))

    return load


def _rows(name: str, n: int | None = None) -> np.ndarray:
    X = TABLES[name]()[0].to_numpy(dtype=np.float64)
    return X if n is None else np.resize(X, (n, X.shape[1]))


def _categorical_frame(n: int | None = None) -> pd.DataFrame:
    frame = lgb_samples.iris_categorical()[0]
    return frame if n is None else frame.iloc[np.arange(n) % len(frame)].reset_index(drop=True)


def _columns(frame: pd.DataFrame, order: list[str]) -> dict[str, np.ndarray]:
    """One named tensor per column: numbers as FP64, categories as strings (BYTES)."""
    tensors = {}
    for name in order:
        column = frame[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            tensors[name] = column.astype(str).to_numpy(dtype=object)
        else:
            tensors[name] = column.to_numpy(dtype=np.float64)
    return tensors


def _two_columns(p: np.ndarray) -> np.ndarray:
    """LGBMClassifier.predict_proba of a binary booster: [1 - p, p]."""
    return p if p.ndim == 2 else np.column_stack([1.0 - p, p])


def test_both_suffixes_load(server: ServerProcess, samples: dict[str, Path]) -> None:
    assert [p.name for p in samples["iris"].iterdir()] == ["model.bst"]
    assert [p.name for p in samples["breast-cancer"].iterdir()] == ["model.txt"]
    for name in (*TABLES, CATEGORICAL):
        assert clients.v2_metadata(server, name)["platform"] == "lightgbm"


@pytest.mark.parametrize("protocol", clients.PROTOCOLS)
@pytest.mark.parametrize("name", list(TABLES))
def test_predict_is_what_lightgbm_predicts(server, booster, name: str, protocol: str) -> None:
    X = _rows(name)
    got = clients.infer(server, name, {"input-0": X}, protocol)
    assert list(got) == ["predict"]  # the default output alone
    clients.assert_close(got["predict"], booster(name).predict(X))


@pytest.mark.parametrize("name", list(TABLES))
def test_v1_predict_is_what_lightgbm_predicts(server, booster, name: str) -> None:
    X = _rows(name)[:10]
    reply = clients.v1_predict(server, name, {"instances": X.tolist()})
    assert reply.status_code == 200, reply.text
    clients.assert_close(np.asarray(reply.json()["predictions"]), booster(name).predict(X))


@pytest.mark.parametrize("protocol", clients.PROTOCOLS)
@pytest.mark.parametrize("name", list(TABLES))
def test_probabilities_and_labels(server, booster, name: str, protocol: str) -> None:
    X = _rows(name)
    proba = _two_columns(booster(name).predict(X))
    got = clients.infer(server, name, {"input-0": X}, protocol, ["predict_proba", "predict_label"])
    assert list(got) == ["predict_proba", "predict_label"]
    clients.assert_close(got["predict_proba"], proba)
    assert got["predict_label"].dtype == np.int64
    clients.assert_close(got["predict_label"], proba.argmax(axis=1))


def test_unknown_output_is_400(server: ServerProcess) -> None:
    tensor = {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}
    body = {"inputs": [tensor], "outputs": [{"name": "predict_log"}]}
    clients.assert_rejected(server, "iris", body, "predict_log")


@pytest.mark.parametrize("protocol", clients.PROTOCOLS)
def test_named_inputs_in_any_order_are_features_by_name(server, booster, protocol: str) -> None:
    frame = TABLES["iris"]()[0]
    order = ["petal_width", "sepal_length", "petal_length", "sepal_width"]
    got = clients.infer(server, "iris", _columns(frame, order), protocol)
    clients.assert_close(got["predict"], booster("iris").predict(frame))


@pytest.mark.parametrize("protocol", clients.PROTOCOLS)
def test_categories_sent_as_strings(server, booster, protocol: str) -> None:
    frame = _categorical_frame()
    got = clients.infer(server, CATEGORICAL, _columns(frame, CATEGORICAL_ORDER), protocol)
    clients.assert_close(got["predict"], booster(CATEGORICAL).predict(frame))


def test_unseen_category_is_scored_as_lightgbm_scores_it(server, booster) -> None:
    frame = _categorical_frame().iloc[[0, 60, 120, 149]].reset_index(drop=True)
    frame["petal_size"] = pd.Categorical(["huge", "small", "tiny", "large"])
    got = clients.infer(server, CATEGORICAL, _columns(frame, CATEGORICAL_ORDER), "json")
    # LightGBM maps the frame's categories onto the training ones; unseen become missing.
    clients.assert_close(got["predict"], booster(CATEGORICAL).predict(frame))


def test_categories_as_codes_and_as_v1_objects(server, booster) -> None:
    frame = _categorical_frame()
    want = booster(CATEGORICAL).predict(frame)
    codes = frame.assign(petal_size=frame["petal_size"].cat.codes).to_numpy(dtype=np.float64)
    clients.assert_close(
        clients.infer(server, CATEGORICAL, {"input-0": codes}, "binary")["predict"], want
    )
    rows = frame.astype({"petal_size": str}).to_dict(orient="records")
    reply = clients.v1_predict(server, CATEGORICAL, {"instances": rows})
    assert reply.status_code == 200, reply.text
    clients.assert_close(np.asarray(reply.json()["predictions"]), want)


def test_metadata_comes_from_the_booster(server: ServerProcess, booster) -> None:
    for name in TABLES:
        model = booster(name)
        meta = clients.v2_metadata(server, name)
        n = model.num_feature()
        assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, n]}]
        params = meta["parameters"]
        assert params["feature_names"] == model.feature_name()
        assert params["objective"] == model.params["objective"]
        assert params["num_threads"] == 1  # KServe's --nthread=1
    assert clients.v2_metadata(server, "iris")["parameters"]["num_class"] == 3
    cancer = clients.v2_metadata(server, "breast-cancer")
    assert [o["name"] for o in cancer["outputs"]] == [
        "predict",
        "predict_proba",
        "predict_label",
        "contributions",
    ]
    assert [o["shape"] for o in cancer["outputs"]] == [[-1], [-1, 2], [-1], [-1, 31]]


def test_categorical_metadata_names_each_input(server: ServerProcess, booster) -> None:
    model = booster(CATEGORICAL)
    meta = clients.v2_metadata(server, CATEGORICAL)
    assert {i["name"]: i["datatype"] for i in meta["inputs"]} == {
        "sepal_length": "FP64",
        "sepal_width": "FP64",
        "petal_width": "FP64",
        "petal_size": "BYTES",
    }
    assert meta["parameters"]["categories"] == {"petal_size": model.pandas_categorical[0]}


@pytest.mark.parametrize("protocol", clients.PROTOCOLS)
def test_a_thousand_rows(server: ServerProcess, booster, protocol: str) -> None:
    X = _rows("iris", 1000)
    got = clients.infer(server, "iris", {"input-0": X}, protocol, ["predict", "predict_label"])
    assert got["predict"].shape == (1000, 3)
    clients.assert_close(got["predict"], booster("iris").predict(X))


def test_a_thousand_categorical_rows(server: ServerProcess, booster) -> None:
    frame = _categorical_frame(1000)
    got = clients.infer(server, CATEGORICAL, _columns(frame, CATEGORICAL_ORDER), "binary")
    clients.assert_close(got["predict"], booster(CATEGORICAL).predict(frame))


def _named(values: dict[str, list]) -> list[dict]:
    return [
        {
            "name": name,
            "shape": [len(data)],
            "datatype": "BYTES" if isinstance(data[0], str) else "FP64",
            "data": data,
        }
        for name, data in values.items()
    ]


BAD_REQUESTS = [
    pytest.param(
        "breast-cancer",
        [{"name": "input-0", "shape": [1, 29], "datatype": "FP64", "data": [1.0] * 29}],
        "features",
        id="width",
    ),
    pytest.param(
        "iris",
        [{"name": "input-0", "shape": [1, 4], "datatype": "BYTES", "data": ["5.1"] * 4}],
        "BYTES",
        id="numeric strings",
    ),
    pytest.param(
        CATEGORICAL,
        _named(
            {
                "sepal_length": ["long"],
                "sepal_width": [3.5],
                "petal_width": [0.2],
                "petal_size": ["small"],
            }
        ),
        "sepal_length",
        id="string for a number",
    ),
    pytest.param(
        CATEGORICAL,
        _named({"sepal_length": [5.1], "sepal_width": [3.5], "petal_lenght": [0.2]}),
        "petal_size",
        id="misspelt feature",
    ),
    pytest.param(
        "iris",
        [{"name": "input-0", "shape": [1, 4, 1], "datatype": "FP64", "data": [1.0] * 4}],
        "shape",
        id="rank",
    ),
]


@pytest.mark.parametrize(("name", "inputs", "reason"), BAD_REQUESTS)
def test_bad_request_is_400_then_the_categorical_model_still_answers(
    server: ServerProcess, booster, name: str, inputs: list[dict], reason: str
) -> None:
    clients.assert_rejected(server, name, {"inputs": inputs}, reason)
    frame = _categorical_frame().iloc[:5]
    got = clients.infer(server, CATEGORICAL, _columns(frame, CATEGORICAL_ORDER), "json")
    clients.assert_close(got["predict"], booster(CATEGORICAL).predict(frame))


def test_a_feature_the_request_lacks_is_missing_as_under_kserve(server, booster) -> None:
    """LightGBM scores a missing value: an absent feature is NaN, as KServe's DataFrame has it."""
    inputs = _named(
        {"sepal_length": [5.1, 6.7], "sepal_width": [3.5, 3.0], "petal_width": [0.2, 2.3]}
    )
    reply = clients.v2_post(server, CATEGORICAL, {"inputs": inputs})
    assert reply.status_code == 200, reply.text
    rows = np.array([[5.1, 3.5, 0.2, np.nan], [6.7, 3.0, 2.3, np.nan]])  # the booster's order
    assert booster(CATEGORICAL).feature_name() == [
        "sepal_length",
        "sepal_width",
        "petal_width",
        "petal_size",
    ]
    want = booster(CATEGORICAL).predict(rows)
    clients.assert_close(np.asarray(reply.json()["outputs"][0]["data"]).reshape(want.shape), want)


def test_strings_over_grpc_are_invalid_argument(server: ServerProcess) -> None:
    strings = np.array([["5.1", "3.5", "1.4", "0.2"]], dtype=object)
    with pytest.raises(InferenceServerException) as info:
        clients.infer(server, "iris", {"input-0": strings}, "grpc")
    assert info.value.status() == str(grpc.StatusCode.INVALID_ARGUMENT)
    assert "BYTES" in info.value.message()

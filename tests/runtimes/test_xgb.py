"""xgbserver through real servers, checked against XGBoost predicting in this process.

One server serves every XGBoost sample (one sub-folder each) with KServe's
``--nthread=1``: the iris booster as .json, .ubj and .bst, a binary
classifier and a regressor; a second one checks another thread count and the
``multi:softmax`` objective, whose prediction is a class. Every
answer is compared with what XGBoost itself predicts here on the same rows:
``Booster.inplace_predict`` for ``predict``, the scikit-learn wrapper
``XGBClassifier`` for probabilities and labels.
"""

from __future__ import annotations

import json
import shutil
import struct
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import xgboost as xgb
from protocol_clients import (
    PROTOCOLS,
    assert_close,
    assert_rejected,
    infer,
    v1_predict,
    v2_metadata,
)
from samples import tables
from serverproc import ServerProcess, run_to_exit
from tritonclient.utils import InferenceServerException

pytestmark = pytest.mark.e2e

IRIS_FORMATS = ("iris-json", "iris-ubj", "iris-bst")
TABLES = {
    "iris-json": tables.iris,
    "breast-cancer": tables.breast_cancer,
    "diabetes": tables.diabetes,
}
CLASSIFIERS = ("iris-json", "breast-cancer")


@pytest.fixture(scope="module")
def samples(framework_samples) -> dict[str, Path]:
    return framework_samples("xgboost")


@pytest.fixture(scope="module")
def server(samples: dict[str, Path]) -> Iterator[ServerProcess]:
    root = samples["iris-json"].parent
    proc = ServerProcess("xgbserver", ["--model_name=unused", f"--model_dir={root}", "--nthread=1"])
    with proc:
        yield proc


def _model_file(samples: dict[str, Path], name: str) -> str:
    (path,) = samples[name].iterdir()
    return str(path)


@pytest.fixture(scope="module")
def booster(samples: dict[str, Path]) -> Callable[[str], xgb.Booster]:
    """A sample's booster loaded in this process, as its user would load it."""

    def load(name: str) -> xgb.Booster:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # ".bst": "using UBJSON as a guess"
            return xgb.Booster(model_file=_model_file(samples, name))

    return load


def _frame(name: str):
    return TABLES[name]()[0].astype(np.float32)


def _rows(name: str, n: int | None = None) -> np.ndarray:
    X = _frame(name).to_numpy()
    return X if n is None else np.resize(X, (n, X.shape[1]))


def test_every_iris_format_loads_and_predicts_identically(server: ServerProcess, booster) -> None:
    X = _rows("iris-json")
    want = booster("iris-json").inplace_predict(X)
    answers = {
        name: infer(server, name, {"input-0": X}, "binary")["predict"] for name in IRIS_FORMATS
    }
    for name, got in answers.items():
        np.testing.assert_array_equal(got, want, err_msg=name)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("name", list(TABLES))
def test_predict_is_what_xgboost_predicts(server, booster, name: str, protocol: str) -> None:
    X = _rows(name)
    got = infer(server, name, {"input-0": X}, protocol)
    assert list(got) == ["predict"]  # the default output alone
    assert_close(got["predict"], booster(name).inplace_predict(X))


@pytest.mark.parametrize("name", list(TABLES))
def test_v1_predict_is_what_xgboost_predicts(server, booster, name: str) -> None:
    X = _rows(name)[:10]
    reply = v1_predict(server, name, {"instances": X.tolist()})
    assert reply.status_code == 200, reply.text
    got = np.asarray(reply.json()["predictions"], dtype=np.float32)
    assert_close(got, booster(name).inplace_predict(X))


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("name", CLASSIFIERS)
def test_probabilities_and_labels_are_what_xgbclassifier_gives(
    server, samples, name: str, protocol: str
) -> None:
    classifier = xgb.XGBClassifier()
    classifier.load_model(_model_file(samples, name))
    X = _rows(name)
    got = infer(server, name, {"input-0": X}, protocol, ["predict_proba", "predict_label"])
    assert list(got) == ["predict_proba", "predict_label"]
    assert_close(got["predict_proba"], classifier.predict_proba(X))
    assert got["predict_label"].dtype == np.int64
    assert_close(got["predict_label"], classifier.predict(X))


def test_regressor_has_only_predict_and_unknown_outputs_are_400(server: ServerProcess) -> None:
    tensor = {"name": "input-0", "shape": [1, 10], "datatype": "FP32", "data": [0.01] * 10}
    body = {"inputs": [tensor], "outputs": [{"name": "predict_proba"}]}
    assert_rejected(server, "diabetes", body, "no output named 'predict_proba'; available: predict")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_named_inputs_in_any_order_are_features_by_name(server, booster, protocol: str) -> None:
    frame = _frame("iris-json")
    order = ["petal_width", "sepal_length", "petal_length", "sepal_width"]
    got = infer(server, "iris-json", {c: frame[c].to_numpy() for c in order}, protocol)
    # In this process the DataFrame goes in whole; XGBoost checks its names itself.
    assert_close(got["predict"], booster("iris-json").inplace_predict(frame))


def test_metadata_comes_from_the_booster(server: ServerProcess, booster) -> None:
    for name in TABLES:
        model = booster(name)
        learner = json.loads(model.save_config())["learner"]
        meta = v2_metadata(server, name)
        n = model.num_features()
        assert meta["platform"] == "xgboost"
        assert meta["inputs"] == [{"name": "input-0", "datatype": "FP32", "shape": [-1, n]}]
        params = meta["parameters"]
        assert params["feature_names"] == model.feature_names
        assert params["n_features"] == n
        assert params["objective"] == learner["objective"]["name"]
        assert params["nthread"] == 1  # KServe's --nthread=1, read back from the booster
    iris = v2_metadata(server, "iris-json")
    assert iris["parameters"]["num_class"] == 3
    assert [o["name"] for o in iris["outputs"]] == [
        "predict",
        "predict_proba",
        "predict_label",
        "contributions",
    ]
    assert iris["outputs"][1]["shape"] == [-1, 3]
    assert iris["outputs"][3]["shape"] == [-1, 3, 5]  # per class: 4 features and the bias
    assert v2_metadata(server, "breast-cancer")["outputs"][1]["shape"] == [-1, 2]
    diabetes = v2_metadata(server, "diabetes")["outputs"]
    assert [o["name"] for o in diabetes] == ["predict", "contributions"]


@pytest.fixture(scope="module")
def second_root(samples: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The iris .ubj sample, and the same iris booster trained as multi:softmax and softprob."""
    root = tmp_path_factory.mktemp("xgb-second")
    shutil.copytree(samples["iris-ubj"], root / "iris")
    X, y = tables.iris()
    for objective in ("multi:softmax", "multi:softprob"):
        classifier = xgb.XGBClassifier(
            objective=objective, n_estimators=5, max_depth=2, random_state=0, n_jobs=1
        )
        directory = root / objective.replace(":", "-")
        directory.mkdir()
        classifier.fit(X, y).get_booster().save_model(str(directory / "model.json"))
    return root


@pytest.fixture(scope="module")
def second(second_root: Path) -> Iterator[ServerProcess]:
    """Another thread count, and the softmax objective (whose prediction is a class)."""
    args = ["--model_name=unused", f"--model_dir={second_root}", "--nthread=2"]
    with ServerProcess("xgbserver", args) as proc:
        yield proc


def test_nthread_reaches_the_booster(second: ServerProcess, booster) -> None:
    assert v2_metadata(second, "iris")["parameters"]["nthread"] == 2
    X = _rows("iris-json")
    got = infer(second, "iris", {"input-0": X}, "binary")["predict"]
    np.testing.assert_array_equal(got, booster("iris-ubj").inplace_predict(X))


def test_softmax_predicts_classes_and_offers_probabilities(
    second: ServerProcess, second_root: Path
) -> None:
    softmax, softprob = (
        xgb.Booster(model_file=str(second_root / name / "model.json"))
        for name in ("multi-softmax", "multi-softprob")
    )
    X = _rows("iris-json")
    outputs = ["predict", "predict_proba", "predict_label"]
    got = infer(second, "multi-softmax", {"input-0": X}, "json", outputs)
    classes = softmax.inplace_predict(X)
    assert_close(got["predict"], classes)
    # The same trees trained as softprob give the probabilities softmax leaves out.
    assert_close(got["predict_proba"], softprob.inplace_predict(X))
    assert_close(got["predict_label"], classes.astype(np.int64))
    assert v2_metadata(second, "multi-softmax")["outputs"][0]["shape"] == [-1]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_thousand_rows(server: ServerProcess, booster, protocol: str) -> None:
    X = _rows("iris-json", 1000)
    got = infer(server, "iris-json", {"input-0": X}, protocol, ["predict", "predict_label"])
    assert got["predict"].shape == (1000, 3)
    assert_close(got["predict"], booster("iris-json").inplace_predict(X))


def _legacy_binary(magic: bool) -> bytes:
    """The start of a model in XGBoost's legacy binary format, laid out as 1.x wrote it.

    An optional "binf" magic, a 136-byte parameter block (base_score,
    num_feature, num_class, then flags and reserved words), the objective's and
    the booster's names as uint64 length + bytes, then the trees (left out).
    """
    params = struct.pack("<fIi", 0.5, 4, 3).ljust(136, b"\0")

    def name(text: bytes) -> bytes:
        return struct.pack("<Q", len(text)) + text

    body = params + name(b"multi:softprob") + name(b"gbtree") + bytes(64)
    return b"binf" + body if magic else body


@pytest.mark.parametrize("magic", [True, False], ids=["binf", "bare"])
def test_legacy_binary_bst_is_refused_with_how_to_convert(tmp_path: Path, magic: bool) -> None:
    path = tmp_path / "model.bst"
    path.write_bytes(_legacy_binary(magic))
    with pytest.raises(xgb.core.XGBoostError):
        xgb.Booster(model_file=str(path))  # XGBoost 3 itself cannot read it
    done = run_to_exit("xgbserver", ["--model_name=m", f"--model_dir={tmp_path}"])
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Traceback" not in output, output
    for fragment in ("model.bst", "legacy binary format", ".json", ".ubj", "older XGBoost"):
        assert fragment in output, output


BAD_REQUESTS = {
    "width": (
        "breast-cancer",
        [{"name": "input-0", "shape": [1, 29], "datatype": "FP32", "data": [1.0] * 29}],
        "features",
    ),
    "numeric strings": (
        "diabetes",
        [{"name": "input-0", "shape": [1, 10], "datatype": "BYTES", "data": ["0.01"] * 10}],
        "BYTES",
    ),
    "string column": (
        "iris-json",
        [
            {"name": n, "shape": [1], "datatype": "FP32", "data": [1.0]}
            for n in ("sepal_length", "sepal_width", "petal_length")
        ]
        + [{"name": "petal_width", "shape": [1], "datatype": "BYTES", "data": ["wide"]}],
        "petal_width",
    ),
    "missing column": (
        "iris-json",
        [
            {"name": n, "shape": [1], "datatype": "FP32", "data": [1.0]}
            for n in ("sepal_length", "sepal_width", "petal_length", "petal_size")
        ],
        "petal_width",
    ),
    "rank": (
        "iris-json",
        [{"name": "input-0", "shape": [1, 4, 1], "datatype": "FP32", "data": [1.0] * 4}],
        "shape",
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_requests_are_400_and_the_server_keeps_serving(server, booster, case: str) -> None:
    name, inputs, reason = BAD_REQUESTS[case]
    assert_rejected(server, name, {"inputs": inputs}, reason)
    X = _rows(name)[:5]
    assert_close(
        infer(server, name, {"input-0": X}, "json")["predict"], booster(name).inplace_predict(X)
    )


def test_strings_over_grpc_are_invalid_argument(server: ServerProcess) -> None:
    strings = np.array([["5.1", "3.5", "1.4", "0.2"]], dtype=object)
    with pytest.raises(InferenceServerException) as info:
        infer(server, "iris-json", {"input-0": strings}, "grpc")
    assert info.value.status() == str(grpc.StatusCode.INVALID_ARGUMENT)
    assert "BYTES" in info.value.message()

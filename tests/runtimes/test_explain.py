"""Explanations through real servers: every runtime that explains, over every protocol.

For each model that declares contributions, the answers of KServe v1
``:explain``, v2 REST (JSON and binary) and v2 gRPC must agree, and for every
row the contributions plus the bias must add up to the model's raw output as
its framework computes it in this process (XGBoost's margin, LightGBM's raw
score, scikit-learn's ``decision_function``, ``predict_proba`` or
``predict``; for PMML, pypmml's predicted value, or its probabilities as the
softmax of the sums). XGBoost's and LightGBM's contributions must also be
exactly what the framework gives here. Models that cannot explain answer 501
with the reason, and metadata says which explain.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from protocol_clients import PROTOCOLS, infer, v2_metadata
from samples import tables
from serverproc import ServerProcess

pytestmark = pytest.mark.e2e

Rows = Any


def _iris() -> pd.DataFrame:
    return tables.iris()[0].iloc[::15]


def _cancer() -> pd.DataFrame:
    return tables.breast_cancer()[0].iloc[::57]


def _diabetes() -> pd.DataFrame:
    return tables.diabetes()[0].iloc[::44]


# -- scikit-learn models, trained here --------------------------------------------------


def _sklearn_models() -> dict[str, tuple[Any, Callable[[], pd.DataFrame]]]:
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeRegressor

    iris, cancer, diabetes = tables.iris(), tables.breast_cancer(), tables.diabetes()
    # Fitted on arrays, as the samples are: the inputs are then one [N, F] tensor.
    plain = {
        "logistic": (LogisticRegression(max_iter=1000), iris, _iris),
        "scaled-ridge": (make_pipeline(StandardScaler(), Ridge()), diabetes, _diabetes),
        "forest": (RandomForestClassifier(20, max_depth=4, random_state=0), iris, _iris),
        "boosted": (GradientBoostingClassifier(n_estimators=20, random_state=0), cancer, _cancer),
        "tree": (DecisionTreeRegressor(max_depth=5, random_state=0), diabetes, _diabetes),
        "knn": (KNeighborsClassifier(), iris, _iris),
    }
    return {
        name: (estimator.fit(X.to_numpy(), y), rows)
        for name, (estimator, (X, y), rows) in plain.items()
    }


SKLEARN = _sklearn_models()


def _sklearn_raw(name: str) -> Callable[[Rows], np.ndarray]:
    estimator = SKLEARN[name][0]
    method = "predict"
    if hasattr(estimator, "decision_function"):
        method = "decision_function"
    elif hasattr(estimator, "predict_proba"):
        method = "predict_proba"
    return lambda rows: getattr(estimator, method)(np.asarray(rows))


# -- what each explained model must add up to ----------------------------------------------


@dataclass(frozen=True)
class Explained:
    runtime: str
    model: str
    rows: Callable[[], pd.DataFrame]
    datatype: str
    #: rows -> the model's raw output, as its framework computes it here
    raw: Callable[[Rows], np.ndarray]
    #: rows -> the framework's own contributions, when it has an API for them
    reference: Callable[[Rows], np.ndarray] | None = None
    #: sums -> what the framework answers, when not the sums (PMML's softmax probabilities)
    link: Callable[[np.ndarray], np.ndarray] | None = None
    rtol: float = 1e-9

    @property
    def id(self) -> str:
        return f"{self.runtime}-{self.model}"


def _booster(samples: dict[str, Path], name: str) -> xgb.Booster:
    (path,) = samples[name].iterdir()
    return xgb.Booster(model_file=str(path))


def _lgb(samples: dict[str, Path], name: str) -> lgb.Booster:
    (path,) = samples[name].iterdir()
    return lgb.Booster(model_file=str(path))


def _softmax(sums: np.ndarray) -> np.ndarray:
    e = np.exp(sums - sums.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _subjects(framework_samples) -> list[Explained]:
    xgb_samples = framework_samples("xgboost")
    lgb_samples = framework_samples("lightgbm")
    pmml_samples = framework_samples("pmml")
    subjects: list[Explained] = []
    for name, rows in (("iris-json", _iris), ("breast-cancer", _cancer), ("diabetes", _diabetes)):
        booster = _booster(xgb_samples, name)
        subjects.append(
            Explained(
                "xgbserver",
                name,
                rows,
                "FP32",
                lambda X, b=booster: b.inplace_predict(
                    np.asarray(X, np.float32), predict_type="margin"
                ),
                lambda X, b=booster: b.predict(
                    xgb.DMatrix(np.asarray(X, np.float32)),
                    pred_contribs=True,
                    validate_features=False,
                ),
                rtol=1e-5,  # XGBoost adds up in float32
            )
        )
    for name, rows in (("iris", _iris), ("breast-cancer", _cancer)):
        booster = _lgb(lgb_samples, name)

        def contributions(X: Rows, b: lgb.Booster = booster) -> np.ndarray:
            values = b.predict(np.asarray(X, np.float64), pred_contrib=True)
            k = b.num_model_per_iteration()
            blocks = values.reshape(len(X), k, -1)
            return blocks if k > 1 else blocks[:, 0, :]

        subjects.append(
            Explained(
                "lgbserver",
                name,
                rows,
                "FP64",
                lambda X, b=booster: b.predict(np.asarray(X, np.float64), raw_score=True),
                contributions,
            )
        )
    for name in ("logistic", "scaled-ridge", "forest", "boosted", "tree"):
        subjects.append(
            Explained("sklearnserver", name, SKLEARN[name][1], "FP64", _sklearn_raw(name))
        )
    from pypmml import Model as PMML

    iris_pmml = PMML.fromFile(str(pmml_samples["iris"] / "model.pmml"))
    diabetes_pmml = PMML.fromFile(str(pmml_samples["diabetes"] / "model.pmml"))
    probabilities = [f"probability({c})" for c in ("setosa", "versicolor", "virginica")]
    subjects.append(
        Explained(
            "pmmlserver",
            "iris",
            _iris,
            "FP64",
            lambda X: iris_pmml.predict(X)[probabilities].to_numpy(),
            link=_softmax,
        )
    )
    subjects.append(
        Explained(
            "pmmlserver",
            "diabetes",
            lambda: _diabetes()[["bmi"]],
            "FP64",
            lambda X: diabetes_pmml.predict(X)["predicted_progression"].to_numpy(),
        )
    )
    return subjects


# -- servers -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sklearn_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("explained-sklearn")
    for name, (estimator, _) in SKLEARN.items():
        (root / name).mkdir()
        joblib.dump(estimator, root / name / "model.joblib")
    return root


@pytest.fixture(scope="module")
def servers(framework_samples, sklearn_root: Path) -> Iterator[Callable[[str], ServerProcess]]:
    """runtime -> its server over every sample of its framework, started on first use."""
    roots = {
        "xgbserver": framework_samples("xgboost")["iris-json"].parent,
        "lgbserver": framework_samples("lightgbm")["iris"].parent,
        "pmmlserver": framework_samples("pmml")["iris"].parent,
        "sklearnserver": sklearn_root,
    }
    started: dict[str, ServerProcess] = {}

    def get(runtime: str) -> ServerProcess:
        if runtime not in started:
            server = ServerProcess(
                runtime, ["--model_name=unused", f"--model_dir={roots[runtime]}"]
            )
            started[runtime] = server.start(timeout=120)
        return started[runtime]

    yield get
    for server in started.values():
        server.stop()


@pytest.fixture(scope="module")
def subjects(framework_samples) -> dict[str, Explained]:
    return {s.id: s for s in _subjects(framework_samples)}


SUBJECT_IDS = [
    "xgbserver-iris-json",
    "xgbserver-breast-cancer",
    "xgbserver-diabetes",
    "lgbserver-iris",
    "lgbserver-breast-cancer",
    "sklearnserver-logistic",
    "sklearnserver-scaled-ridge",
    "sklearnserver-forest",
    "sklearnserver-boosted",
    "sklearnserver-tree",
    "pmmlserver-iris",
    "pmmlserver-diabetes",
]


def _explain_v1(server: ServerProcess, model: str, rows: pd.DataFrame) -> dict[str, Any]:
    import httpx

    reply = httpx.post(
        f"{server.http_url}/v1/models/{model}:explain",
        json={"instances": rows.to_numpy().tolist()},
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    return reply.json()


@pytest.mark.parametrize("subject_id", SUBJECT_IDS)
def test_contributions_add_up_to_the_raw_output_over_every_protocol(
    servers, subjects: dict[str, Explained], subject_id: str
) -> None:
    subject = subjects[subject_id]
    server = servers(subject.runtime)
    rows = subject.rows()
    meta = v2_metadata(server, subject.model)["parameters"]["explanations"]
    assert meta["supported"] is True, meta
    array = rows.to_numpy().astype(np.float32 if subject.datatype == "FP32" else np.float64)

    answers = {
        protocol: infer(server, subject.model, {"input-0": array}, protocol, ["contributions"])[
            "contributions"
        ]
        for protocol in PROTOCOLS
    }
    explanations = _explain_v1(server, subject.model, rows)["explanations"]
    assert len(explanations) == len(rows)
    assert {tuple(e["feature_names"]) for e in explanations} == {tuple(meta["feature_names"])}
    v1 = np.asarray(
        [
            np.concatenate([np.asarray(e["contributions"]), np.asarray(e["bias"])[..., None]], -1)
            for e in explanations
        ]
    )
    if "classes" in meta:
        assert all(e["classes"] == meta["classes"] for e in explanations)
    for protocol, blocks in answers.items():
        np.testing.assert_allclose(blocks, v1, rtol=1e-6, err_msg=protocol)

    sums = v1.sum(axis=-1)
    want = np.asarray(subject.raw(rows), dtype=np.float64).reshape(sums.shape)
    answered = sums if subject.link is None else subject.link(sums)
    np.testing.assert_allclose(answered, want, rtol=subject.rtol, atol=1e-9)
    if subject.reference is not None:
        np.testing.assert_allclose(v1, subject.reference(rows), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_pmml_categories_and_powers_add_up_to_the_predicted_value(
    servers, framework_samples, protocol: str
) -> None:
    """The hand-written regression: a number, a square and a category sent as text."""
    from pypmml import Model as PMML

    server = servers("pmmlserver")
    frame = pd.DataFrame(
        {
            "area": [100.0, 80.0, 60.5, 120.0],
            "age": [10.0, 30.0, 2.0, 0.0],
            "district": np.array(["north", "south", "centre", "north"], dtype=object),
        }
    )
    tensors = {name: frame[name].to_numpy() for name in frame}
    got = infer(server, "house", tensors, protocol, ["contributions", "price"])
    reference = PMML.fromFile(str(framework_samples("pmml")["house"] / "model.pmml"))
    want = reference.predict(frame)["predicted_price"].to_numpy()
    np.testing.assert_allclose(got["contributions"].sum(axis=1), want)
    np.testing.assert_allclose(got["price"], want)
    # The category column is the coefficient where it matches, else 0.
    np.testing.assert_allclose(got["contributions"][:, 2], [20.0, 0.0, 45.5, 20.0])


@pytest.mark.parametrize(
    ("runtime", "model", "reason"),
    [
        ("sklearnserver", "knn", "KNeighborsClassifier"),
        ("pmmlserver", "iris-tree", "TreeModel"),
    ],
)
def test_models_that_cannot_explain_say_why_with_a_501(
    servers, runtime: str, model: str, reason: str
) -> None:
    import httpx

    server = servers(runtime)
    meta = v2_metadata(server, model)
    explanations = meta["parameters"]["explanations"]
    assert explanations["supported"] is False and reason in explanations["reason"]
    assert "contributions" not in [o["name"] for o in meta["outputs"]]
    reply = httpx.post(
        f"{server.http_url}/v1/models/{model}:explain",
        json={"instances": [[5.1, 3.5, 1.4, 0.2]]},
        timeout=30,
    )
    assert reply.status_code == 501
    assert reason in reply.json()["error"] and model in reply.json()["error"]

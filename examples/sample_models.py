"""Build the sample models the README serves and the tests load.

Everything is trained here from data the frameworks ship (iris and friends),
so nothing is downloaded and no binary is committed. ``python
examples/sample_models.py OUT [--framework NAME ...]`` writes one folder per
framework under OUT (``sklearn`` only by default; ``all`` for every one).
scikit-learn's samples are here:

    OUT/sklearn/iris/model.joblib          LogisticRegression on iris (4 features)
    OUT/sklearn/iris-pipeline/model.pkl    Pipeline(ColumnTransformer) on a DataFrame
                                           with numeric and string columns

the other frameworks' in ``examples/samples/<module>.py``, each a
``write(out) -> {name: directory}`` that writes under ``out/<framework>/``.
"""

from __future__ import annotations

import argparse
import importlib
import pickle
from pathlib import Path

import joblib


def iris_logistic_regression():
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    return LogisticRegression(max_iter=1000).fit(X, y)


def iris_frame():
    """Iris as a DataFrame plus a string 'size' column derived from petal length."""
    import numpy as np
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True)
    X = frame.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    X["size"] = np.where(X["petal_length"] > 4.0, "large", "small")
    return X, frame.target


def iris_column_pipeline():
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    X, y = iris_frame()
    numeric = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    columns = ColumnTransformer(
        [("num", StandardScaler(), numeric), ("cat", OneHotEncoder(), ["size"])]
    )
    return Pipeline([("columns", columns), ("clf", LogisticRegression(max_iter=1000))]).fit(X, y)


#: framework -> module in examples/samples/ whose ``write(out)`` builds its samples.
FRAMEWORKS = {
    "xgboost": "samples.xgb",
    "lightgbm": "samples.lgb",
    "pmml": "samples.pmml",
    "paddle": "samples.paddle_inference",
    "onnx": "samples.onnx_models",
    "tensorflow": "samples.tf_models",
    "custom": "custom_model.train_iris",
}


def write_all(out: Path) -> dict[str, Path]:
    """Write scikit-learn's sample models under ``out``; return name -> model directory."""
    iris = out / "sklearn" / "iris"
    iris.mkdir(parents=True, exist_ok=True)
    joblib.dump(iris_logistic_regression(), iris / "model.joblib")
    pipeline = out / "sklearn" / "iris-pipeline"
    pipeline.mkdir(parents=True, exist_ok=True)
    with (pipeline / "model.pkl").open("wb") as f:
        pickle.dump(iris_column_pipeline(), f)
    return {"iris": iris, "iris-pipeline": pipeline}


def write(framework: str, out: Path) -> dict[str, Path]:
    """Write one framework's samples under ``out``; return name -> model directory."""
    if framework == "sklearn":
        return write_all(out)
    if framework not in FRAMEWORKS:
        raise ValueError(
            f"unknown framework {framework!r}; known: sklearn, {', '.join(FRAMEWORKS)}"
        )
    return importlib.import_module(FRAMEWORKS[framework]).write(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path, nargs="?", default=Path("build/models"))
    parser.add_argument(
        "--framework",
        action="append",
        choices=["all", "sklearn", *FRAMEWORKS],
        help="which samples to build (repeatable; default sklearn)",
    )
    args = parser.parse_args()
    chosen = args.framework or ["sklearn"]
    if "all" in chosen:
        chosen = ["sklearn", *FRAMEWORKS]
    for framework in chosen:
        for name, path in write(framework, args.out).items():
            print(f"{framework}/{name}: {path}")


if __name__ == "__main__":
    main()

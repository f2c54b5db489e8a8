"""Build the sample models the README serves and the tests load.

Everything is trained here from data the frameworks ship (iris and friends),
so nothing is downloaded and no binary is committed. ``python
examples/sample_models.py OUT [--framework NAME ...]`` writes one folder per
framework under OUT (``sklearn`` only by default; ``all`` for every one);
``--sample FRAMEWORK/NAME`` writes that one sample only (what ``make serve``
asks for). What each framework's generator imports is an extra of the
workspace's pyproject.toml, ``samples-<framework>`` (``samples-torch`` too
for onnx/iris-mlp). scikit-learn's samples are here:

    OUT/sklearn/iris/model.joblib          LogisticRegression on iris (4 features)
    OUT/sklearn/iris-pipeline/model.pkl    Pipeline(ColumnTransformer) on a DataFrame
                                           with numeric and string columns

the other frameworks' in ``examples/samples/<module>.py``, each listing its
samples in ``NAMES`` and a ``write(out, only=None) -> {name: directory}``
that writes all of them (or ``only`` those) under ``out/<framework>/``.
"""

from __future__ import annotations

import argparse
import importlib
import pickle
from collections.abc import Collection
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
    "mlflow": "samples.mlflow_models",
    "torch": "samples.torch_models",
    "tensorflow": "samples.tf_models",
    "huggingface": "samples.huggingface",
    "custom": "custom_model.train_iris",
}


SKLEARN_NAMES = ("iris", "iris-pipeline")


def _write_iris(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    joblib.dump(iris_logistic_regression(), directory / "model.joblib")
    return directory


def _write_iris_pipeline(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "model.pkl").open("wb") as f:
        pickle.dump(iris_column_pipeline(), f)
    return directory


def write_all(out: Path, only: Collection[str] | None = None) -> dict[str, Path]:
    """Write scikit-learn's sample models (or ``only`` those) under ``out``.

    Returns name -> model directory.
    """
    from samples import chosen

    writers = {"iris": _write_iris, "iris-pipeline": _write_iris_pipeline}
    return {name: writers[name](out / "sklearn" / name) for name in chosen(SKLEARN_NAMES, only)}


def write(framework: str, out: Path, only: Collection[str] | None = None) -> dict[str, Path]:
    """Write one framework's samples (or ``only`` those) under ``out``; name -> directory."""
    if framework == "sklearn":
        return write_all(out, only)
    if framework not in FRAMEWORKS:
        raise ValueError(
            f"unknown framework {framework!r}; known: sklearn, {', '.join(FRAMEWORKS)}"
        )
    return importlib.import_module(FRAMEWORKS[framework]).write(out, only)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path, nargs="?", default=Path("build/models"))
    parser.add_argument(
        "--framework",
        action="append",
        choices=["all", "sklearn", *FRAMEWORKS],
        help="which frameworks' samples to build (repeatable; default sklearn)",
    )
    parser.add_argument(
        "--sample",
        action="append",
        metavar="FRAMEWORK/NAME",
        help="build only this sample, e.g. onnx/iris-pipeline (repeatable)",
    )
    args = parser.parse_args()
    plan: dict[str, set[str] | None] = {}
    for sample in args.sample or []:
        framework, _, name = sample.partition("/")
        if not name:
            parser.error(f"--sample {sample}: expected FRAMEWORK/NAME, e.g. sklearn/iris")
        names = plan.setdefault(framework, set())
        if names is not None:
            names.add(name)
    frameworks = args.framework or ([] if args.sample else ["sklearn"])
    if "all" in frameworks:
        frameworks = ["sklearn", *FRAMEWORKS]
    for framework in frameworks:
        plan[framework] = None
    for framework, only in plan.items():
        try:
            written = write(framework, args.out, only)
        except ValueError as exc:
            parser.error(f"{framework}: {exc}")
        for name, path in written.items():
            print(f"{framework}/{name}: {path}")


if __name__ == "__main__":
    main()

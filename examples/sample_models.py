"""Build the sample models the README serves and the tests load.

Everything is trained here from data scikit-learn ships (iris), so nothing is
downloaded and no binary is committed. ``python examples/sample_models.py
OUT`` writes:

    OUT/sklearn/iris/model.joblib          LogisticRegression on iris (4 features)
    OUT/sklearn/iris-pipeline/model.pkl    Pipeline(ColumnTransformer) on a DataFrame
                                           with numeric and string columns
"""

from __future__ import annotations

import argparse
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


def write_all(out: Path) -> dict[str, Path]:
    """Write every sample model under ``out``; return name -> model directory."""
    iris = out / "sklearn" / "iris"
    iris.mkdir(parents=True, exist_ok=True)
    joblib.dump(iris_logistic_regression(), iris / "model.joblib")
    pipeline = out / "sklearn" / "iris-pipeline"
    pipeline.mkdir(parents=True, exist_ok=True)
    with (pipeline / "model.pkl").open("wb") as f:
        pickle.dump(iris_column_pipeline(), f)
    return {"iris": iris, "iris-pipeline": pipeline}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path, nargs="?", default=Path("build/models"))
    args = parser.parse_args()
    for name, path in write_all(args.out).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()

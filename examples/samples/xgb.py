"""XGBoost samples, trained on DataFrames so the boosters carry their feature names::

    OUT/xgboost/iris-json/model.json        multi:softprob on iris (3 classes), JSON
    OUT/xgboost/iris-ubj/model.ubj          the same booster as UBJSON
    OUT/xgboost/iris-bst/model.bst          the same booster as ``.bst`` (XGBoost 3 writes
                                            UBJSON there: KServe's historical file name)
    OUT/xgboost/breast-cancer/model.json    binary:logistic on breast cancer (30 features)
    OUT/xgboost/diabetes/model.json         reg:squarederror on diabetes (10 features)

One thread and fixed seeds make every file identical from run to run.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from . import tables

#: Small boosters: the samples exist to be served, not to win benchmarks.
PARAMS: dict[str, Any] = {"n_estimators": 20, "max_depth": 3, "random_state": 0, "n_jobs": 1}


def _save(booster: Any, directory: Path, filename: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # XGBoost warns that ".bst" is not an extension it knows and writes UBJSON,
        # which is exactly what the iris-bst sample is meant to hold.
        warnings.simplefilter("ignore", UserWarning)
        booster.save_model(str(directory / filename))
    return directory


def write(out: Path) -> dict[str, Path]:
    """Train and save the samples under ``out/xgboost``; return name -> model directory."""
    import xgboost as xgb

    root = out / "xgboost"
    X, y = tables.iris()
    iris = xgb.XGBClassifier(**PARAMS).fit(X, y).get_booster()
    X, y = tables.breast_cancer()
    cancer = xgb.XGBClassifier(**PARAMS).fit(X, y).get_booster()
    X, y = tables.diabetes()
    diabetes = xgb.XGBRegressor(**PARAMS).fit(X, y).get_booster()
    return {
        "iris-json": _save(iris, root / "iris-json", "model.json"),
        "iris-ubj": _save(iris, root / "iris-ubj", "model.ubj"),
        "iris-bst": _save(iris, root / "iris-bst", "model.bst"),
        "breast-cancer": _save(cancer, root / "breast-cancer", "model.json"),
        "diabetes": _save(diabetes, root / "diabetes", "model.json"),
    }

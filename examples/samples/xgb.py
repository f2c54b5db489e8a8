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
from collections.abc import Collection
from pathlib import Path
from typing import Any

from . import chosen, tables

#: Small boosters: the samples exist to be served, not to win benchmarks.
PARAMS: dict[str, Any] = {"n_estimators": 20, "max_depth": 3, "random_state": 0, "n_jobs": 1}
#: The iris booster's samples: one booster, three files.
IRIS_FILES = {"iris-json": "model.json", "iris-ubj": "model.ubj", "iris-bst": "model.bst"}
NAMES = (*IRIS_FILES, "breast-cancer", "diabetes")


def _save(booster: Any, directory: Path, filename: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # XGBoost warns that ".bst" is not an extension it knows and writes UBJSON,
        # which is exactly what the iris-bst sample is meant to hold.
        warnings.simplefilter("ignore", UserWarning)
        booster.save_model(str(directory / filename))
    return directory


def write(out: Path, only: Collection[str] | None = None) -> dict[str, Path]:
    """Train and save the samples (or ``only`` those) under ``out/xgboost``.

    Returns name -> model directory.
    """
    import xgboost as xgb

    root = out / "xgboost"
    wanted = chosen(NAMES, only)
    written: dict[str, Path] = {}
    if any(name in IRIS_FILES for name in wanted):
        X, y = tables.iris()
        iris = xgb.XGBClassifier(**PARAMS).fit(X, y).get_booster()
        for name, filename in IRIS_FILES.items():
            if name in wanted:
                written[name] = _save(iris, root / name, filename)
    if "breast-cancer" in wanted:
        X, y = tables.breast_cancer()
        cancer = xgb.XGBClassifier(**PARAMS).fit(X, y).get_booster()
        written["breast-cancer"] = _save(cancer, root / "breast-cancer", "model.json")
    if "diabetes" in wanted:
        X, y = tables.diabetes()
        diabetes = xgb.XGBRegressor(**PARAMS).fit(X, y).get_booster()
        written["diabetes"] = _save(diabetes, root / "diabetes", "model.json")
    return written

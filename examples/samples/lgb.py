"""LightGBM samples, trained on DataFrames so the boosters carry their feature names::

    OUT/lightgbm/iris/model.bst                multiclass on iris (3 classes); the model
                                               text under KServe's file name
    OUT/lightgbm/breast-cancer/model.txt       binary on breast cancer (30 features)
    OUT/lightgbm/iris-categorical/model.txt    multiclass on iris with petal length replaced
                                               by a pandas categorical ``petal_size``
                                               (small / medium / large)

The categorical sample is the one that needs the runtime to map strings to
the training categories: LightGBM stores them (``pandas_categorical``, in
pandas' sorted order: large, medium, small) at the end of the model text and
splits on their codes. One thread, fixed seeds and ``deterministic`` make
every file identical from run to run.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

from . import chosen, tables

#: Small boosters on small tables: leaves and groups sized for 150-569 rows.
PARAMS: dict[str, Any] = {
    "num_leaves": 7,
    "min_data_in_leaf": 5,
    "min_data_per_group": 5,
    "cat_smooth": 1,
    "seed": 0,
    "deterministic": True,
    "num_threads": 1,
    "verbosity": -1,
}
ROUNDS = 20
NAMES = ("iris", "breast-cancer", "iris-categorical")


def iris_categorical() -> tuple[Any, Any]:
    """Iris with ``petal_length`` binned into a string category ``petal_size``."""
    import pandas as pd

    X, y = tables.iris()
    sizes = pd.cut(X["petal_length"], [0.0, 2.5, 5.0, 10.0], labels=["small", "medium", "large"])
    frame = X.drop(columns=["petal_length"])
    frame["petal_size"] = pd.Categorical(sizes.astype(str))
    return frame, y


def _train(objective: dict[str, Any], X: Any, y: Any, directory: Path, filename: str) -> Path:
    import lightgbm as lgb

    booster = lgb.train({**PARAMS, **objective}, lgb.Dataset(X, y), num_boost_round=ROUNDS)
    directory.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(directory / filename))
    return directory


def write(out: Path, only: Collection[str] | None = None) -> dict[str, Path]:
    """Train and save the samples (or ``only`` those) under ``out/lightgbm``.

    Returns name -> model directory.
    """
    root = out / "lightgbm"
    multiclass = {"objective": "multiclass", "num_class": 3}
    samples = {
        "iris": lambda: _train(multiclass, *tables.iris(), root / "iris", "model.bst"),
        "breast-cancer": lambda: _train(
            {"objective": "binary"}, *tables.breast_cancer(), root / "breast-cancer", "model.txt"
        ),
        "iris-categorical": lambda: _train(
            multiclass, *iris_categorical(), root / "iris-categorical", "model.txt"
        ),
    }
    return {name: samples[name]() for name in chosen(NAMES, only)}

"""MLflow samples, each a directory as ``mlflow.<flavor>.save_model`` writes it::

    OUT/mlflow/iris/              sklearn LogisticRegression on iris, MLflow 3's default
                                  serialization (skops); named double columns in, labels out
    OUT/mlflow/iris-pickle/       the same estimator saved as a pickle
    OUT/mlflow/iris-xgboost/      XGBoost Booster (multi:softprob): class probabilities [N, 3]
    OUT/mlflow/iris-lightgbm/     LightGBM LGBMClassifier (sklearn API): labels
    OUT/mlflow/iris-mixed/        sklearn Pipeline(ColumnTransformer) over four double columns
                                  and one string column ``size``
    OUT/mlflow/iris-params/       a PythonModel (no type hints) answering a DataFrame of a
                                  double ``score`` and a string ``band``, with signature params
                                  ``scale`` (double) and ``threshold`` (double)
    OUT/mlflow/word-lengths/      a PythonModel with type hints (list[str] -> list[int])

Every model is trained here on data scikit-learn ships, with signatures
inferred by MLflow from the training data. The requirements each records are
the flavor's own defaults (``get_default_pip_requirements``), so saving does
not start MLflow's requirement-inference subprocess and every directory is
the same from run to run except its ids and times. The PythonModels are
pickled by value (cloudpickle), so the server needs nothing from examples/.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

from . import chosen, tables

# Saving a model must not reach a tracking server or MLflow's telemetry.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

#: The signature params of the iris-params sample, with their defaults.
PARAMS = {"scale": 1.0, "threshold": 0.5}


def iris_mixed_frame() -> tuple[Any, Any]:
    """Iris with a string ``size`` column derived from petal length (sklearn's sample too)."""
    import sample_models

    return sample_models.iris_frame()


def sklearn_iris() -> tuple[Any, Any, Any]:
    """The iris LogisticRegression, fitted on the named columns, with its table."""
    from sklearn.linear_model import LogisticRegression

    X, y = tables.iris()
    return LogisticRegression(max_iter=1000).fit(X, y), X, y


def save_iris(directory: Path) -> Path:
    """The ``iris`` sample alone (the benchmark serves it with MLServer's MLflow runtime too)."""
    estimator, X, _ = sklearn_iris()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return _save_sklearn(estimator, X, directory)


def _save_sklearn(estimator: Any, X: Any, directory: Path, serialization: str = "skops") -> Path:
    import mlflow.sklearn
    from mlflow.models import infer_signature

    mlflow.sklearn.save_model(
        estimator,
        str(directory),
        serialization_format=serialization,
        signature=infer_signature(X, estimator.predict(X)),
        pip_requirements=mlflow.sklearn.get_default_pip_requirements(
            include_cloudpickle=serialization == "cloudpickle",
            include_skops=serialization == "skops",
        ),
    )
    return directory


def _save_xgboost(X: Any, y: Any, directory: Path) -> Path:
    import mlflow.xgboost
    import xgboost as xgb
    from mlflow.models import infer_signature

    params = {"objective": "multi:softprob", "num_class": 3, "max_depth": 3, "nthread": 1}
    booster = xgb.train(params, xgb.DMatrix(X, label=y), num_boost_round=10)
    probabilities = booster.predict(xgb.DMatrix(X))
    mlflow.xgboost.save_model(
        booster,
        str(directory),
        signature=infer_signature(X, probabilities),
        pip_requirements=mlflow.xgboost.get_default_pip_requirements(),
    )
    return directory


def _save_lightgbm(X: Any, y: Any, directory: Path) -> Path:
    import lightgbm as lgb
    import mlflow.lightgbm
    from mlflow.models import infer_signature

    model = lgb.LGBMClassifier(n_estimators=20, num_leaves=7, n_jobs=1, verbose=-1).fit(X, y)
    mlflow.lightgbm.save_model(
        model,
        str(directory),
        signature=infer_signature(X, model.predict(X)),
        pip_requirements=mlflow.lightgbm.get_default_pip_requirements(include_cloudpickle=True),
    )
    return directory


def _python_models() -> tuple[type, type]:
    """The two PythonModel classes (defined here, where mlflow is importable)."""
    import mlflow.pyfunc
    import pandas as pd

    class IrisBands(mlflow.pyfunc.PythonModel):
        """A linear score per row, scaled by ``scale``, banded at ``threshold``."""

        def __init__(self, weights: np.ndarray) -> None:
            self.weights = weights

        def predict(self, context, model_input, params=None):
            params = {**PARAMS, **(params or {})}
            score = model_input.to_numpy(dtype=np.float64) @ self.weights * params["scale"]
            band = np.where(score > params["threshold"], "high", "low")
            return pd.DataFrame({"score": score, "band": band.astype(object)})

    class WordLengths(mlflow.pyfunc.PythonModel):
        """The length of each text in words: a signature from the type hints alone."""

        def predict(self, model_input: list[str], params=None) -> list[int]:
            return [len(text.split()) for text in model_input]

    return IrisBands, WordLengths


def _save_python_models(root: Path) -> dict[str, Path]:
    import cloudpickle
    import mlflow.pyfunc
    from mlflow.models import infer_signature

    # Pickle the classes by value: the server imports nothing from examples/.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    IrisBands, WordLengths = _python_models()
    X, _ = tables.iris()
    weights = np.linspace(-0.2, 0.3, X.shape[1])
    bands = IrisBands(weights)
    requirements = mlflow.pyfunc.get_default_pip_requirements()
    mlflow.pyfunc.save_model(
        str(root / "iris-params"),
        python_model=bands,
        signature=infer_signature(X, bands.predict(None, X), params=PARAMS),
        pip_requirements=requirements,
    )
    mlflow.pyfunc.save_model(
        str(root / "word-lengths"),
        python_model=WordLengths(),
        pip_requirements=requirements,
    )
    return {"iris-params": root / "iris-params", "word-lengths": root / "word-lengths"}


NAMES = (
    "iris",
    "iris-pickle",
    "iris-xgboost",
    "iris-lightgbm",
    "iris-mixed",
    "iris-params",
    "word-lengths",
)


def write(out: Path, only: Collection[str] | None = None) -> dict[str, Path]:
    """Save the MLflow samples (or ``only`` those) under ``out/mlflow``; name -> directory."""
    # MLflow's advice while saving (add type hints, an input example) is for its users,
    # not for these samples: one PythonModel has no type hints on purpose.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return _write(out, chosen(NAMES, only))


def _write(out: Path, wanted: list[str]) -> dict[str, Path]:
    import shutil

    root = out / "mlflow"
    root.mkdir(parents=True, exist_ok=True)
    for name in wanted:
        if (root / name).exists():
            shutil.rmtree(root / name)  # save_model refuses an existing directory
    found: dict[str, Path] = {}
    if {"iris", "iris-pickle", "iris-xgboost", "iris-lightgbm"} & set(wanted):
        estimator, X, y = sklearn_iris()
        if "iris" in wanted:
            found["iris"] = _save_sklearn(estimator, X, root / "iris")
        if "iris-pickle" in wanted:
            found["iris-pickle"] = _save_sklearn(estimator, X, root / "iris-pickle", "pickle")
        if "iris-xgboost" in wanted:
            found["iris-xgboost"] = _save_xgboost(X, y, root / "iris-xgboost")
        if "iris-lightgbm" in wanted:
            found["iris-lightgbm"] = _save_lightgbm(X, y, root / "iris-lightgbm")
    if "iris-mixed" in wanted:
        import sample_models

        X_mixed, _ = iris_mixed_frame()
        found["iris-mixed"] = _save_sklearn(
            sample_models.iris_column_pipeline(), X_mixed, root / "iris-mixed"
        )
    if {"iris-params", "word-lengths"} & set(wanted):
        found.update({k: v for k, v in _save_python_models(root).items() if k in wanted})
    return {name: found[name] for name in wanted}

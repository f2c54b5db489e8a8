"""scikit-learn runtime: an estimator or Pipeline from .skops, .joblib, .pkl or .pickle.

A pickle (``.pkl``, ``.pickle``, ``.joblib``) runs whatever code it names
while it loads: serving one means trusting whoever wrote it. A ``.skops``
file (skops' format, which MLflow 3 writes for scikit-learn by default) is
loaded without running code: only types on an explicit list are rebuilt,
skops' defaults (builtins, numpy, scikit-learn's estimators) and those
``--trusted_types`` adds; a file holding any other type is refused at
startup with their names.

Outputs ``predict`` (the default) and ``predict_proba`` where the estimator
has it; ``--predict_proba`` (KServe's ``PREDICT_PROBA`` environment
variable) makes probabilities the default. Linear and tree models also offer
``contributions`` (and ``:explain``), from what scikit-learn exposes
(``explain``). Metadata comes from the fitted estimator: feature count and
names, class labels and output datatypes.
"""

from __future__ import annotations

import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from modelserver import Model, ModelLoadError, Settings, datatype_of, setting, tabular, tensor_spec

from . import explain

EXTENSIONS = (".joblib", ".pkl", ".pickle", ".skops")
SKOPS = ".skops"

# A model fitted on a DataFrame and called with a plain array is fine; the
# warning would be logged on every request.
warnings.filterwarnings("ignore", message="X does not have valid feature names")


def _categorical_string_columns(columns: Any) -> set[str]:
    """Columns a ColumnTransformer encodes from string categories: BYTES inputs."""
    found: set[str] = set()
    for _name, transformer, cols in columns.transformers_:
        categories = getattr(transformer, "categories_", None)
        if categories is None and hasattr(transformer, "steps"):
            categories = getattr(transformer.steps[-1][1], "categories_", None)
        if categories is None or not isinstance(cols, list | tuple):
            continue
        for col, cats in zip(cols, categories, strict=False):
            if np.asarray(cats).dtype.kind in "OUS":
                found.add(str(col))
    return found


def read_skops(path: Path, trusted: list[str]) -> Any:
    """A .skops file, if every type it holds is trusted; else an error naming the others."""
    import skops.io as sio

    try:
        found = sio.get_untrusted_types(file=path)
    except Exception as exc:
        raise ModelLoadError(
            f"Cannot read {path} as a skops file: {type(exc).__name__}: {exc}"
        ) from exc
    refused = [name for name in found if name not in trusted]
    if refused:
        raise ModelLoadError(
            f"{path.name} holds types that are not trusted: {', '.join(refused)}. skops "
            "rebuilds only trusted types; if you trust whoever wrote this file, start with "
            f"--trusted_types {','.join(refused)}"
        )
    try:
        return sio.load(path, trusted=found)
    except Exception as exc:
        raise ModelLoadError(f"Cannot read {path}: {type(exc).__name__}: {exc}") from exc


@dataclass
class SKLearnSettings(Settings):
    """sklearnserver's flags: the shared ones, KServe's PREDICT_PROBA and the trusted types."""

    predict_proba: bool = setting(
        False,
        "answer predict_proba instead of predict when a request names no output",
        env="PREDICT_PROBA",
    )
    trusted_types: str = setting(
        "",
        "types a .skops file may hold beyond skops' defaults, comma-separated full names "
        "(as the startup error lists them)",
    )

    def trusted(self) -> list[str]:
        return [name.strip() for name in self.trusted_types.split(",") if name.strip()]


class SKLearnModel(Model):
    """Serves one fitted scikit-learn estimator."""

    extensions = EXTENSIONS
    platform = "sklearn"
    server_name = "sklearnserver"
    settings_class = SKLearnSettings
    settings: SKLearnSettings

    def load(self) -> None:
        path = self.model_file()
        self.path = path
        self.estimator = self._read(path)
        if not hasattr(self.estimator, "predict"):
            raise ModelLoadError(
                f"{path.name} holds a {type(self.estimator).__name__}, which has no predict method"
            )
        self.n_features: int | None = getattr(self.estimator, "n_features_in_", None)
        names = getattr(self.estimator, "feature_names_in_", None)
        self.feature_names: list[str] | None = (
            [str(n) for n in names] if names is not None else None
        )
        self.classes = getattr(self.estimator, "classes_", None)
        label_type = "FP64"
        if self.classes is not None:
            label_type = datatype_of(np.asarray(self.classes).dtype)
        self.outputs.add("predict", label_type, [-1], self._predict)
        if hasattr(self.estimator, "predict_proba"):
            n_classes = len(self.classes) if self.classes is not None else -1
            self.outputs.add(
                "predict_proba", "FP64", [-1, n_classes], self._predict_proba, default=False
            )
            if self.settings.predict_proba:
                self.outputs.set_defaults(["predict_proba"])
        nthread = self.settings.nthread
        if nthread > 0 and hasattr(self.estimator, "n_jobs"):
            self.estimator.n_jobs = nthread
        self._declare_explanations()

    def _declare_explanations(self) -> None:
        found = explain.attribution(self.estimator, self.n_features)
        if isinstance(found, str):
            self.explain_unsupported = found
            return
        self.attribution = found
        n = self.n_features or 0
        self.explains(
            self._contributions,
            self.feature_names or [f"x{i}" for i in range(n)],
            sums_to=found.sums_to,
            method=found.method,
            classes=found.classes,
        )

    def _read(self, path: Path) -> Any:
        if path.suffix.lower() == SKOPS:
            return read_skops(path, self.settings.trusted())
        try:
            if path.suffix.lower() == ".joblib":
                return joblib.load(path)
            with path.open("rb") as f:
                return pickle.load(f)
        except Exception as exc:
            raise ModelLoadError(f"Cannot read {path}: {type(exc).__name__}: {exc}") from exc

    def _rows(self, inputs: Any) -> Any:
        return tabular.check_feature_count(self.name, inputs, self.n_features)

    def _predict(self, inputs: Any) -> Any:
        return self.estimator.predict(self._rows(inputs))

    def _predict_proba(self, inputs: Any) -> Any:
        return self.estimator.predict_proba(self._rows(inputs))

    def predict(self, inputs: Any) -> Any:
        return self._predict(inputs)

    def _contributions(self, inputs: Any) -> Any:
        columns = tabular.align_columns(self.name, inputs, self.feature_names)
        rows = np.asarray(self._rows(columns), dtype=np.float64)
        return self.attribution.contributions(rows)

    # -- metadata ------------------------------------------------------------

    def inputs_metadata(self) -> list[dict[str, Any]]:
        n = self.n_features if self.n_features is not None else -1
        columns = self._column_transformer()
        if self.feature_names is not None and columns is not None:
            text = _categorical_string_columns(columns)
            return [
                tensor_spec(name, "BYTES" if name in text else "FP64", [-1])
                for name in self.feature_names
            ]
        return [tensor_spec("input-0", "FP64", [-1, n])]

    def _column_transformer(self) -> Any:
        """The leading ColumnTransformer, whose columns are named inputs (a DataFrame)."""
        steps = getattr(self.estimator, "steps", None)
        first = steps[0][1] if steps else self.estimator
        return first if hasattr(first, "transformers_") else None

    def metadata_parameters(self) -> dict[str, Any]:
        params: dict[str, Any] = {"estimator": type(self.estimator).__name__}
        if self.n_features is not None:
            params["n_features"] = self.n_features
        if self.feature_names is not None:
            params["feature_names"] = self.feature_names
        if self.classes is not None:
            params["classes"] = np.asarray(self.classes).tolist()
        return params

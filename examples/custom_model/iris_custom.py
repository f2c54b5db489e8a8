"""A custom model on the modelserver core: KServe's preprocess -> predict -> postprocess.

This is what a KServe user writes when no packaged runtime fits: a class
that loads its own artefact and owns the three steps. Here the artefact is a
JSON file (standardisation statistics and softmax-regression weights written
by ``train_iris.py``), so the server needs nothing but numpy:

* ``preprocess(request)``: per request, turn whatever the client sent (one
  ``[N, 4]`` tensor, or one tensor per named feature) into standardised
  float64 rows, refusing anything else with a 400 that says why;
* ``predict(rows)``: the model's maths (softmax of ``rows @ W + b``);
* ``postprocess(probabilities)``: the named outputs clients see, ``class``
  (BYTES class names) and ``probabilities`` (FP64, one column per class).

The core calls ``preprocess`` once per request (before any batching, so a
bad request fails alone with a 400) and ``predict`` + ``postprocess`` once
per predict call (per batch when adaptive batching is on); ``load`` declares
what postprocess returns in the model's output table.

Serve it with the core's CLI (``python -m modelserver --model_class
iris_custom:IrisModel ...`` with this folder on ``PYTHONPATH``), or run this
file: its ``__main__`` block is the whole server (see README.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from modelserver import (
    InferRequest,
    InvalidInput,
    Model,
    ModelLoadError,
    Tensor,
    as_column,
    run,
    tensor_spec,
)

#: What the artefact must hold: F feature names, C class names, the
#: standardisation (mean and scale, F each) and the linear layer (weights F x C, bias C).
ARTEFACT_FIELDS = ("feature_names", "class_names", "mean", "scale", "weights", "bias")


def _read_artefact(path: Path) -> dict[str, Any]:
    """The artefact as a dict, or a ModelLoadError naming the file and what is wrong."""
    try:
        artefact = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelLoadError(f"Cannot read {path}: not a JSON model artefact ({exc})") from exc
    if not isinstance(artefact, dict):
        raise ModelLoadError(f"{path} holds a JSON {type(artefact).__name__}, not an object")
    missing = [key for key in ARTEFACT_FIELDS if key not in artefact]
    if missing:
        raise ModelLoadError(f"{path} is missing {', '.join(missing)}")
    return artefact


def _matrix(path: Path, artefact: dict[str, Any], key: str, shape: tuple[int, ...]) -> np.ndarray:
    """One numeric field of the artefact as float64 of exactly ``shape``."""
    try:
        value = np.asarray(artefact[key], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"{path}: '{key}' is not numeric ({exc})") from exc
    if value.shape != shape:
        raise ModelLoadError(f"{path}: '{key}' has shape {list(value.shape)}, needs {list(shape)}")
    if not np.isfinite(value).all():
        raise ModelLoadError(f"{path}: '{key}' holds NaN or infinite values")
    return value


def _column(tensor: Tensor, model: str) -> np.ndarray:
    """One named feature's values: shape [N] or [N, 1], numeric."""
    return _numeric(tensor, as_column(tensor), model)


def _numeric(tensor: Tensor, data: np.ndarray, model: str) -> np.ndarray:
    if data.dtype.kind not in "fiu":
        raise InvalidInput(
            f"Model '{model}' input '{tensor.name}' must be numbers (FP64, FP32 or an integer "
            f"type), got {tensor.datatype}"
        )
    return data


class IrisModel(Model):
    """Iris species from four measurements, with its own pre- and post-processing."""

    extensions = (".json",)
    platform = "custom"

    def load(self) -> None:
        path = self.model_file()
        artefact = _read_artefact(path)
        self.path = path
        self.feature_names = [str(n) for n in artefact["feature_names"]]
        # An object array, so indexing it gives BYTES class names directly.
        self.class_names = np.asarray([str(n) for n in artefact["class_names"]], dtype=object)
        f, c = len(self.feature_names), len(self.class_names)
        if f < 1 or c < 2:
            raise ModelLoadError(f"{path}: needs at least one feature and two classes")
        self.mean = _matrix(path, artefact, "mean", (f,))
        self.scale = _matrix(path, artefact, "scale", (f,))
        if (self.scale <= 0).any():
            raise ModelLoadError(f"{path}: 'scale' must be positive")
        self.weights = _matrix(path, artefact, "weights", (f, c))
        self.bias = _matrix(path, artefact, "bias", (c,))
        # postprocess's outputs: each selectable, both returned by default, both
        # computed in one predict + postprocess pass per request (or per batch).
        self.outputs.add("class", "BYTES", [-1])
        self.outputs.add("probabilities", "FP64", [-1, c])

    # -- the three steps (KServe's Model.preprocess / predict / postprocess) --

    def preprocess(self, request: InferRequest) -> np.ndarray:
        """Standardised float64 rows [N, F] from one [N, F] tensor or one tensor per feature."""
        tensors = request.inputs
        if len(tensors) == 1 and tensors[0].name not in self.feature_names:
            rows = self._rows(tensors[0])
        else:
            rows = self._columns(tensors)
        if not np.isfinite(rows).all():
            raise InvalidInput(f"Model '{self.name}' needs finite numbers; got NaN or infinity")
        return (rows - self.mean) / self.scale

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """Class probabilities [N, C]: softmax of the linear scores, computed stably."""
        scores = rows @ self.weights + self.bias
        scores -= scores.max(axis=1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=1, keepdims=True)
        return scores

    def postprocess(self, probabilities: np.ndarray) -> dict[str, np.ndarray]:
        """The named outputs: the most likely class's name, and every class's probability."""
        return {
            "class": self.class_names[probabilities.argmax(axis=1)],
            "probabilities": probabilities,
        }

    def _rows(self, tensor: Tensor) -> np.ndarray:
        data = _numeric(tensor, tensor.data, self.name)
        if data.ndim == 1:
            data = data.reshape(1, -1)  # one example without its batch dimension
        n = len(self.feature_names)
        if data.ndim != 2 or data.shape[1] != n:
            raise InvalidInput(
                f"Model '{self.name}' expects {n} features per row "
                f"({', '.join(self.feature_names)}), shape [N, {n}]; got shape {list(data.shape)}"
            )
        return data.astype(np.float64, copy=False)

    def _columns(self, tensors: list[Tensor]) -> np.ndarray:
        by_name = {t.name: t for t in tensors}
        unknown = [name for name in by_name if name not in self.feature_names]
        missing = [name for name in self.feature_names if name not in by_name]
        if unknown or missing:
            raise InvalidInput(
                f"Model '{self.name}' takes one [N, {len(self.feature_names)}] tensor or one "
                f"tensor per feature ({', '.join(self.feature_names)})"
                + (f"; unknown: {', '.join(unknown)}" if unknown else "")
                + (f"; missing: {', '.join(missing)}" if missing else "")
            )
        columns = {name: _column(by_name[name], self.name) for name in self.feature_names}
        if len({len(column) for column in columns.values()}) > 1:
            raise InvalidInput(
                f"Model '{self.name}' features have different row counts: "
                + ", ".join(f"{name}={len(column)}" for name, column in columns.items())
            )
        return np.column_stack(list(columns.values())).astype(np.float64, copy=False)

    # -- metadata --------------------------------------------------------------

    def inputs_metadata(self) -> list[dict[str, Any]]:
        return [tensor_spec("features", "FP64", [-1, len(self.feature_names)])]

    def metadata_parameters(self) -> dict[str, Any]:
        return {
            "artefact": self.path.name,
            "feature_names": self.feature_names,
            "class_names": self.class_names.tolist(),
        }


if __name__ == "__main__":
    # The whole server, like KServe's ``ModelServer().start([model])``: the
    # core parses the usual flags (--model_name, --model_dir, ports...).
    sys.exit(run(IrisModel, prog="iris-custom"))

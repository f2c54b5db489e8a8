"""Checks and conversions shared by the runtimes of table models (trees, sklearn).

A table model takes rows of features: a 2-D array, or a DataFrame of named
columns. Its runtimes all need the same three things, kept here so each
runtime stays a loader and a predict: reject a wrong feature count with a
clear 400 before the framework gives a cryptic error, put a DataFrame's
columns in the order the model was trained on, and derive class labels from
probabilities.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import InvalidInput
from .outputs import Outputs

#: numpy kinds a tree or linear model takes as features: bool, integers, floats.
NUMERIC_KINDS = "biuf"


def is_frame(inputs: Any) -> bool:
    """True for a pandas DataFrame (without importing pandas)."""
    return hasattr(inputs, "columns") and hasattr(inputs, "iloc")


def check_feature_count(model: str, inputs: Any, expected: int | None) -> Any:
    """``inputs`` as rows of ``expected`` features; 400 when they are not (None: unknown).

    N single values (shape [N], a v1 list of numbers) are N rows of a
    one-feature model, and become [N, 1] here, where the feature count is
    known; for a model of more features they are a 400 that says so.
    """
    if not expected or expected < 1:
        return inputs
    shape = getattr(inputs, "shape", None)
    if shape is None:
        return inputs
    if len(shape) == 1 and expected == 1:
        return inputs.reshape(-1, 1)
    if len(shape) != 2:
        hint = "; a list of single values is one value per row" if len(shape) == 1 else ""
        raise InvalidInput(
            f"Model '{model}' expects rows of {expected} features (shape [N, {expected}]), "
            f"got shape {list(shape)}{hint}"
        )
    if shape[1] != expected:
        raise InvalidInput(f"Model '{model}' expects {expected} features per row, got {shape[1]}")
    return inputs


def align_columns(
    model: str, frame: Any, names: Sequence[str] | None, fill_missing: bool = False
) -> Any:
    """The DataFrame's columns in the model's feature order; 400 when some are missing.

    A frame whose columns are not the model's names at all (``input-0``...) is
    taken positionally, the way an array would be. ``fill_missing``: the
    model scores missing values, so an absent feature is a column of NaN (as
    KServe builds its DataFrame) instead of a 400, unless the request also
    has columns the model does not know (a misspelt name, most likely).
    """
    if not names or not is_frame(frame):
        return frame
    columns = [str(c) for c in frame.columns]
    if columns == list(names):
        return frame
    present = set(columns)
    if not present & set(names):
        return frame
    missing = [n for n in names if n not in present]
    unknown = [c for c in columns if c not in set(names)]
    if missing and (unknown or not fill_missing):
        extra = f" (unknown: {', '.join(unknown)})" if unknown else ""
        raise InvalidInput(
            f"Model '{model}' needs feature {', '.join(repr(n) for n in missing)}; "
            f"got {', '.join(columns)}{extra}"
        )
    if missing:
        return frame.reindex(columns=list(names))
    return frame[list(names)]


def labels_from_probabilities(probabilities: Any, classes: Sequence[Any] | None = None) -> Any:
    """Class labels: argmax per row, or 0/1 at 0.5 for a binary model's single column."""
    probs = np.asarray(probabilities)
    if probs.ndim == 1 or (probs.ndim == 2 and probs.shape[1] == 1):
        index = (probs.reshape(-1) > 0.5).astype(np.int64)
    else:
        index = probs.argmax(axis=1)
    if classes is None:
        return index
    return np.asarray(classes)[index]


def binary_to_two_columns(probabilities: Any) -> np.ndarray:
    """A binary model's P(class 1) as [P(0), P(1)] rows, like sklearn's predict_proba."""
    probs = np.asarray(probabilities)
    if probs.ndim == 2 and probs.shape[1] > 1:
        return probs
    p1 = probs.reshape(-1)
    return np.stack([1.0 - p1, p1], axis=1)


def numeric_rows(
    model: str,
    inputs: Any,
    names: Sequence[str] | None,
    expected: int | None,
    fill_missing: bool = False,
) -> Any:
    """The request as one numeric 2-D array, named columns in ``names`` order; 400 otherwise.

    Strings (BYTES) are refused here, naming the inputs that hold them, rather
    than handed to a framework that rejects them with a cryptic message or,
    worse, parses "5.1" as a number. ``fill_missing`` as for ``align_columns``.
    """
    if is_frame(inputs):
        inputs = align_columns(model, inputs, names, fill_missing)
        text = [str(c) for c, t in inputs.dtypes.items() if t.kind not in NUMERIC_KINDS]
        if text:
            raise InvalidInput(
                f"Model '{model}' takes numbers; input {', '.join(text)} is not numeric"
            )
        inputs = inputs.to_numpy()
    inputs = check_feature_count(model, inputs, expected)
    if inputs.dtype.kind not in NUMERIC_KINDS:
        got = "strings (BYTES)" if inputs.dtype.kind in "OSU" else str(inputs.dtype)
        raise InvalidInput(f"Model '{model}' takes numbers (FP32, FP64 or integers); got {got}")
    return inputs


def declare_outputs(
    outputs: Outputs,
    predict: Callable[[Any], Any],
    datatype: str,
    predict_shape: Sequence[int],
    probabilities: Callable[[Any], Any] | None = None,
    n_classes: int = 0,
) -> None:
    """A table model's outputs: ``predict`` and, for a classifier, two more.

    ``predict`` (the default) is the framework's own prediction, with rows of
    ``predict_shape``. A classifier (``probabilities`` given) also offers
    ``predict_proba`` ([N, C], a binary model's P(1) as two columns) and
    ``predict_label`` (the class index, INT64), both from ``probabilities``.
    """
    outputs.add("predict", datatype, [-1, *predict_shape], predict)
    if probabilities is None:
        return
    outputs.add(
        "predict_proba",
        datatype,
        [-1, n_classes],
        lambda inputs: binary_to_two_columns(probabilities(inputs)),
        default=False,
    )
    outputs.add(
        "predict_label",
        "INT64",
        [-1],
        lambda inputs: labels_from_probabilities(probabilities(inputs)),
        default=False,
    )

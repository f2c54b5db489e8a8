"""KServe v1 (TensorFlow-Serving style) REST: instances/inputs in, predictions out.

Rows become one tensor named ``instances`` (or ``inputs``); a list of single
values (strings or numbers) is N rows of one value, a 1-D tensor, as KServe
hands it to a text pipeline. Tables become one tensor per column, so the
model sees a DataFrame with those columns; they come in the shapes KServe
turns into DataFrames:

* rows as objects keyed by column (``[{"a": 1, "b": 2}, ...]``; an object's
  value may itself be a list, TensorFlow Serving's row of named tensors);
* an object of columns, by row (``{"a": {"0": 1, "1": 2}, ...}``, pandas'
  ``to_dict()``), at the top or as each instance;
* each instance a list of such row objects (``[[{"a": 1}, {"b": 2}], ...]``);
* a columnar ``inputs`` object of lists (``{"a": [1, 2], ...}``).

A row that lacks a column another row has is a hole, as in the DataFrame
pandas would build: a number column holds NaN there and says how many with
the ``missing_values`` parameter, so a model that scores missing values
(LightGBM, XGBoost) gets them and any other is refused with the column's
name; a text column cannot have holes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson

from ..datatypes import datatype_of
from ..errors import InvalidInput
from ..model.explanations import CONTRIBUTIONS, Explainer
from ..types import MISSING_VALUES, InferRequest, InferResponse, RequestedOutput, Tensor
from .tensor_data import array_to_json, check_input_count
from .v2_rest import JSON_DUMPS_OPTIONS, loads_object

#: A column's value in a row that does not have it.
_HOLE: Any = None


def _column_tensor(name: str, values: Any) -> Tensor:
    if not isinstance(values, list):
        values = [values]
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInput(f"Input '{name}' is not a regular array: {exc}") from None
    return _tensor(name, arr, values)


def _tensor(name: str, arr: np.ndarray, values: list[Any]) -> Tensor:
    kind = arr.dtype.kind
    if kind in "US":
        # numpy's fixed-width strings drop trailing NULs and turn numbers
        # mixed in into strings: keep the original Python strings instead.
        obj = np.empty(arr.shape, dtype=object)
        obj[...] = values
        if not all(isinstance(v, str) for v in obj.reshape(-1)):
            raise InvalidInput(f"Input '{name}' mixes strings with other values")
        arr = obj
    elif kind == "O":
        raise InvalidInput(
            f"Input '{name}' mixes values of different kinds (numbers, strings, objects, nulls)"
        )
    elif kind not in "biuf":
        raise InvalidInput(f"Input '{name}' holds values of unsupported kind {arr.dtype}")
    if arr.ndim == 0:
        arr = arr.reshape(1)
    return Tensor(name, datatype_of(arr.dtype), arr.shape, arr)


def _holed_tensor(name: str, values: list[Any], holes: int) -> Tensor:
    """A number column with holes: NaN there, and how many in ``missing_values``."""
    for row, value in enumerate(values):
        if value is not _HOLE and (isinstance(value, bool) or not isinstance(value, int | float)):
            first = next(i for i, v in enumerate(values) if v is _HOLE)
            raise InvalidInput(
                f"Input '{name}' has no value in row {first}; only a column of numbers may "
                f"have missing values (row {row} holds {type(value).__name__})"
            )
    arr = np.array([math.nan if v is _HOLE else v for v in values], dtype=np.float64)
    return Tensor(name, "FP64", arr.shape, arr, {MISSING_VALUES: holes})


def _is_index_oriented(obj: dict[str, Any]) -> bool:
    """An object of columns by row label (pandas' ``to_dict()``): every value an object."""
    return bool(obj) and all(isinstance(v, dict) for v in obj.values())


def _index_records(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """``{column: {row: value}}`` as row objects, rows in the order they first appear."""
    rows: dict[str, dict[str, Any]] = {}
    for column, by_row in obj.items():
        for label, value in by_row.items():
            rows.setdefault(label, {})[column] = value
    return list(rows.values())


def _records(key: str, instances: list[Any]) -> list[dict[str, Any]]:
    """Every instance as row objects (see the module's list of table shapes)."""
    records: list[dict[str, Any]] = []
    for index, instance in enumerate(instances):
        if isinstance(instance, dict):
            if not instance:
                raise InvalidInput(f"'{key}' row {index} is an object with no keys")
            if _is_index_oriented(instance):
                records.extend(_index_records(instance))
            else:
                records.append(instance)
        elif isinstance(instance, list) and instance and all(isinstance(r, dict) for r in instance):
            records.extend(instance)
        else:
            raise InvalidInput(f"'{key}' mixes objects and non-objects (row {index})")
    return records


def _record_tensors(
    key: str, records: list[dict[str, Any]], limit: int | None = None, model: str = ""
) -> list[Tensor]:
    """One tensor per column of the row objects; holes where a row lacks a column.

    More columns than ``limit`` are refused before any column is built.
    """
    if not records:
        raise InvalidInput(f"'{key}' holds columns without any row")
    first = records[0]
    check_input_count(len(first), limit, model)
    if all(r.keys() == first.keys() for r in records):
        return [_column_tensor(str(k), [r[k] for r in records]) for k in first]
    columns: dict[str, list[Any]] = {}
    for index, record in enumerate(records):
        for column in record:
            columns.setdefault(column, [_HOLE] * index)
        check_input_count(len(columns), limit, model)
        for column, values in columns.items():
            values.append(record.get(column, _HOLE))
    tensors = []
    for column, values in columns.items():
        holes = sum(1 for v in values if v is _HOLE)
        if holes:
            tensors.append(_holed_tensor(str(column), values, holes))
        else:
            tensors.append(_column_tensor(str(column), values))
    return tensors


def _outputs_parameter(params: dict[str, Any]) -> list[RequestedOutput] | None:
    wanted = params.get("outputs", params.get("output"))
    if wanted is None:
        return None
    if isinstance(wanted, str):
        wanted = [wanted]
    if not isinstance(wanted, list) or not all(isinstance(w, str) for w in wanted) or not wanted:
        raise InvalidInput("'parameters.outputs' must be an output name or a list of names")
    return [RequestedOutput(w) for w in wanted]


def _is_table(payload: list[Any]) -> bool:
    first = payload[0]
    return isinstance(first, dict) or (
        isinstance(first, list) and bool(first) and isinstance(first[0], dict)
    )


def decode_predict_request(
    body: bytes, model_name: str, max_inputs: int | None = None
) -> InferRequest:
    """Decode a v1 ``:predict`` body into an InferRequest (at most ``max_inputs`` columns)."""
    obj = loads_object(body, "predict request")
    has_instances, has_inputs = "instances" in obj, "inputs" in obj
    if has_instances == has_inputs:
        raise InvalidInput("Predict request must have exactly one of 'instances' or 'inputs'")
    key = "instances" if has_instances else "inputs"
    params = obj.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidInput("'parameters' must be a JSON object")
    return InferRequest(
        model_name=model_name,
        inputs=payload_tensors(key, obj[key], max_inputs, model_name),
        parameters=params,
        outputs=_outputs_parameter(params),
    )


def decode_explain_request(
    body: bytes, model_name: str, max_inputs: int | None = None
) -> InferRequest:
    """Decode a v1 ``:explain`` body: a predict body, asking for the contributions only."""
    request = decode_predict_request(body, model_name, max_inputs)
    request.outputs = [RequestedOutput(CONTRIBUTIONS)]
    return request


def payload_tensors(
    key: str, payload: Any, limit: int | None = None, model: str = ""
) -> list[Tensor]:
    """``instances`` or ``inputs`` (TensorFlow Serving's forms) as tensors.

    Rows of values are one tensor named ``key`` (a list of single values a
    1-D one); tables (see the module's list of shapes) one tensor per column,
    at most ``limit`` of them (checked before any is built).
    """
    if isinstance(payload, dict):
        check_input_count(len(payload), limit, model)
    if isinstance(payload, dict) and _is_index_oriented(payload):
        tensors = _record_tensors(key, _index_records(payload), limit, model)
    elif isinstance(payload, dict) and key == "inputs":
        if not payload:
            raise InvalidInput("'inputs' object must name at least one input")
        tensors = [_column_tensor(str(k), v) for k, v in payload.items()]
    elif isinstance(payload, list):
        if not payload:
            raise InvalidInput(f"'{key}' must not be empty")
        if _is_table(payload):
            tensors = _record_tensors(key, _records(key, payload), limit, model)
        else:
            # A list of single values stays 1-D: N rows of one value each.
            tensors = [_column_tensor(key, payload)]
    elif key == "inputs":
        raise InvalidInput("'inputs' must be a list or an object")
    else:
        raise InvalidInput(
            f"'{key}' must be a list, or an object of columns {{name: {{row: value}}}}"
        )
    lengths = {t.shape[0] for t in tensors}
    if len(lengths) > 1:
        raise InvalidInput(f"Inputs have different numbers of rows: {sorted(lengths)}")
    return tensors


def output_values(tensor: Tensor) -> Any:
    """An output in its shape: numpy for orjson to write, Python values for BYTES and 0-d."""
    data = array_to_json(tensor.data, tensor.datatype)
    if tensor.datatype == "BYTES":
        return np.asarray(data, dtype=object).reshape(tensor.shape).tolist()
    if not tensor.shape:
        return data.reshape(()).tolist()
    return data.reshape(tensor.shape)


def encode_predict_response(response: InferResponse) -> bytes:
    """``{"predictions": ...}``: one output as rows; several as one object per row.

    Several outputs that do not share a row count (or are scalars) are given
    as one object of whole outputs instead.
    """
    outputs = response.outputs
    if len(outputs) == 1:
        predictions: Any = output_values(outputs[0])
    else:
        predictions = records(outputs)
    return orjson.dumps({"predictions": predictions}, option=JSON_DUMPS_OPTIONS)


def records(outputs: list[Tensor]) -> Any:
    """Outputs as one object per row (``{name: value}``), or one object of whole outputs.

    The whole-outputs form is for outputs that do not share a row count (or
    are scalars), which have no rows to pair up.
    """
    columns = {t.name: output_values(t) for t in outputs}
    rows = {t.shape[0] if t.shape else None for t in outputs}
    if len(rows) != 1 or None in rows:
        return columns
    count = int(next(iter(rows)) or 0)
    return [
        {
            name: value[i].tolist() if isinstance(value, np.ndarray) else value[i]
            for name, value in columns.items()
        }
        for i in range(count)
    ]


def encode_explain_response(response: InferResponse, explainer: Explainer) -> bytes:
    """``{"explanations": [...]}``: per row its contributions, bias and feature names.

    A model with one block per class gives, per row, a list of contributions
    and a bias for each class, and the class labels.
    """
    (tensor,) = response.outputs
    values = np.asarray(tensor.data, dtype=np.float64)
    names = list(explainer.feature_names)
    extra: dict[str, Any] = {"classes": list(explainer.classes)} if explainer.per_class else {}
    explanations = [
        {
            "contributions": row[..., :-1].tolist(),
            "bias": row[..., -1].tolist(),
            "feature_names": names,
            **extra,
        }
        for row in values
    ]
    return orjson.dumps({"explanations": explanations}, option=JSON_DUMPS_OPTIONS)

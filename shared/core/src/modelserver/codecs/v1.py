"""KServe v1 (TensorFlow-Serving style) REST: instances/inputs in, predictions out.

Rows become one tensor named ``instances`` (or ``inputs``); rows given as
objects keyed by feature name, or a columnar ``inputs`` object, become one
tensor per column, so the model sees a DataFrame with those columns.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from ..datatypes import datatype_of
from ..errors import InvalidInput
from ..types import InferRequest, InferResponse, RequestedOutput, Tensor
from .tensor_data import array_to_json
from .v2_rest import JSON_DUMPS_OPTIONS, loads_object


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


def _rows_of_objects(name: str, rows: list[Any]) -> list[Tensor]:
    columns: dict[str, list[Any]] = {}
    first = rows[0]
    if not first:
        raise InvalidInput(f"'{name}' rows are objects with no keys")
    for key in first:
        columns[str(key)] = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InvalidInput(f"'{name}' mixes objects and non-objects (row {index})")
        if row.keys() != first.keys():
            raise InvalidInput(
                f"'{name}' row {index} has keys {sorted(row)}, row 0 has {sorted(first)}"
            )
        for key, value in row.items():
            columns[key].append(value)
    return [_column_tensor(key, values) for key, values in columns.items()]


def _outputs_parameter(params: dict[str, Any]) -> list[RequestedOutput] | None:
    wanted = params.get("outputs", params.get("output"))
    if wanted is None:
        return None
    if isinstance(wanted, str):
        wanted = [wanted]
    if not isinstance(wanted, list) or not all(isinstance(w, str) for w in wanted) or not wanted:
        raise InvalidInput("'parameters.outputs' must be an output name or a list of names")
    return [RequestedOutput(w) for w in wanted]


def decode_predict_request(body: bytes, model_name: str) -> InferRequest:
    """Decode a v1 ``:predict`` body into an InferRequest."""
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
        inputs=payload_tensors(key, obj[key]),
        parameters=params,
        outputs=_outputs_parameter(params),
    )


def payload_tensors(key: str, payload: Any) -> list[Tensor]:
    """``instances`` or ``inputs`` (TensorFlow Serving's forms) as tensors.

    Rows of values are one tensor named ``key``; rows of objects, or a
    columnar ``inputs`` object, one tensor per column.
    """
    if isinstance(payload, dict) and key == "inputs":
        if not payload:
            raise InvalidInput("'inputs' object must name at least one input")
        tensors = [_column_tensor(str(k), v) for k, v in payload.items()]
    elif isinstance(payload, list):
        if not payload:
            raise InvalidInput(f"'{key}' must not be empty")
        if isinstance(payload[0], dict):
            tensors = _rows_of_objects(key, payload)
        else:
            tensor = _column_tensor(key, payload)
            if tensor.data.ndim == 1:
                # A list of scalars is a batch of one-feature rows.
                tensor.data = tensor.data.reshape(-1, 1)
                tensor.shape = tensor.data.shape
            tensors = [tensor]
    else:
        raise InvalidInput(f"'{key}' must be a list" + (" or an object" if key == "inputs" else ""))
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

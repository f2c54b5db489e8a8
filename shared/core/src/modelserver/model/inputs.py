"""How a request's tensors become a model's input, the way most runtimes want them.

One tensor is handed over as its array: rows of features [N, F] stay 2-D
and N single values [N] (KServe's v1 list of strings, say) stay 1-D, as
KServe hands them to a text pipeline; a table runtime that needs rows turns
[N] into [N, 1] knowing its feature count (``tabular``). Several named
tensors are the columns of a pandas DataFrame (so a Pipeline with a
ColumnTransformer gets its columns by name). BYTES become Python strings,
the form text models expect, and MLServer's content types are honoured
(``content_types``). A runtime with other needs overrides
``Model.preprocess`` and may use the pieces here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidInput
from ..types import MISSING_VALUES, InferRequest, Tensor
from . import content_types

#: What predict receives: an ndarray, a DataFrame, or a runtime's own form.
ModelInput = Any


def default_inputs(request: InferRequest, missing_ok: bool = False) -> ModelInput:
    """The model's input for a request: one array, or a DataFrame of named columns.

    ``missing_ok``: the model scores missing values (NaN), so table rows
    that lack a column may reach it; otherwise such a column is a 400.
    """
    inputs = request.inputs
    kind = content_types.content_type(request.parameters)
    if len(inputs) == 1 and kind != content_types.PANDAS:
        tensor = inputs[0]
        if tensor.parameters or kind is not None:
            _check_missing(tensor, missing_ok)
            decoded = content_types.decode(tensor, kind)
            if decoded is not None:
                return decoded
        data = tensor.data
        if tensor.datatype == "BYTES":
            return strings(data)
        if data.ndim == 0:
            return data.reshape(1)
        return data
    return dataframe(inputs, missing_ok)


def _check_missing(tensor: Tensor, missing_ok: bool) -> None:
    if missing_ok or not tensor.parameters.get(MISSING_VALUES):
        return
    rows = np.flatnonzero(np.isnan(tensor.data))
    first = int(rows[0]) if len(rows) else 0
    raise InvalidInput(
        f"Input '{tensor.name}' has no value in row {first} ({len(rows)} rows lack it); "
        "this model does not take missing values: send the column in every row"
    )


def strings(data: np.ndarray) -> np.ndarray:
    """BYTES elements as Python strings, the form text models expect."""
    out = np.empty(data.shape, dtype=object)
    flat = out.reshape(-1)
    for i, item in enumerate(data.reshape(-1)):
        flat[i] = item.decode("utf-8", errors="replace") if isinstance(item, bytes) else item
    return out


def as_column(tensor: Tensor) -> np.ndarray:
    """A named input as one column of N values: shape [N], [N, 1] or a scalar."""
    return _column(tensor.name, tensor.data)


def _column(name: str, data: np.ndarray) -> np.ndarray:
    if data.ndim == 2 and data.shape[1] == 1:
        return data[:, 0]
    if data.ndim == 0:
        return data.reshape(1)
    if data.ndim != 1:
        raise InvalidInput(
            f"Input '{name}' has shape {list(data.shape)}; with several named "
            "inputs each one is a column and must have shape [N] or [N, 1]"
        )
    return data


def dataframe(inputs: list[Tensor], missing_ok: bool = False) -> Any:
    """Named tensors as the columns of a DataFrame; 400 when their row counts differ."""
    import pandas as pd

    columns: dict[str, Any] = {}
    rows: int | None = None
    for tensor in inputs:
        decoded = None
        if tensor.parameters:
            _check_missing(tensor, missing_ok)
            decoded = content_types.decode(tensor)
        if decoded is not None:
            data = _column(tensor.name, decoded)
        else:
            data = as_column(tensor)
            if tensor.datatype == "BYTES":
                data = strings(data)
        if rows is None:
            rows = len(data)
        elif len(data) != rows:
            raise InvalidInput(
                f"Input '{tensor.name}' has {len(data)} rows, the inputs before it have {rows}"
            )
        columns[tensor.name] = data
    return pd.DataFrame(columns)


def tensor_spec(name: str, datatype: str, shape: list[int]) -> dict[str, Any]:
    """One entry of model metadata's ``inputs``."""
    return {"name": name, "datatype": datatype, "shape": list(shape)}

"""How a request's tensors become a model's input, the way most runtimes want them.

One tensor is a 2-D array of rows (a 1-D tensor is one row); several named
tensors are the columns of a pandas DataFrame (so a Pipeline with a
ColumnTransformer gets its columns by name). BYTES become Python strings,
the form text models expect. A runtime with other needs overrides
``Model.preprocess`` and may use the pieces here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidInput
from ..types import InferRequest, Tensor

#: What predict receives: an ndarray, a DataFrame, or a runtime's own form.
ModelInput = Any


def default_inputs(request: InferRequest) -> ModelInput:
    """The model's input for a request: a 2-D array, or a DataFrame of named columns."""
    inputs = request.inputs
    if len(inputs) == 1 and request.parameters.get("content_type") != "pd":
        tensor = inputs[0]
        data = tensor.data
        if tensor.datatype == "BYTES":
            return strings(data)
        if data.ndim == 1:
            return data.reshape(1, -1)
        if data.ndim == 0:
            return data.reshape(1, 1)
        return data
    return dataframe(inputs)


def strings(data: np.ndarray) -> np.ndarray:
    """BYTES elements as Python strings, the form text models expect."""
    out = np.empty(data.shape, dtype=object)
    flat = out.reshape(-1)
    for i, item in enumerate(data.reshape(-1)):
        flat[i] = item.decode("utf-8", errors="replace") if isinstance(item, bytes) else item
    return out


def as_column(tensor: Tensor) -> np.ndarray:
    """A named input as one column of N values: shape [N], [N, 1] or a scalar."""
    data = tensor.data
    if data.ndim == 2 and data.shape[1] == 1:
        return data[:, 0]
    if data.ndim == 0:
        return data.reshape(1)
    if data.ndim != 1:
        raise InvalidInput(
            f"Input '{tensor.name}' has shape {list(tensor.shape)}; with several named "
            "inputs each one is a column and must have shape [N] or [N, 1]"
        )
    return data


def dataframe(inputs: list[Tensor]) -> Any:
    """Named tensors as the columns of a DataFrame; 400 when their row counts differ."""
    import pandas as pd

    columns: dict[str, Any] = {}
    rows: int | None = None
    for tensor in inputs:
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

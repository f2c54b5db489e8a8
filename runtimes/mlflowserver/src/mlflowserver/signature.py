"""The MLflow signature as the protocol sees it: tensors declared, requests converted.

A signature's inputs are columns (``ColSpec``: a name, an MLflow type,
required or not) or tensors (``TensorSpec``: a numpy dtype and a shape).
Each becomes one declared v2 input or output with its datatype; an unnamed
single one is ``input-0`` (an input) or ``predict`` (an output).

A request becomes what MLflow's ``predict`` takes for that signature:

* named columns: a DataFrame. Named inputs are its columns (any order);
  one tensor of rows ``[N, k]`` under another name (v1 ``instances``,
  ``input-0``) gives the k columns in signature order. An input the
  signature lacks, or a required column the request lacks, is a 400 naming
  it and listing the columns with their types (MLflow would ignore the
  first and say only the name of the second).
* unnamed columns: a DataFrame of the tensors' columns, in order;
* tensors: the array, or ``{name: array}`` for named tensors.

Values are then cast by MLflow's own schema enforcement inside ``predict``,
so a value it cannot convert without loss is refused exactly as MLflow
refuses it (its message names the column and the type).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from modelserver import InvalidInput, Tensor, dataframe, datatype_of, strings

#: MLflow column types -> OIP datatypes; others (datetime, arrays, objects) travel as BYTES.
DATATYPES = {
    "boolean": "BOOL",
    "integer": "INT32",
    "long": "INT64",
    "float": "FP32",
    "double": "FP64",
    "string": "BYTES",
    "binary": "BYTES",
}


def type_name(spec: Any) -> str:
    """The spec's type as MLflow writes it: ``double``, ``string``, ``float32``."""
    kind = spec.type
    return str(getattr(kind, "name", kind))


def datatype(spec: Any) -> str:
    """The OIP datatype of a ColSpec or TensorSpec."""
    if isinstance(spec.type, np.dtype):
        return datatype_of(spec.type)
    return DATATYPES.get(type_name(spec), "BYTES")


def is_tensor(schema: Any) -> bool:
    return bool(schema.is_tensor_spec())


def declared(schema: Any, single: str, prefix: str) -> list[tuple[str, str, list[int]]]:
    """(name, datatype, shape) of each input or output of ``schema``.

    A lone unnamed one is called ``single``; several unnamed ones
    ``<prefix>-0``, ``<prefix>-1``... in order.
    """
    specs = list(schema.inputs)

    def name(spec: Any, index: int) -> str:
        return str(spec.name or (single if len(specs) == 1 else f"{prefix}-{index}"))

    if is_tensor(schema):
        return [(name(s, i), datatype(s), list(s.shape)) for i, s in enumerate(specs)]
    kinds = {datatype(spec) for spec in specs}
    if not schema.has_input_names() and len(specs) > 1 and len(kinds) == 1:
        # Unnamed columns of one type: one tensor of rows, read by position as MLflow does.
        return [(single, kinds.pop(), [-1, len(specs)])]
    return [(name(s, i), datatype(s), [-1]) for i, s in enumerate(specs)]


def describe(schema: Any) -> str:
    """The columns or tensors with their types, for error messages."""
    parts = []
    for spec in schema.inputs:
        optional = "" if getattr(spec, "required", True) else ", optional"
        parts.append(f"{spec.name or '(unnamed)'} ({type_name(spec)}{optional})")
    return ", ".join(parts)


def model_input(model: str, schema: Any, tensors: Sequence[Tensor]) -> Any:
    """The request's tensors as what ``predict`` takes for ``schema`` (see the module doc)."""
    if is_tensor(schema):
        return _tensors(model, schema, tensors)
    if not schema.has_input_names():
        return _unnamed_columns(tensors)
    names = schema.input_names()
    if len(tensors) == 1 and tensors[0].name not in names:
        return _rows(model, schema, names, tensors[0])
    given = [t.name for t in tensors]
    unknown = [n for n in given if n not in names]
    if unknown:
        raise InvalidInput(
            f"Model '{model}' has no input {', '.join(repr(n) for n in unknown)}; "
            f"its signature's columns: {describe(schema)}"
        )
    missing = [s for s in schema.inputs if s.required and s.name not in given]
    if missing:
        wanted = ", ".join(f"'{s.name}' ({type_name(s)})" for s in missing)
        raise InvalidInput(f"Model '{model}' is missing input {wanted}; got {', '.join(given)}")
    return dataframe(list(tensors))


def _values(tensor: Tensor) -> np.ndarray:
    return strings(tensor.data) if tensor.datatype == "BYTES" else tensor.data


def _rows(model: str, schema: Any, names: list[str], tensor: Tensor) -> pd.DataFrame:
    """One tensor of rows ``[N, k]`` (or one row ``[k]``) as the signature's k columns."""
    data = _values(tensor)
    if data.ndim == 1 and len(names) > 1:
        data = data.reshape(1, -1)
    elif data.ndim == 1:
        data = data.reshape(-1, 1)
    if data.ndim != 2 or data.shape[1] != len(names):
        raise InvalidInput(
            f"Model '{model}' takes rows of {len(names)} columns ({describe(schema)}); "
            f"input '{tensor.name}' has shape {list(tensor.shape)}"
        )
    return pd.DataFrame({name: data[:, i] for i, name in enumerate(names)})


def _unnamed_columns(tensors: Sequence[Tensor]) -> pd.DataFrame:
    """Unnamed columns: each tensor's columns in order, as MLflow reads them by position."""
    columns: list[np.ndarray] = []
    for tensor in tensors:
        data = _values(tensor)
        if data.ndim > 2:
            raise InvalidInput(
                f"Input '{tensor.name}' has shape {list(tensor.shape)}; columns are [N] or [N, k]"
            )
        columns.extend(data.reshape(len(data), -1).T if data.ndim else [data.reshape(1)])
    return pd.DataFrame(dict(enumerate(columns)))


def _tensors(model: str, schema: Any, tensors: Sequence[Tensor]) -> Any:
    """Tensor signatures: the array, or a mapping of named arrays."""
    specs = list(schema.inputs)
    if len(specs) == 1 and len(tensors) == 1 and not specs[0].name:
        return _values(tensors[0])
    by_name = {t.name: t for t in tensors}
    if len(specs) == 1 and len(tensors) == 1 and tensors[0].name != specs[0].name:
        by_name = {specs[0].name: tensors[0]}
    names = [spec.name for spec in specs]
    unknown = [n for n in by_name if n not in names]
    missing = [n for n in names if n not in by_name]
    if unknown or missing:
        raise InvalidInput(
            f"Model '{model}' takes the tensors {describe(schema)}; "
            + (f"missing {', '.join(missing)}" if missing else f"no input {', '.join(unknown)}")
        )
    return {name: _values(by_name[name]) for name in names}

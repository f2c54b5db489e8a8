"""TF Serving's REST API bodies: predict (row and columnar), classify, regress, status, metadata.

Follows TF Serving's own JSON rules (its json_tensor.cc and api_rest.md):

* ``:predict`` takes ``instances`` (rows: one value per example, or one
  object per example keyed by input name) or ``inputs`` (columns: one value,
  or an object of whole tensors); its answer is ``predictions`` (one entry
  per example; an object per example when there are several outputs) or
  ``outputs`` (the tensor; an object of tensors when there are several).
  Values are typed by the signature: strings for DT_STRING (or
  ``{"b64": ...}`` for binary data), integers for integer types, numbers
  (``NaN``, ``Infinity`` and ``-Infinity`` included) for floats.
* DT_STRING outputs whose name ends in ``_bytes`` are written as
  ``{"b64": ...}``, and so is any other string that is not UTF-8 (TF Serving
  would write invalid JSON there).
* ``:classify`` and ``:regress`` take ``examples`` (and an optional common
  ``context``): objects of features whose values become a tf.Example's
  int64, float or bytes lists; they answer ``{"results": ...}``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from ..errors import InvalidInput
from ..protos import tfserving as tfs
from ..types import InferResponse, Tensor
from .tensor_data import MAX_RANK, array_from_json, check_shape

B64 = "b64"
BYTES_SUFFIX = "_bytes"
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_DUMPS = orjson.OPT_SERIALIZE_NUMPY


def loads(body: bytes, what: str) -> dict[str, Any]:
    """A JSON object; NaN, Infinity and -Infinity accepted as TF Serving accepts them."""
    if not body:
        raise InvalidInput("JSON Parse error: The document is empty")
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # orjson refuses the non-standard tokens; Python's parser takes them.
        try:
            obj = json.loads(body)
        except (ValueError, RecursionError):
            raise InvalidInput(f"JSON Parse error in {what}: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidInput(f"JSON Value of the {what} is not an object")
    return obj


def signature_name(obj: dict[str, Any]) -> str:
    name = obj.get("signature_name", "")
    if not isinstance(name, str):
        raise InvalidInput("'signature_name' key must be a string value.")
    return name


# -- predict: JSON in ------------------------------------------------------------------


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get(B64), str)


def _is_named(value: Any) -> bool:
    """An example given as an object of named inputs (a b64 object is a value)."""
    return isinstance(value, dict) and not _is_b64(value)


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("Unable to base64 decode") from None


def _shape_of(value: Any) -> list[int]:
    """The dense shape of nested lists, read down the first elements (as TF Serving does)."""
    shape: list[int] = []
    while isinstance(value, list):
        if len(shape) >= MAX_RANK:
            raise InvalidInput(f"JSON value nested deeper than {MAX_RANK} levels")
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _strings(value: Any, name: str) -> np.ndarray:
    """A DT_STRING tensor from nested lists of strings and ``{"b64": ...}`` objects."""
    shape = _shape_of(value)
    rank = len(shape)
    flat: list[bytes] = []
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, list):
            if level >= rank or len(item) != shape[level]:
                raise InvalidInput(
                    f"Input '{name}': a list of {len(item)} at level {level} where the shape "
                    f"{shape} expects {shape[level] if level < rank else 'a value'}"
                )
            stack.extend((child, level + 1) for child in reversed(item))
            continue
        if level != rank:
            raise InvalidInput(
                f"Input '{name}': JSON value found at level {level + 1}, expected at level {rank}"
            )
        if isinstance(item, str):
            flat.append(item.encode("utf-8"))
        elif _is_b64(item):
            flat.append(_b64decode(item[B64]))
        else:
            raise InvalidInput(
                f"Input '{name}': JSON value {orjson.dumps(item).decode()[:100]} is not of "
                "expected type: string"
            )
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(shape)


def _tensor(name: str, value: Any, datatype: str) -> Tensor:
    """One input tensor from its JSON value, typed by the signature's datatype."""
    if datatype == "BYTES":
        data = _strings(value, name)
    else:
        shape, count = check_shape(_shape_of(value), name)
        if isinstance(value, dict):
            raise InvalidInput(f"Input '{name}': an object where a {datatype} value belongs")
        with np.errstate(over="ignore"):  # an overflow is refused below, not warned about
            data = array_from_json(value, datatype, shape, count, name)
        if datatype in ("FP32", "FP16") and count and _overflowed(value, data):
            raise InvalidInput(
                f"Input '{name}': cannot convert a JSON value to {datatype} "
                "without loss of precision"
            )
    return Tensor(name, datatype, tuple(data.shape), data)


def _overflowed(value: Any, data: np.ndarray) -> bool:
    """Whether ``data`` holds an infinity its JSON did not: a number beyond the type's range."""
    infinite = np.isinf(data)
    return bool(infinite.any()) and bool(
        np.isfinite(np.asarray(value, dtype=np.float64)[infinite]).any()
    )


@dataclass(slots=True)
class PredictBody:
    """A decoded ``:predict`` body."""

    signature_name: str
    #: ``instances`` (answered as ``predictions``) rather than ``inputs`` (``outputs``).
    rows: bool
    inputs: list[Tensor]


def decode_predict(body: bytes, inputs_of: Callable[[str], Mapping[str, str]]) -> PredictBody:
    """A ``:predict`` body as input tensors; ``inputs_of(signature)`` gives name -> datatype.

    ``inputs_of`` raises InvalidInput for a signature the model does not have.
    """
    obj = loads(body, "predict request")
    name = signature_name(obj)
    specs = inputs_of(name)
    if not specs:
        raise InvalidInput(f"Failed to get input map for signature: {name or 'DEFAULT'}")
    has_rows, has_columns = "instances" in obj, "inputs" in obj
    if has_rows and has_columns:
        raise InvalidInput(
            "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist"
        )
    if has_rows:
        return PredictBody(name, True, _rows(obj["instances"], specs))
    if has_columns:
        return PredictBody(name, False, _columns(obj["inputs"], specs))
    raise InvalidInput("Missing 'inputs' or 'instances' key")


def _rows(instances: Any, specs: Mapping[str, str]) -> list[Tensor]:
    if not isinstance(instances, list):
        raise InvalidInput("Excepting 'instances' to be an list/array")
    if not instances:
        raise InvalidInput("No values in 'instances' array")
    named = _is_named(instances[0])
    if not named:
        if len(specs) > 1:
            raise InvalidInput(
                "instances is a plain list, but expecting list of objects as multiple input "
                "tensors required as per tensorinfo_map"
            )
        for index, item in enumerate(instances):
            if _is_named(item):
                raise InvalidInput(
                    f"Expecting value/list but got object at item {index} of input list"
                )
        ((only, datatype),) = specs.items()
        return [_tensor(only, instances, datatype)]
    columns: dict[str, list[Any]] = {name: [] for name in specs}
    for index, item in enumerate(instances):
        if not _is_named(item):
            raise InvalidInput(f"Expecting object but got list at item {index} of input list")
        if item.keys() != columns.keys():
            raise InvalidInput(
                f"Failed to process element: {index} of 'instances' list. JSON object keys "
                f"{', '.join(sorted(item))} must be equal to: {','.join(sorted(specs))}"
            )
        for key, value in item.items():
            columns[key].append(value)
    return [_tensor(name, columns[name], datatype) for name, datatype in specs.items()]


def _columns(inputs: Any, specs: Mapping[str, str]) -> list[Tensor]:
    if not _is_named(inputs):
        if len(specs) > 1:
            raise InvalidInput(
                "inputs is a plain value/list, but expecting an object as multiple input "
                "tensors required as per tensorinfo_map"
            )
        ((only, datatype),) = specs.items()
        return [_tensor(only, inputs, datatype)]
    for name in specs:
        if name not in inputs:
            raise InvalidInput(f"Missing named input: {name} in 'inputs' object.")
    return [_tensor(name, inputs[name], datatype) for name, datatype in specs.items()]


# -- predict: JSON out ------------------------------------------------------------------


def _string_value(item: Any, as_bytes: bool) -> Any:
    raw = item if isinstance(item, bytes) else str(item).encode("utf-8")
    if not as_bytes:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return {B64: base64.b64encode(raw).decode("ascii")}


def _json_value(tensor: Tensor, data: Any) -> Any:
    """``data`` (the tensor or one example of it) as orjson writes it."""
    if not isinstance(data, np.ndarray):  # one element of a 1-D tensor
        data = np.asarray(data, dtype=object if tensor.datatype == "BYTES" else None)
    if tensor.datatype == "BYTES":
        as_bytes = tensor.name.endswith(BYTES_SUFFIX)
        flat = [_string_value(item, as_bytes) for item in data.reshape(-1)]
        if data.ndim == 0:
            return flat[0]
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        return out.reshape(data.shape).tolist()
    if data.ndim == 0:
        return data[()]
    return np.ascontiguousarray(data)


def _finite(tensors: list[Tensor]) -> bool:
    return all(t.data.dtype.kind != "f" or bool(np.isfinite(t.data).all()) for t in tensors)


def encode_predict(response: InferResponse, rows: bool) -> bytes:
    """``{"predictions": ...}`` for a row request, ``{"outputs": ...}`` for a columnar one."""
    outputs = response.outputs
    if not outputs:
        raise InvalidInput("Cannot convert empty tensor map to JSON")
    if rows:
        batch = None
        for tensor in outputs:
            if not tensor.shape:
                raise InvalidInput(f"Tensor name: {tensor.name} has no shape information ")
            if batch is not None and tensor.shape[0] != batch:
                raise InvalidInput(
                    f"Tensor name: {tensor.name} has inconsistent batch size: "
                    f"{tensor.shape[0]} expecting: {batch}"
                )
            batch = tensor.shape[0]
        if len(outputs) == 1:
            body: dict[str, Any] = {"predictions": _json_value(outputs[0], outputs[0].data)}
        else:
            body = {
                "predictions": [
                    {t.name: _json_value(t, t.data[i]) for t in outputs} for i in range(batch or 0)
                ]
            }
    elif len(outputs) == 1:
        body = {"outputs": _json_value(outputs[0], outputs[0].data)}
    else:
        body = {"outputs": {t.name: _json_value(t, t.data) for t in outputs}}
    if _finite(outputs):
        return orjson.dumps(body, option=_DUMPS)
    return _dumps_nonfinite(body)


def _dumps_nonfinite(body: Any) -> bytes:
    """JSON with NaN, Infinity and -Infinity written as TF Serving writes them (orjson: null).

    Float32 values keep their shortest float32 form (0.1, not 0.10000000149011612).
    """

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        if isinstance(value, np.ndarray | np.generic):
            if value.dtype.kind == "f":
                return np.asarray(value).astype(str).astype(float).tolist()
            return value.tolist()
        return value

    return json.dumps(plain(body), allow_nan=True, separators=(",", ":")).encode()


# -- classify and regress ------------------------------------------------------------------


def _feature(name: str, value: Any, feature: Any) -> None:
    """Add one JSON value to a tf.Example feature, keeping the feature to one kind."""

    def kind_error(kind: str) -> InvalidInput:
        current = feature.WhichOneof("kind") or "UNKNOWN"
        return InvalidInput(
            f"Unexpected element type in feature: {name} expecting type: "
            f"{current.replace('_list', '')} (got {kind})"
        )

    def target(kind: str) -> Any:
        current = feature.WhichOneof("kind")
        if current is not None and current != f"{kind}_list":
            raise kind_error(kind)
        return getattr(feature, f"{kind}_list").value

    if isinstance(value, bool):
        target("int64").append(1 if value else 0)
    elif isinstance(value, str):
        target("bytes").append(value.encode("utf-8"))
    elif _is_b64(value):
        target("bytes").append(_b64decode(value[B64]))
    elif isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise InvalidInput(f"Feature: {name} has uint64 element. Only int64 is supported.")
        target("int64").append(value)
    elif isinstance(value, float):
        if math.isfinite(value) and abs(value) > _FLOAT32_MAX:
            raise InvalidInput(
                f"Cannot convert JSON value: {value} to float without loss of precision."
            )
        target("float").append(value)
    else:
        kind = "Null" if value is None else type(value).__name__
        raise InvalidInput(f"Feature: {name} has element with unexpected JSON type: {kind}")


def _example(value: Any, into: Any) -> None:
    if not isinstance(value, dict):
        raise InvalidInput(f"Example must be JSON object but got JSON {type(value).__name__}")
    for name, content in value.items():
        feature = into.features.feature[name]
        feature.SetInParent()
        for item in content if isinstance(content, list) else [content]:
            if isinstance(item, list):
                raise InvalidInput(f"Feature: {name} has element with unexpected JSON type: Array")
            _feature(name, item, feature)


@dataclass(slots=True)
class ExamplesBody:
    """A decoded ``:classify`` or ``:regress`` body."""

    signature_name: str
    #: The request's ``Input`` message (examples, with their context when given).
    input: Any


def decode_examples(body: bytes, kind: str) -> ExamplesBody:
    """A ``:classify`` or ``:regress`` body as a TF Serving ``Input`` of tf.Examples."""
    obj = loads(body, f"{kind} request")
    name = signature_name(obj)
    message = tfs.Input()
    if "context" in obj:
        target = message.example_list_with_context
        _example(obj["context"], target.context)
    else:
        target = message.example_list
    if "examples" not in obj:
        raise InvalidInput(f"When method is {kind}, key 'examples' is expected and was not found")
    examples = obj["examples"]
    if not isinstance(examples, list):
        raise InvalidInput("Expecting 'examples' value to be an list/array")
    if not examples:
        raise InvalidInput("'examples' value is an empty array")
    for value in examples:
        _example(value, target.examples.add())
    return ExamplesBody(name, message)


def encode_classifications(results: list[list[tuple[str, float]]]) -> bytes:
    """``{"results": [[[label, score], ...], ...]}``: one list of classes per example."""
    return orjson.dumps(
        {"results": [[[label, _float32(score)] for label, score in row] for row in results]},
        option=_DUMPS,
    )


def encode_regressions(values: list[float]) -> bytes:
    """``{"results": [value, ...]}``: one value per example."""
    return orjson.dumps({"results": [_float32(v) for v in values]}, option=_DUMPS)


def _float32(value: float) -> Any:
    return np.float32(value) if math.isfinite(value) else value

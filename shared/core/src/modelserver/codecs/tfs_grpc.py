"""TF Serving's gRPC messages to and from our types: TensorProto, PredictRequest/Response.

A TensorProto carries its values either as raw little-endian bytes
(``tensor_content``, what ``tf.make_tensor_proto`` writes for numeric
arrays) or in the typed field of its dtype (``float_val``, ``int_val``,
``string_val``...). Both are read with TensorFlow's rules: a typed field with
fewer values than the shape holds is padded with its last value (one value
fills the tensor) and an empty one means zeros. Outputs mirror the request:
``tensor_content`` when any input came that way, typed fields (TF Serving's
own answer) otherwise; strings are always ``string_val``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..datatypes import DATATYPE_TO_DTYPE
from ..errors import InvalidInput
from ..protos import tfserving as tfs
from ..types import InferResponse, RequestedOutput, Tensor
from .tensor_data import array_from_raw, array_to_raw, check_shape
from .tfserving import DATATYPE_TO_DT, DT_TO_DATATYPE

#: The typed TensorProto field of each datatype.
TYPED_FIELD: dict[str, str] = {
    "FP32": "float_val",
    "FP64": "double_val",
    "FP16": "half_val",
    "INT8": "int_val",
    "INT16": "int_val",
    "INT32": "int_val",
    "UINT8": "int_val",
    "UINT16": "int_val",
    "INT64": "int64_val",
    "UINT32": "uint32_val",
    "UINT64": "uint64_val",
    "BOOL": "bool_val",
    "BYTES": "string_val",
}
_NARROW = frozenset(["INT8", "INT16", "UINT8", "UINT16"])
_DT_NUMBER = {dt: tfs.DataType.values_by_name[dt].number for dt in DT_TO_DATATYPE}


def datatype_of(dtype: int, name: str) -> str:
    """Our datatype for a TensorProto's dtype; InvalidInput for one without an equivalent."""
    value = tfs.DataType.values_by_number.get(dtype)
    dt = value.name if value is not None else str(dtype)
    found = DT_TO_DATATYPE.get(dt)
    if found is None:
        raise InvalidInput(f"Tensor '{name}': dtype {dt} is not supported")
    return found


def _typed(proto: Any, datatype: str, count: int, name: str) -> np.ndarray:
    values = getattr(proto, TYPED_FIELD[datatype])
    n = len(values)
    if n > count:
        raise InvalidInput(
            f"Tensor '{name}': {TYPED_FIELD[datatype]} holds {n} values for {count} elements"
        )
    if datatype == "BYTES":
        arr = np.empty(n, dtype=object)
        arr[:] = list(values)
    elif datatype == "FP16":
        arr = np.array(values, dtype=np.int64).astype(np.uint16).view(np.float16)
    elif datatype in _NARROW:
        wide = np.array(values, dtype=np.int64)
        info = np.iinfo(DATATYPE_TO_DTYPE[datatype])
        if n and (wide.min() < info.min or wide.max() > info.max):
            raise InvalidInput(
                f"Tensor '{name}': {datatype} data has values outside [{info.min}, {info.max}]"
            )
        arr = wide.astype(DATATYPE_TO_DTYPE[datatype])
    else:
        arr = np.array(values, dtype=DATATYPE_TO_DTYPE[datatype])
    if n == count:
        return arr
    if n == 0:
        # TensorFlow reads an empty field as zeros (empty strings).
        return np.full(count, b"" if datatype == "BYTES" else 0, dtype=arr.dtype)
    # ... and pads a shorter one with its last value.
    return np.concatenate([arr, np.full(count - n, arr[-1], dtype=arr.dtype)])


def tensor_from_proto(name: str, proto: Any) -> Tensor:
    """A TensorProto as a Tensor; InvalidInput for anything TensorFlow would refuse."""
    datatype = datatype_of(proto.dtype, name)
    shape_proto = proto.tensor_shape
    if shape_proto.unknown_rank:
        raise InvalidInput(f"Tensor '{name}': a tensor of unknown rank cannot be fed")
    shape, count = check_shape([d.size for d in shape_proto.dim], name)
    if proto.tensor_content:
        if datatype == "BYTES":
            raise InvalidInput(f"Tensor '{name}': DT_STRING values must be sent in string_val")
        data = array_from_raw(proto.tensor_content, datatype, shape, count, name)
    else:
        data = _typed(proto, datatype, count, name).reshape(shape)
    return Tensor(name, datatype, shape, data)


def tensor_to_proto(tensor: Tensor, proto: Any, raw: bool) -> None:
    """Fill ``proto`` with ``tensor``: ``tensor_content`` when ``raw``, else its typed field."""
    datatype = tensor.datatype
    dt = DATATYPE_TO_DT.get(datatype)
    if dt is None:
        raise InvalidInput(f"Output '{tensor.name}': {datatype} has no TensorFlow dtype")
    proto.dtype = _DT_NUMBER[dt]
    dims = proto.tensor_shape.dim
    for size in tensor.shape:
        dims.add(size=size)
    flat = tensor.data.reshape(-1)
    if datatype == "BYTES":
        proto.string_val.extend(x if isinstance(x, bytes) else str(x).encode("utf-8") for x in flat)
    elif raw:
        proto.tensor_content = array_to_raw(tensor.data, datatype)
    elif datatype == "FP16":
        bits = flat.astype("<f2").view(np.uint16)
        proto.half_val.extend(bits.tolist())
    else:
        getattr(proto, TYPED_FIELD[datatype]).extend(flat.tolist())


def uses_tensor_content(request: Any) -> bool:
    """Whether any input of a PredictRequest came as ``tensor_content`` (answered the same way)."""
    return any(proto.tensor_content for proto in request.inputs.values())


def predict_inputs(request: Any) -> list[Tensor]:
    """The input tensors of a PredictRequest, by alias."""
    if not request.inputs:
        raise InvalidInput("Predict request must have at least one input")
    return [tensor_from_proto(name, proto) for name, proto in request.inputs.items()]


def output_filter(request: Any) -> list[RequestedOutput] | None:
    """The outputs a PredictRequest asks for (None: all), each once."""
    names = list(request.output_filter)
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise InvalidInput(f"duplicate output tensor alias: {duplicate}")
    return [RequestedOutput(n) for n in names] or None


def fill_model_spec(spec: Any, name: str, version: str, signature_name: str) -> None:
    """The effective ModelSpec of an answer: name, version number and signature used."""
    spec.name = name
    if version.isdigit():
        spec.version.value = int(version)
    spec.signature_name = signature_name


def predict_response(response: InferResponse, signature_name: str, raw: bool) -> Any:
    """The PredictResponse of an inference: each output by alias."""
    message = tfs.PredictResponse()
    fill_model_spec(
        message.model_spec, response.model_name, response.model_version or "", signature_name
    )
    for tensor in response.outputs:
        tensor_to_proto(tensor, message.outputs[tensor.name], raw)
    return message

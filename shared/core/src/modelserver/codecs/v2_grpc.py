"""Open Inference Protocol v2 over gRPC: ModelInferRequest/Response to and from our types.

Both tensor carriers are read: typed ``contents`` and ``raw_input_contents``.
Answers are raw (``raw_output_contents``), as Triton always answers and as
hand-written clients read them (``raw_output_contents[0]``); tritonclient,
KServe's and MLServer's clients all decode raw. Typed answers
(``raw=False``) remain for callers that want them, except where a datatype
has no typed field (FP16), which forces raw for the whole response.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import protos as pb
from ..datatypes import DATATYPE_TO_DTYPE
from ..errors import InvalidInput
from ..types import InferRequest, InferResponse, RequestedOutput, Tensor
from .tensor_data import (
    SHM_REGION,
    SharedMemoryReader,
    array_from_raw,
    array_from_shared_memory,
    array_to_raw,
    check_datatype,
    check_input_count,
    check_shape,
    shared_memory_ref,
    without_shared_memory,
)

#: The typed-contents field that carries each datatype (FP16 has none).
CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_NARROW = frozenset(["INT8", "INT16", "UINT8", "UINT16"])


def parameters_from_proto(params: Any) -> dict[str, Any]:
    """A protobuf parameter map as a plain dict of Python values."""
    if not params:
        return {}
    out: dict[str, Any] = {}
    for key, value in params.items():
        which = value.WhichOneof("parameter_choice")
        out[key] = getattr(value, which) if which else None
    return out


def parameters_to_proto(target: Any, params: dict[str, Any]) -> None:
    """Write plain Python parameter values into a protobuf parameter map."""
    for key, value in params.items():
        slot = target[key]
        if isinstance(value, bool):
            slot.bool_param = value
        elif isinstance(value, int):
            if value >= 0 and value > 2**63 - 1:
                slot.uint64_param = value
            else:
                slot.int64_param = value
        elif isinstance(value, float):
            slot.double_param = value
        else:
            slot.string_param = str(value)


def _typed_array(
    tensor: Any, datatype: str, shape: tuple[int, ...], count: int, name: str
) -> np.ndarray:
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidInput(f"Tensor '{name}': {datatype} data must be sent in raw_input_contents")
    values = getattr(tensor.contents, field)
    if len(values) != count:
        raise InvalidInput(
            f"Tensor '{name}': shape {list(shape)} needs {count} elements, "
            f"{field} has {len(values)}"
        )
    if datatype == "BYTES":
        arr = np.empty(count, dtype=object)
        arr[:] = list(values)
        return arr.reshape(shape)
    dtype = DATATYPE_TO_DTYPE[datatype]
    if datatype in _NARROW:
        wide = np.array(values, dtype=np.int64)
        info = np.iinfo(dtype)
        if count and (wide.min() < info.min or wide.max() > info.max):
            raise InvalidInput(
                f"Tensor '{name}': {datatype} data has values outside [{info.min}, {info.max}]"
            )
        return wide.astype(dtype).reshape(shape)
    return np.array(values, dtype=dtype).reshape(shape)


def decode_infer_request(
    msg: Any, shared_memory: SharedMemoryReader | None = None, max_inputs: int | None = None
) -> InferRequest:
    """Decode a ModelInferRequest; InvalidInput for anything inconsistent.

    ``raw_input_contents`` holds one entry per input that is not in shared
    memory, in order (as tritonclient sends them). More than ``max_inputs``
    inputs are refused before any is looked at.
    """
    if not msg.inputs:
        raise InvalidInput("Inference request must have at least one input")
    check_input_count(len(msg.inputs), max_inputs, msg.model_name)
    params = [parameters_from_proto(t.parameters) for t in msg.inputs]
    refs = [shared_memory_ref(p, t.name) for p, t in zip(params, msg.inputs, strict=True)]
    raw = msg.raw_input_contents
    carried = sum(1 for ref in refs if ref is None)
    if raw and len(raw) != carried:
        raise InvalidInput(
            f"raw_input_contents has {len(raw)} entries for {carried} inputs "
            "(those not in shared memory)"
        )
    inputs: list[Tensor] = []
    seen: set[str] = set()
    next_raw = 0
    for index, tensor in enumerate(msg.inputs):
        name = tensor.name
        if not name:
            raise InvalidInput(f"Input {index} must have a name")
        if name in seen:
            raise InvalidInput(f"Input '{name}' appears more than once")
        seen.add(name)
        datatype = tensor.datatype
        check_datatype(datatype, name)
        shape, count = check_shape(list(tensor.shape), name)
        ref = refs[index]
        tensor_params = params[index]
        if ref is not None:
            if tensor.HasField("contents"):
                raise InvalidInput(f"Input '{name}' has contents as well as a shared memory region")
            data = array_from_shared_memory(ref, shared_memory, datatype, shape, count)
            tensor_params = without_shared_memory(tensor_params)
        elif raw:
            if tensor.HasField("contents"):
                raise InvalidInput(f"Input '{name}' has both contents and raw_input_contents")
            data = array_from_raw(raw[next_raw], datatype, shape, count, name)
            next_raw += 1
        else:
            data = _typed_array(tensor, datatype, shape, count, name)
        inputs.append(Tensor(name, datatype, shape, data, tensor_params))
    outputs = None
    if msg.outputs:
        outputs = [
            RequestedOutput(o.name, parameters_from_proto(o.parameters)) for o in msg.outputs
        ]
    return InferRequest(
        model_name=msg.model_name,
        model_version=msg.model_version or None,
        id=msg.id or None,
        inputs=inputs,
        outputs=outputs,
        parameters=parameters_from_proto(msg.parameters),
    )


#: Top-level fields read to size a message's decoding; more mean many inputs.
SCAN_FIELDS = 64
#: ``raw_input_contents``: copied whole and viewed zero-copy, whatever their size.
_RAW_CONTENTS = 7


def decode_size(raw: bytes) -> int:
    """How many bytes of a serialized ModelInferRequest decoding walks element by element.

    Everything but ``raw_input_contents`` counts (inputs with typed contents,
    parameters): those become Python values one by one, while raw contents are
    copied whole and read zero-copy, so a large tensor sent raw is cheap. Only
    the top-level fields are read, at most ``SCAN_FIELDS`` of them: a message
    of more (many inputs) counts whole, as does wire data that does not parse
    (the parser will say what is wrong).
    """
    end = len(raw)
    pos = walked = 0
    for _ in range(SCAN_FIELDS):
        if pos == end:
            return walked
        key, pos = _varint(raw, pos)
        wire = key & 7
        if pos < 0:
            return end
        if wire == 2:
            length, pos = _varint(raw, pos)
            if pos < 0:
                return end
            if key >> 3 != _RAW_CONTENTS:
                walked += length
            pos += length
        elif wire == 0:
            pos = _varint(raw, pos)[1]
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            return end
        if pos < 0 or pos > end:
            return end
    return walked if pos == end else end


def _varint(raw: bytes, pos: int) -> tuple[int, int]:
    """A protobuf varint at ``pos``: its value and the position after it (-1 if cut off)."""
    value = shift = 0
    while pos < len(raw) and shift < 64:
        byte = raw[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    return 0, -1


def parse_and_decode(raw: bytes, limits: dict[str, int | None]) -> InferRequest:
    """A serialized ModelInferRequest, parsed and decoded (where a large one goes off the loop).

    ``limits``: each served model's ``max_inputs``. A message for a model not
    in it is parsed but not decoded (no inputs): the caller answers NOT_FOUND.
    Unparseable bytes raise protobuf's ``DecodeError``.
    """
    msg = pb.ModelInferRequest.FromString(raw)
    if msg.model_name not in limits:
        return InferRequest(
            model_name=msg.model_name,
            model_version=msg.model_version or None,
            id=msg.id or None,
            inputs=[],
        )
    return decode_infer_request(msg, None, limits[msg.model_name])


def encode_infer_response(response: InferResponse, raw: bool = True) -> Any:
    """Build the ModelInferResponse; ``raw`` selects raw_output_contents."""
    msg = pb.ModelInferResponse(model_name=response.model_name)
    if response.model_version:
        msg.model_version = response.model_version
    if response.id:
        msg.id = response.id
    if response.parameters:
        parameters_to_proto(msg.parameters, response.parameters)
    if not raw and any(t.datatype not in CONTENTS_FIELD for t in response.outputs):
        raw = True
    for tensor in response.outputs:
        out = msg.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        if tensor.parameters:
            parameters_to_proto(out.parameters, tensor.parameters)
        if SHM_REGION in tensor.parameters:
            # Written to shared memory: no data, an empty entry keeps raw indices aligned.
            if raw:
                msg.raw_output_contents.append(b"")
        elif raw:
            msg.raw_output_contents.append(array_to_raw(tensor.data, tensor.datatype))
        else:
            field = getattr(out.contents, CONTENTS_FIELD[tensor.datatype])
            flat = tensor.data.reshape(-1)
            if tensor.datatype == "BYTES":
                field.extend(x if isinstance(x, bytes) else str(x).encode("utf-8") for x in flat)
            else:
                field.extend(flat.tolist())
    return msg

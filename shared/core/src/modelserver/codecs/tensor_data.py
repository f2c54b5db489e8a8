"""Tensor data to and from its wire forms: JSON values, raw bytes, BYTES framing.

Shared by every codec. Each function validates what it is given against the
declared datatype and shape before any allocation that the shape alone would
size, so a request cannot make the server allocate what it did not send.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..datatypes import DATATYPE_TO_DTYPE, FLOAT_DATATYPES, INTEGER_DATATYPES
from ..errors import InvalidInput

#: More dimensions than any real model uses; bounds the work of validation.
MAX_RANK = 32

#: Bound on the product of the non-zero dimensions: numpy's limit for 8-byte elements.
MAX_EXTENT = 2**60

_LEN = struct.Struct("<I")


#: Requests of up to this many inputs are always decoded: cheap, and then the
#: model's own check names the input it does not take (a misspelt column).
ALWAYS_DECODED = 64


def check_input_count(count: int, limit: int | None, model: str) -> None:
    """Refuse a request of more inputs than the model can take, before any is decoded.

    ``limit`` is what the model's declared inputs can hold, or ``--max_inputs``
    for a model that takes any (``ServedModel.max_inputs``); None checks nothing.
    Checked first, it keeps a request of a million one-element inputs from
    costing a million tensors before its 400. A request of a few inputs
    (``ALWAYS_DECODED``) is decoded whatever the limit, so that its error names
    the wrong input rather than counting them; it also spares a model of several
    signatures (declared by its default one) a count that is not its own.
    """
    if limit is not None and count > max(limit, ALWAYS_DECODED):
        raise InvalidInput(f"The request has {count} inputs; model '{model}' takes at most {limit}")


def check_datatype(datatype: Any, name: str) -> np.dtype:
    """The numpy dtype for a declared datatype, or InvalidInput naming the tensor."""
    if not isinstance(datatype, str):
        raise InvalidInput(f"Tensor '{name}': 'datatype' must be a string")
    dtype = DATATYPE_TO_DTYPE.get(datatype)
    if dtype is None:
        raise InvalidInput(
            f"Tensor '{name}': unsupported datatype '{datatype}'; "
            f"expected one of {', '.join(DATATYPE_TO_DTYPE)}"
        )
    return dtype


def check_shape(shape: Any, name: str) -> tuple[tuple[int, ...], int]:
    """Validate a declared shape; return it as a tuple with its element count.

    The count is computed with Python integers, so a huge or overflowing shape
    is caught here (it can never match the data sent) instead of wrapping.
    """
    if not isinstance(shape, list | tuple):
        raise InvalidInput(f"Tensor '{name}': 'shape' must be a list of integers")
    if len(shape) > MAX_RANK:
        raise InvalidInput(
            f"Tensor '{name}': shape has {len(shape)} dimensions, more than {MAX_RANK}"
        )
    extent = 1
    for dim in shape:
        if type(dim) is not int:
            raise InvalidInput(f"Tensor '{name}': shape {list(shape)} must hold only integers")
        if dim < 0:
            raise InvalidInput(f"Tensor '{name}': shape {list(shape)} has a negative dimension")
        extent *= max(dim, 1)
    if extent >= MAX_EXTENT:
        # numpy cannot even describe such an array, empty or not.
        raise InvalidInput(f"Tensor '{name}': shape {list(shape)} is too large")
    return tuple(shape), math.prod(shape)


def _leaves(data: list[Any], name: str) -> Iterator[Any]:
    """The non-list items of nested lists, depth first, without recursion.

    JSON may nest far deeper than Python's recursion limit; nesting deeper
    than any tensor's rank is refused.
    """
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                if len(stack) > MAX_RANK:
                    raise InvalidInput(
                        f"Tensor '{name}': data nested deeper than {MAX_RANK} levels"
                    )
                stack.append(iter(item))
                break
            yield item
        else:
            stack.pop()


def _flatten_strings(data: list[Any], out: list[bytes], name: str) -> None:
    for item in _leaves(data, name):
        if isinstance(item, str):
            out.append(item.encode("utf-8"))
        elif isinstance(item, bytes):
            out.append(item)
        else:
            raise InvalidInput(
                f"Tensor '{name}': BYTES data must hold strings, got {type(item).__name__}"
            )


def array_from_json(
    data: Any, datatype: str, shape: tuple[int, ...], count: int, name: str
) -> np.ndarray:
    """Build the numpy array for JSON ``data`` (flat or nested) of a declared tensor.

    Values of the wrong kind (strings for numbers, floats for integers, numbers
    for BOOL), values out of the datatype's range, ragged nesting and an
    element count that disagrees with the shape are all InvalidInput.
    """
    if not isinstance(data, list):
        data = [data]
    if datatype == "BYTES":
        flat: list[bytes] = []
        _flatten_strings(data, flat, name)
        if len(flat) != count:
            raise InvalidInput(
                f"Tensor '{name}': shape {list(shape)} needs {count} elements, data has {len(flat)}"
            )
        arr = np.empty(count, dtype=object)
        arr[:] = flat
        return arr.reshape(shape)
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInput(
            f"Tensor '{name}': data is not a regular array of {datatype}: {exc}"
        ) from None
    if arr.size != count:
        raise InvalidInput(
            f"Tensor '{name}': shape {list(shape)} needs {count} elements, data has {arr.size}"
        )
    kind = arr.dtype.kind
    if count and datatype in INTEGER_DATATYPES and kind in "fO":
        # numpy infers float64 (or object) for ints beyond int64 mixed with
        # others (e.g. [0, 2**64-1]); decide element by element instead.
        return _exact_integers(data, datatype, shape, name)
    if count:
        _check_kind(kind, arr, datatype, name)
    return arr.astype(DATATYPE_TO_DTYPE[datatype], copy=False).reshape(shape)


def _exact_integers(
    data: list[Any], datatype: str, shape: tuple[int, ...], name: str
) -> np.ndarray:
    values = list(_leaves(data, name))
    info = np.iinfo(DATATYPE_TO_DTYPE[datatype])
    for value in values:
        if type(value) is not int:
            what = (
                "fractional numbers" if isinstance(value, float) else "values that are not integers"
            )
            raise InvalidInput(f"Tensor '{name}': {datatype} data holds {what}")
        if value < info.min or value > info.max:
            raise InvalidInput(
                f"Tensor '{name}': {datatype} data has values outside [{info.min}, {info.max}]"
            )
    return np.array(values, dtype=DATATYPE_TO_DTYPE[datatype]).reshape(shape)


def _check_kind(kind: str, arr: np.ndarray, datatype: str, name: str) -> None:
    if datatype == "BOOL":
        if kind != "b":
            raise InvalidInput(f"Tensor '{name}': BOOL data must hold true/false values")
        return
    if kind in "US":
        raise InvalidInput(f"Tensor '{name}': {datatype} data holds strings where numbers belong")
    if datatype in FLOAT_DATATYPES:
        if kind not in "iuf":
            raise InvalidInput(f"Tensor '{name}': {datatype} data must hold numbers")
        return
    if datatype in INTEGER_DATATYPES:
        if kind not in "iu":
            what = "fractional numbers" if kind == "f" else "values that are not integers"
            raise InvalidInput(f"Tensor '{name}': {datatype} data holds {what}")
        info = np.iinfo(DATATYPE_TO_DTYPE[datatype])
        if arr.min() < info.min or arr.max() > info.max:
            raise InvalidInput(
                f"Tensor '{name}': {datatype} data has values outside [{info.min}, {info.max}]"
            )


def parse_bytes_elements(buf: memoryview | bytes, count: int, name: str) -> np.ndarray:
    """Split length-prefixed BYTES elements (4-byte little-endian length, then data)."""
    items: list[bytes] = []
    view = memoryview(buf)
    offset, end = 0, len(view)
    while offset < end:
        if offset + 4 > end:
            raise InvalidInput(f"Tensor '{name}': truncated BYTES element length")
        (length,) = _LEN.unpack_from(view, offset)
        offset += 4
        if offset + length > end:
            raise InvalidInput(f"Tensor '{name}': BYTES element runs past the end of its data")
        items.append(bytes(view[offset : offset + length]))
        offset += length
        if len(items) > count:
            break
    if len(items) != count:
        raise InvalidInput(
            f"Tensor '{name}': expected {count} BYTES elements, data holds {len(items)}"
        )
    arr = np.empty(count, dtype=object)
    arr[:] = items
    return arr


def array_from_raw(
    buf: memoryview | bytes, datatype: str, shape: tuple[int, ...], count: int, name: str
) -> np.ndarray:
    """A zero-copy numpy view of raw little-endian tensor bytes (BYTES: parsed)."""
    if datatype == "BYTES":
        return parse_bytes_elements(buf, count, name).reshape(shape)
    dtype = DATATYPE_TO_DTYPE[datatype]
    expected = count * dtype.itemsize
    if len(buf) != expected:
        raise InvalidInput(
            f"Tensor '{name}': {datatype} shape {list(shape)} needs {expected} bytes, "
            f"got {len(buf)}"
        )
    return np.frombuffer(buf, dtype=dtype).reshape(shape)


def _as_bytes(item: Any) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode("utf-8")
    return str(item).encode("utf-8")


def serialize_bytes_elements(arr: np.ndarray) -> bytes:
    """Length-prefix every element of a BYTES tensor, in row-major order."""
    parts: list[bytes] = []
    for item in arr.reshape(-1):
        b = _as_bytes(item)
        parts.append(_LEN.pack(len(b)))
        parts.append(b)
    return b"".join(parts)


def array_to_raw(arr: np.ndarray, datatype: str) -> bytes:
    """Raw little-endian bytes of a tensor, as the binary extension and gRPC carry it."""
    if datatype == "BYTES":
        return serialize_bytes_elements(arr)
    dtype = DATATYPE_TO_DTYPE[datatype]
    if arr.dtype != dtype:
        arr = arr.astype(dtype)
    return arr.tobytes(order="C")


def array_to_json(arr: np.ndarray, datatype: str) -> Any:
    """A value orjson serialises as the flat JSON ``data`` of a tensor.

    Numeric arrays go to orjson as contiguous numpy (no Python objects made);
    BYTES become strings.
    """
    if datatype == "BYTES":
        return [
            item.decode("utf-8", errors="replace") if isinstance(item, bytes) else str(item)
            for item in arr.reshape(-1)
        ]
    dtype = DATATYPE_TO_DTYPE[datatype]
    if arr.dtype != dtype:
        arr = arr.astype(dtype)
    return np.ascontiguousarray(arr.reshape(-1))


# -- Triton's shared-memory parameters ------------------------------------------------------

SHM_REGION = "shared_memory_region"
SHM_OFFSET = "shared_memory_offset"
SHM_BYTE_SIZE = "shared_memory_byte_size"
_SHM_KEYS = (SHM_REGION, SHM_OFFSET, SHM_BYTE_SIZE)


@dataclass(frozen=True, slots=True)
class SharedMemoryRef:
    """Where a tensor's data lies: ``byte_size`` bytes at ``offset`` of a registered region."""

    tensor: str
    region: str
    offset: int
    byte_size: int


#: The bytes a reference points at (the data plane's registry provides it).
SharedMemoryReader = Callable[[SharedMemoryRef], memoryview]


def shared_memory_ref(params: dict[str, Any], name: str) -> SharedMemoryRef | None:
    """The shared-memory reference in a tensor's parameters; None when it has none."""
    if not params or (SHM_REGION not in params and SHM_BYTE_SIZE not in params):
        return None
    region = params.get(SHM_REGION)
    size = params.get(SHM_BYTE_SIZE)
    offset = params.get(SHM_OFFSET, 0)
    if not isinstance(region, str) or not region:
        raise InvalidInput(f"Tensor '{name}': shared_memory_byte_size needs shared_memory_region")
    return SharedMemoryRef(
        name, region, _size(offset, SHM_OFFSET, name), _size(size, SHM_BYTE_SIZE, name)
    )


def _size(value: Any, key: str, name: str) -> int:
    if type(value) is not int or value < 0:
        raise InvalidInput(f"Tensor '{name}': {key} must be a non-negative integer, got {value!r}")
    return value


def without_shared_memory(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k not in _SHM_KEYS}


def array_from_shared_memory(
    ref: SharedMemoryRef,
    reader: SharedMemoryReader | None,
    datatype: str,
    shape: tuple[int, ...],
    count: int,
) -> np.ndarray:
    """The input's data in place in its region: a zero-copy, read-only view (BYTES parsed)."""
    if reader is None:
        raise InvalidInput(
            f"Input '{ref.tensor}' is in shared memory, which this server does not take "
            "(start it with --allow_shared_memory)"
        )
    return array_from_raw(reader(ref), datatype, shape, count, ref.tensor)

"""Open Inference Protocol datatypes and their numpy equivalents.

One table, used by every codec, so REST and gRPC agree on what each datatype
means, how many bytes an element takes and which JSON values it accepts.
"""

from __future__ import annotations

import numpy as np

#: OIP datatype name -> numpy dtype (little-endian, as the binary formats are).
DATATYPE_TO_DTYPE: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}

_KIND_SIZE_TO_DATATYPE: dict[tuple[str, int], str] = {
    ("b", 1): "BOOL",
    ("u", 1): "UINT8",
    ("u", 2): "UINT16",
    ("u", 4): "UINT32",
    ("u", 8): "UINT64",
    ("i", 1): "INT8",
    ("i", 2): "INT16",
    ("i", 4): "INT32",
    ("i", 8): "INT64",
    ("f", 2): "FP16",
    ("f", 4): "FP32",
    ("f", 8): "FP64",
}

INTEGER_DATATYPES = frozenset(
    ["UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"]
)
FLOAT_DATATYPES = frozenset(["FP16", "FP32", "FP64"])


def dtype_of(datatype: str) -> np.dtype | None:
    """The numpy dtype for an OIP datatype, or None when the name is unknown."""
    return DATATYPE_TO_DTYPE.get(datatype)


def datatype_of(dtype: np.dtype) -> str:
    """The OIP datatype for a numpy dtype.

    Strings, bytes and Python objects all travel as BYTES; anything else that
    has no OIP equivalent (complex numbers, datetimes) is an error of the
    model, not of the request.
    """
    kind = dtype.kind
    if kind in "OSU":
        return "BYTES"
    found = _KIND_SIZE_TO_DATATYPE.get((kind, dtype.itemsize))
    if found is None:
        raise TypeError(f"numpy dtype {dtype} has no Open Inference Protocol datatype")
    return found


def element_size(datatype: str) -> int:
    """Bytes per element in the binary formats; 0 for the variable-size BYTES."""
    if datatype == "BYTES":
        return 0
    return DATATYPE_TO_DTYPE[datatype].itemsize


def config_datatype(datatype: str) -> str:
    """Triton's model-configuration name of a datatype: ``TYPE_FP32``; BYTES is ``TYPE_STRING``."""
    if datatype == "BYTES":
        return "TYPE_STRING"
    return f"TYPE_{datatype}" if datatype in DATATYPE_TO_DTYPE else "TYPE_INVALID"

"""MLServer's content types: how a client says a tensor is to be read.

MLServer's codecs mark a request and each of its inputs with
``parameters.content_type``: ``np`` (a numpy array, as shaped), ``pd`` (the
inputs are the columns of one DataFrame), ``str`` (UTF-8 strings), ``base64``
(binary data, each element base64-encoded) and ``datetime`` (ISO 8601 text).
A request built with ``mlserver.codecs`` reaches the model as MLServer would
hand it over: strings and datetimes as N rows of one value (a 1-D array when
the tensor is ``[N]`` or ``[N, 1]``), base64 decoded to the bytes it encodes.
Answers to such a request mark their outputs as MLServer's codecs would
encode them: ``np`` for arrays of numbers and ``str`` for text (MLServer's
numpy codec reads BYTES back as fixed-width buffers, which garbles strings
of different lengths), so ``NumpyRequestCodec.decode_response`` and friends
read them back. A request without content types costs nothing here.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

import numpy as np

from ..errors import InvalidInput
from ..types import InferRequest, Tensor

CONTENT_TYPE = "content_type"
NUMPY = "np"
PANDAS = "pd"
STRING = "str"
BASE64 = "base64"
DATETIME = "datetime"
#: The content types this server reads; others are refused by name.
KNOWN = frozenset([NUMPY, PANDAS, STRING, BASE64, DATETIME])


def content_type(parameters: dict[str, Any]) -> str | None:
    """The content type in a parameters mapping, checked; None when there is none."""
    if not parameters:
        return None
    value = parameters.get(CONTENT_TYPE)
    if value is None:
        return None
    if value not in KNOWN:
        raise InvalidInput(
            f"Unknown content_type {value!r}; this server reads {', '.join(sorted(KNOWN))}"
        )
    return str(value)


def uses_content_types(request: InferRequest) -> bool:
    """Whether the request or any of its inputs carries a content type."""
    if request.parameters and CONTENT_TYPE in request.parameters:
        return True
    return any(t.parameters and CONTENT_TYPE in t.parameters for t in request.inputs)


def _values(tensor: Tensor) -> np.ndarray:
    """N rows of one value: a tensor of shape [N] or [N, 1] as 1-D, any other as it is."""
    data = tensor.data
    if data.ndim == 0:
        return data.reshape(1)
    if data.ndim >= 2 and all(d == 1 for d in data.shape[1:]):
        return data.reshape(data.shape[0])
    return data


def _text(item: Any) -> str:
    return item.decode("utf-8", errors="replace") if isinstance(item, bytes) else str(item)


def _decode_each(tensor: Tensor, data: np.ndarray, convert: Any, what: str) -> np.ndarray:
    out = np.empty(data.shape, dtype=object)
    flat = out.reshape(-1)
    for i, item in enumerate(data.reshape(-1)):
        try:
            flat[i] = convert(item)
        except (ValueError, TypeError, binascii.Error) as exc:
            raise InvalidInput(
                f"Input '{tensor.name}' (content_type {what}): element {i} is not valid: {exc}"
            ) from None
    return out


def _from_base64(item: Any) -> bytes:
    return base64.b64decode(item, validate=True)


def _from_iso(item: Any) -> datetime:
    return datetime.fromisoformat(_text(item))


def decode(tensor: Tensor, fallback: str | None = None) -> np.ndarray | None:
    """The tensor as its content type (else ``fallback``) reads; None when it has none.

    ``np`` (and no content type) leave the data as the protocol decoded it.
    """
    kind = content_type(tensor.parameters) or fallback
    if kind is None or kind in (NUMPY, PANDAS):
        return None
    if tensor.datatype != "BYTES":
        raise InvalidInput(f"Input '{tensor.name}': content_type {kind} needs BYTES data")
    data = _values(tensor)
    if kind == STRING:
        return _decode_each(tensor, data, _text, kind)
    if kind == BASE64:
        return _decode_each(tensor, data, _from_base64, kind)
    return _decode_each(tensor, data, _from_iso, kind)


def output_content_types(request: InferRequest, outputs: list[Tensor]) -> None:
    """Mark the outputs as MLServer's runtimes do, for a request that used content types."""
    if not uses_content_types(request):
        return
    for tensor in outputs:
        kind = STRING if tensor.datatype == "BYTES" else NUMPY
        tensor.parameters = {**tensor.parameters, CONTENT_TYPE: kind}

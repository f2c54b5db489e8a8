"""The response cache: an identical request is answered without running the model again.

Off unless ``--response_cache_size`` is above 0. Two requests are identical
when they are for the same model and version and carry the same inputs
(name, datatype, shape, parameters and data), ask for the same outputs (with
the same per-output parameters) and have the same request parameters; the
request's id is not part of it, nor are the parameters that only say how the
bytes travel (the binary extension's, shared memory's). The key is a BLAKE2b
digest of those, taken on the *decoded* tensors: the same tensor sent as
JSON, with the binary extension or over gRPC is one entry's, and two bodies
that differ only in whitespace or number spelling are one request.

A hit skips preprocess, batching, compute and packing: the kept output
tensors come back under the new request's id (fresh ``Tensor`` objects over
the same read-only arrays, so what a protocol adds to one answer never
reaches another). A miss runs the pipeline and keeps its answer; errors are
never kept. Entries are evicted least recently used first, to stay within
both ``--response_cache_size`` entries and ``--response_cache_bytes`` bytes
of output data (an answer larger than that is not kept). A reload or an
unload forgets every entry of that model (``ServedModel.stop``), and an
instance that stopped keeps nothing more. The cache belongs to one process:
with ``--workers`` each worker has its own.

Hashing costs about a microsecond per kilobyte of input; inputs larger than
``INLINE_HASH_BYTES`` are hashed in a thread so the event loop keeps serving.
The event loop is the only user of the table itself, so it needs no lock.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from ..codecs.tensor_data import SHM_BYTE_SIZE, SHM_OFFSET, SHM_REGION
from ..observability import metrics
from ..types import InferRequest, InferResponse, Tensor

#: Inputs up to this many bytes are hashed on the event loop; larger ones in a thread.
INLINE_HASH_BYTES = 256 * 1024
#: What one kept tensor costs beyond its data (the object, its name, shape, parameters).
TENSOR_OVERHEAD = 256
#: What one element of a BYTES tensor costs beyond its bytes.
ELEMENT_OVERHEAD = 40

_SEPARATOR = b"\x00"

#: Parameters that say how bytes travel, not what they are: left out of the key.
TRANSPORT = frozenset(
    {"binary_data", "binary_data_output", "binary_data_size", SHM_REGION, SHM_OFFSET, SHM_BYTE_SIZE}
)


def input_bytes(request: InferRequest) -> int:
    """How much input data the key of ``request`` covers (what hashing it costs)."""
    return sum(t.data.nbytes for t in request.inputs)


def request_key(request: InferRequest, version: str) -> bytes:
    """The digest of everything that decides the answer to ``request`` (not its id)."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(version.encode())
    digest.update(_SEPARATOR)
    digest.update(_canonical(_meaning(request.parameters)))
    for tensor in request.inputs:
        digest.update(_canonical([tensor.name, tensor.datatype, list(tensor.shape)]))
        digest.update(_canonical(_meaning(tensor.parameters)))
        _update_data(digest, tensor.data)
    outputs = (
        None
        if request.outputs is None
        else [[o.name, _meaning(o.parameters)] for o in request.outputs]
    )
    digest.update(_canonical(outputs))
    return digest.digest()


def _meaning(parameters: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in parameters.items() if k not in TRANSPORT}


def _canonical(value: Any) -> bytes:
    """``value`` as bytes that are equal exactly when the values are (keys sorted)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=repr) + _SEPARATOR


def _update_data(digest: Any, data: np.ndarray) -> None:
    if data.dtype.kind != "O":
        contiguous = np.ascontiguousarray(data)
        digest.update(contiguous.dtype.str.encode())
        digest.update(contiguous.reshape(-1).view(np.uint8).data)
        return
    # BYTES: each element with its kind and length, so no two lists of elements collide.
    for item in data.reshape(-1).tolist():
        if isinstance(item, bytes):
            raw, kind = item, b"b"
        elif isinstance(item, str):
            raw, kind = item.encode("utf-8", "surrogatepass"), b"s"
        else:
            raw, kind = repr(item).encode(), b"o"
        digest.update(kind + len(raw).to_bytes(8, "little"))
        digest.update(raw)


def _frozen(tensor: Tensor) -> tuple[Tensor, int]:
    """A copy of ``tensor`` that no later change can reach, and its size in bytes."""
    data = np.array(tensor.data, copy=True)
    data.flags.writeable = False
    if data.dtype.kind == "O":
        size = sum(len(v) if isinstance(v, bytes | str) else 8 for v in data.reshape(-1).tolist())
        size += ELEMENT_OVERHEAD * data.size
    else:
        size = data.nbytes
    kept = Tensor(tensor.name, tensor.datatype, tensor.shape, data, dict(tensor.parameters))
    return kept, size + TENSOR_OVERHEAD


@dataclass(slots=True)
class Entry:
    """One kept answer."""

    outputs: tuple[Tensor, ...]
    parameters: dict[str, Any]
    size: int

    def response(self, model: str, version: str, request_id: str | None) -> InferResponse:
        """The answer to a new request: new tensors over the kept (read-only) data."""
        return InferResponse(
            model_name=model,
            model_version=version,
            id=request_id,
            outputs=[
                Tensor(t.name, t.datatype, t.shape, t.data, dict(t.parameters))
                for t in self.outputs
            ],
            parameters=dict(self.parameters),
        )


@dataclass
class ResponseCache:
    """Kept answers by (model, request digest), least recently used first."""

    max_entries: int
    max_bytes: int
    size: int = 0
    _entries: OrderedDict[tuple[str, bytes], Entry] = field(default_factory=OrderedDict)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, model: str, key: bytes) -> Entry | None:
        entry = self._entries.get((model, key))
        if entry is not None:
            self._entries.move_to_end((model, key))
        return entry

    def put(self, model: str, key: bytes, response: InferResponse) -> None:
        """Keep ``response`` for ``key``, evicting the least recently used to make room."""
        kept = [_frozen(t) for t in response.outputs]
        size = sum(s for _, s in kept)
        if size > self.max_bytes:
            return
        old = self._entries.pop((model, key), None)
        if old is not None:
            self.size -= old.size
        self._entries[(model, key)] = Entry(
            tuple(t for t, _ in kept), dict(response.parameters), size
        )
        self.size += size
        while len(self._entries) > self.max_entries or self.size > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.size -= evicted.size
        self._report()

    def drop(self, model: str) -> int:
        """Forget every entry of ``model`` (a reload or unload); how many there were."""
        keys = [k for k in self._entries if k[0] == model]
        for key in keys:
            self.size -= self._entries.pop(key).size
        self._report()
        return len(keys)

    def _report(self) -> None:
        metrics.CACHE_ENTRIES.set(len(self._entries))
        metrics.CACHE_BYTES.set(self.size)

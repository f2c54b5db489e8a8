"""Triton's system shared memory: tensors passed through POSIX shared memory.

A co-located client (a sidecar, a pre-processing process) creates a region
in ``/dev/shm`` (tritonclient's ``shared_memory`` utilities do), registers
it under a name, and then names it in an input's or requested output's
``shared_memory_region`` / ``_offset`` / ``_byte_size`` parameters instead
of sending the data. Inputs are read as numpy views on the mapping (no copy
at all); outputs are written into it, and the answer carries only their
name, shape and datatype.

Safety, since the names come from the network:

* only regions a client registered are ever used, and registering opens only
  a regular file directly in ``/dev/shm`` (no path, no symlink);
* every access is bounds-checked against the region and against the file's
  size now (a region the client shrank since is a 400, not a read past the
  end of the file), offsets and sizes as non-negative integers;
* inputs are read-only views; an unregistered region stays mapped until the
  requests still reading it finish, and every region is let go at shutdown.

Registration is off unless ``--allow_shared_memory`` is given (as Triton's
``--allow-client-shm``): a client that may register names could otherwise
read or overwrite any shared memory of the server's own pod.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import stat
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..codecs.tensor_data import SharedMemoryRef, serialize_bytes_elements
from ..datatypes import DATATYPE_TO_DTYPE
from ..errors import InvalidInput
from ..types import Tensor

logger = logging.getLogger(__name__)

#: Where POSIX shared memory objects live on Linux (what shm_open opens).
SHM_DIR = "/dev/shm"


@dataclass(slots=True)
class Region:
    """One registered region: a window of a shared memory object, mapped."""

    name: str
    key: str
    offset: int
    byte_size: int
    fd: int
    mapping: mmap.mmap

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "key": self.key,
            "offset": self.offset,
            "byte_size": self.byte_size,
        }

    def window(self, offset: int, byte_size: int, what: str) -> memoryview:
        """``byte_size`` bytes at ``offset`` of the region, checked against it and the file."""
        if offset < 0 or byte_size < 0 or offset + byte_size > self.byte_size:
            raise InvalidInput(
                f"{what}: {byte_size} bytes at offset {offset} do not fit in shared memory "
                f"region '{self.name}' of {self.byte_size} bytes"
            )
        end = self.offset + offset + byte_size
        size = os.fstat(self.fd).st_size
        if end > size:
            raise InvalidInput(
                f"{what}: shared memory region '{self.name}' ({self.key}) is now {size} bytes, "
                f"smaller than when it was registered; register it again"
            )
        start = self.offset + offset
        return memoryview(self.mapping)[start : start + byte_size]

    def close(self) -> None:
        # A request still reading it keeps it mapped until its arrays go.
        with contextlib.suppress(BufferError):
            self.mapping.close()
        os.close(self.fd)


def _shm_path(key: str) -> str:
    """The file of a shared memory key ("/name" or "name"), refusing anything but a name."""
    name = key.lstrip("/")
    if not name or "/" in name or "\x00" in name or name in (".", "..") or len(name) > 255:
        raise InvalidInput(
            f"Shared memory key {key!r} is not the name of a POSIX shared memory object"
        )
    return os.path.join(SHM_DIR, name)


def _non_negative(value: Any, what: str) -> int:
    if type(value) is not int or value < 0:
        raise InvalidInput(f"'{what}' must be a non-negative integer, got {value!r}")
    return value


class SharedMemoryRegistry:
    """The regions registered with this server process, by name."""

    def __init__(self) -> None:
        self.regions: dict[str, Region] = {}

    def register(self, name: str, key: Any, offset: Any, byte_size: Any) -> None:
        if not isinstance(name, str) or not name:
            raise InvalidInput("A shared memory region needs a name")
        if not isinstance(key, str):
            raise InvalidInput("'key' must be the name of a shared memory object (a string)")
        offset = _non_negative(offset, "offset")
        byte_size = _non_negative(byte_size, "byte_size")
        if name in self.regions:
            raise InvalidInput(
                f"Shared memory region '{name}' is already registered; unregister it first"
            )
        path = _shm_path(key)
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise InvalidInput(f"Cannot open shared memory {key!r}: {exc.strerror}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise InvalidInput(f"Shared memory {key!r} is not a shared memory object")
            if offset + byte_size > info.st_size:
                raise InvalidInput(
                    f"Shared memory region '{name}': {byte_size} bytes at offset {offset} do "
                    f"not fit in {key!r} of {info.st_size} bytes"
                )
            mapping = mmap.mmap(fd, offset + byte_size) if offset + byte_size else None
        except BaseException:
            os.close(fd)
            raise
        if mapping is None:
            os.close(fd)
            raise InvalidInput(f"Shared memory region '{name}' must not be empty (byte_size 0)")
        self.regions[name] = Region(name, key, offset, byte_size, fd, mapping)
        logger.info("shared memory region %s registered: %s, %d bytes", name, key, byte_size)

    def unregister(self, name: str | None = None) -> None:
        """Let go of one region (unknown names are fine, as Triton's), or of every one."""
        names = list(self.regions) if not name else [name]
        for each in names:
            region = self.regions.pop(each, None)
            if region is not None:
                region.close()
                logger.info("shared memory region %s unregistered", each)

    def status(self, name: str | None = None) -> list[dict[str, Any]]:
        if name:
            return [self._region(name).status()]
        return [region.status() for region in self.regions.values()]

    def _region(self, name: str) -> Region:
        region = self.regions.get(name)
        if region is None:
            raise InvalidInput(f"Unable to find system shared memory region: '{name}'")
        return region

    def read(self, ref: SharedMemoryRef) -> memoryview:
        """An input's bytes: a read-only view on the mapping."""
        window = self._region(ref.region).window(ref.offset, ref.byte_size, f"Input '{ref.tensor}'")
        return window.toreadonly()

    def write(self, ref: SharedMemoryRef, tensor: Tensor) -> int:
        """Write an output's raw bytes into its region; the number of bytes written."""
        if tensor.datatype == "BYTES":
            raw = np.frombuffer(serialize_bytes_elements(tensor.data), dtype=np.uint8)
        else:
            typed = tensor.data.astype(DATATYPE_TO_DTYPE[tensor.datatype], copy=False)
            raw = np.ascontiguousarray(typed).reshape(-1).view(np.uint8)
        if raw.nbytes > ref.byte_size:
            raise InvalidInput(
                f"Output '{tensor.name}' needs {raw.nbytes} bytes; shared memory region "
                f"'{ref.region}' was given {ref.byte_size} for it"
            )
        window = self._region(ref.region).window(ref.offset, raw.nbytes, f"Output '{ref.tensor}'")
        np.frombuffer(window, dtype=np.uint8)[:] = raw
        return int(raw.nbytes)

    def close(self) -> None:
        self.unregister()

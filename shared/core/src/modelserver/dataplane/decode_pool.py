"""Large request bodies are decoded in a child process, so the event loop never waits on them.

Decoding JSON is one long C call (orjson) that holds the GIL: a thread does
not free the loop, and a 60 MB body of a million small inputs held every
other request, readiness probes included, for seconds, and left the server
a gigabyte larger. Bodies above ``INLINE_DECODE_BYTES`` of JSON (or gRPC
messages that large) are therefore decoded in one child process, started on
the first such body, and only the decoded request (numpy arrays, compact)
comes back. The child drops what the parse built and hands its memory back
to the system after each body, so a hostile body costs it memory only while
it is being refused. Smaller bodies decode inline: they take well under a
millisecond per 10 kB and the round trip would cost more than it saves.

Inputs in Triton's shared memory live in this process's registry; a server
that takes them (``--allow_shared_memory``) decodes inline.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import multiprocessing
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from ..errors import ServerBusy

logger = logging.getLogger("modelserver.dataplane")

T = TypeVar("T")

#: Larger JSON (or gRPC messages) is decoded in the child; orjson parses this much in ~2 ms.
INLINE_DECODE_BYTES = 512 * 1024

#: What the child imports once, before its first body (the codecs and their numpy).
_PRELOAD = [
    "modelserver.codecs.v2_rest",
    "modelserver.codecs.v2_grpc",
    "modelserver.codecs.v1",
    "modelserver.codecs.mlflow",
]


class DecodePool:
    """Where a body is decoded: inline when small, else in the child process."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._pool: ProcessPoolExecutor | None = None
        self._starting = asyncio.Lock()

    def offloads(self, size: int) -> bool:
        """Whether a body of ``size`` bytes to decode goes to the child."""
        return self.enabled and size > INLINE_DECODE_BYTES

    async def decode(self, size: int, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``, in the child when ``size`` is large; its exceptions raise here.

        ``fn`` must be a module-level function (the child imports it by name).
        """
        if not self.offloads(size):
            return fn(*args)
        pool = await self._executor()
        try:
            result: T = await asyncio.get_running_loop().run_in_executor(pool, _run, fn, args)
        except BrokenProcessPool:
            self._discard(pool)
            logger.error("the decoding process ended while decoding a %d-byte body", size)
            raise ServerBusy(
                "The request could not be decoded: the decoding process ended (out of "
                "memory?); retry, or send smaller requests"
            ) from None
        return result

    async def _executor(self) -> ProcessPoolExecutor:
        """The pool, its child started in a thread: starting it waits on the new process."""
        async with self._starting:
            if self._pool is None:
                loop = asyncio.get_running_loop()
                self._pool = await loop.run_in_executor(None, _start_pool)
        return self._pool

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        if self._pool is pool:
            self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the child (at shutdown); a later body would start a new one."""
        if self._pool is not None:
            self._discard(self._pool)


def _start_pool() -> ProcessPoolExecutor:
    # forkserver: a clean process forks the child, not this one with its threads.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)
    pool = ProcessPoolExecutor(1, mp_context=context, initializer=_child_started)
    pool.submit(int).result()  # the child is up (the pool starts it on the first task)
    return pool


def _child_started() -> None:
    # Ctrl-C reaches the whole process group; the server decides when the child ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run(fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    """In the child: decode, then give back the memory the parse took."""
    try:
        return fn(*args)
    finally:
        _trim()


def _trim() -> None:
    """Return freed heap to the system (glibc keeps it otherwise)."""
    global _malloc_trim
    if _malloc_trim is None:
        name = ctypes.util.find_library("c")
        libc = ctypes.CDLL(name) if name else None
        _malloc_trim = getattr(libc, "malloc_trim", False) if libc is not None else False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim: Any = None

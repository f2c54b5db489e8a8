"""Dropping the queued work of a client that has left.

A request that waits (in the batching queue or for a pool thread) is raced
against its client's disconnect; if the client goes first, the work is
cancelled, so a batch not yet started leaves it out and a pool job not yet
started never runs. Inline predicts finish before anything could notice, so
they are not watched and pay nothing. gRPC needs none of this: grpc.aio
cancels the handler when its client goes, and the cancellation reaches the
same awaits.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .errors import ClientDisconnected

T = TypeVar("T")

#: Set by the REST transport once a request's body is read: awaits its disconnect.
watch: contextvars.ContextVar[Callable[[], Awaitable[None]] | None] = contextvars.ContextVar(
    "modelserver_disconnect_watch", default=None
)


async def wait_for_disconnect(receive: Callable[[], Awaitable[dict[str, Any]]]) -> None:
    """Return when ASGI ``receive`` reports that the client closed the connection."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def abandon_on_disconnect(work: Awaitable[T]) -> T:
    """Await ``work``, cancelling it if the current request's client disconnects first."""
    factory = watch.get()
    if factory is None:
        return await work
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(factory())
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        watcher.cancel()
        raise
    if task in done:
        watcher.cancel()
        return task.result()
    task.cancel()
    raise ClientDisconnected("The client closed the connection before the answer was ready")

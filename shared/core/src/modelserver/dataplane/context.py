"""What a transport tells the data plane about one request, handed down explicitly.

The transport knows how its client can leave (an ASGI disconnect; grpc.aio
cancels the handler itself) and the admission step knows whether a time limit
applies and which trace records the request. Both travel down to the
pipeline in this object, never through variables read across layers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from ..errors import ClientDisconnected

if TYPE_CHECKING:
    from ..observability.tracing import RequestTrace

T = TypeVar("T")


@dataclass(slots=True)
class RequestContext:
    """One inference request's circumstances, from the transport and admission."""

    #: Protocol label for metrics and traces (``v2-rest``, ``v1-rest``, ``v2-grpc``).
    protocol: str = ""
    #: When the request's time limit runs out (event-loop time), None without
    #: one. Predict runs inline under a limit only when it has proved fast
    #: enough to finish well inside what is left (``PredictRunner.inline_for``);
    #: otherwise it runs in the pool, where the limit can interrupt the wait.
    deadline: float | None = None
    #: Returns when the client has left (REST); None where the transport
    #: cancels the handler itself (gRPC) or cannot tell.
    disconnected: Callable[[], Awaitable[None]] | None = None
    #: The request's trace, when tracing is on.
    trace: RequestTrace | None = None

    @property
    def limited(self) -> bool:
        """A time limit applies to this request."""
        return self.deadline is not None


async def abandon_on_disconnect(
    work: Awaitable[T], disconnected: Callable[[], Awaitable[None]] | None
) -> T:
    """Await ``work``, cancelling it if the client leaves first.

    A request that waits (in the batching queue or for a pool thread) is
    raced against its client's disconnect; if the client goes first the work
    is cancelled, so a batch not yet started leaves it out and a pool job not
    yet started never runs. Inline predicts finish before anything could
    notice, so the pipeline does not watch them.
    """
    if disconnected is None:
        return await work
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(disconnected())
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

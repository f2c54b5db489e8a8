"""The wrapper around every inference, REST or gRPC: admission, timeout, metrics, trace.

One place decides what happens around a request so both transports count,
limit and trace the same way, and it builds the request's context that the
pipeline reads (whether a time limit applies, the trace, how to notice the
client leaving). With every feature off it adds a counter increment, two
clock reads and one histogram observation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TypeVar

from ..errors import ClientDisconnected, DeadlineExceeded, ModelServerError
from ..observability import metrics, tracing
from .context import RequestContext
from .policy import RequestPolicy
from .repository import ModelRepository

T = TypeVar("T")

UNKNOWN_MODEL = "<unknown>"


class _Tally:
    """One request's admission, metrics and trace, from admission to its end."""

    __slots__ = (
        "admitted",
        "error",
        "grpc_status",
        "metrics",
        "policy",
        "protocol",
        "start",
        "status",
        "trace",
    )

    def __init__(
        self,
        gate: InferenceGate,
        model_name: str,
        ctx: RequestContext,
        grpc_status: bool,
        headers: Iterable[tuple[str | bytes, str | bytes]],
    ) -> None:
        self.policy = gate.policy
        self.protocol = ctx.protocol
        self.grpc_status = grpc_status
        if gate.record_metrics:
            label = model_name if model_name in gate.repository.models else UNKNOWN_MODEL
            self.metrics: metrics.ModelMetrics | None = metrics.for_model(label)
            metrics.INFLIGHT.inc()
        else:
            self.metrics = None
        self.trace = (
            tracing.begin(headers, model=model_name, protocol=ctx.protocol)
            if tracing.enabled()
            else None
        )
        ctx.trace = self.trace
        self.start = time.perf_counter()
        self.status: int | str = "OK" if grpc_status else 200
        self.error: str | None = None
        self.admitted = False

    def admit(self, ctx: RequestContext, deadline_s: float | None) -> float | None:
        """Count the request in (ServerBusy past the limit); its time limit, if any.

        The limit becomes the context's deadline (event-loop time).
        """
        self.policy.admit()
        self.admitted = True
        limit = self.policy.limit(deadline_s)
        if limit is not None:
            ctx.deadline = asyncio.get_running_loop().time() + limit
        return limit

    def failed(self, exc: BaseException, cancelled: ModelServerError | None = None) -> None:
        """Record why the request failed; ``cancelled`` says what a cancellation means."""
        grpc = self.grpc_status
        if isinstance(exc, ModelServerError):
            self.status = exc.grpc_code if grpc else exc.http_status
            self.error = exc.message
        elif isinstance(exc, asyncio.CancelledError | GeneratorExit):
            if cancelled is not None:
                self.status = cancelled.grpc_code if grpc else cancelled.http_status
            else:
                # Not a failure of the server: the gRPC client cancelled (or its
                # deadline ran out), or shutdown cut the request off, which REST
                # answers 503 (protocol/rest/app.py).
                self.status = "CANCELLED" if grpc else 503
            self.error = "cancelled before the answer was ready"
        else:
            self.status = "INTERNAL" if grpc else 500
            self.error = f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        if self.admitted:
            self.policy.release()
            self.admitted = False
        if self.metrics is not None:
            metrics.INFLIGHT.dec()
            self.metrics.request(self.protocol, self.status, time.perf_counter() - self.start)
            self.metrics = None
        if self.trace is not None:
            self.trace.finish(self.status, self.error)
            self.trace = None


class InferenceGate:
    """Admission, timeout, metrics and tracing for inference requests."""

    def __init__(
        self, repository: ModelRepository, policy: RequestPolicy, record_metrics: bool = True
    ) -> None:
        self.repository = repository
        self.policy = policy
        self.record_metrics = record_metrics

    async def serve(
        self,
        model_name: str,
        ctx: RequestContext,
        work: Callable[[RequestContext], Awaitable[T]],
        *,
        grpc_status: bool = False,
        deadline_s: float | None = None,
        headers: Iterable[tuple[str | bytes, str | bytes]] = (),
    ) -> T:
        """Run ``work(ctx)`` for one inference; errors propagate after being counted."""
        tally = _Tally(self, model_name, ctx, grpc_status, headers)
        try:
            limit = tally.admit(ctx, deadline_s)
            return await self.policy.bounded(work(ctx), ctx.deadline, limit)
        except BaseException as exc:
            tally.failed(exc)
            raise
        finally:
            tally.close()

    async def open_stream(
        self,
        model_name: str,
        ctx: RequestContext,
        start: Callable[[RequestContext], AsyncIterator[T]],
        *,
        grpc_status: bool = False,
        deadline_s: float | None = None,
        headers: Iterable[tuple[str | bytes, str | bytes]] = (),
    ) -> AsyncIterator[T]:
        """A streamed inference: its items, admitted, timed, counted and traced until the last.

        The first item is awaited here, so everything that fails before it
        (an unknown model, a bad prompt, a full server) raises from this call
        and can still be answered with a status; what fails later ends the
        stream with the error. The request holds its admission until the
        stream ends, and its time limit bounds the whole stream. A stream
        closed before its end (the client left) is counted as cancelled.
        """
        tally = _Tally(self, model_name, ctx, grpc_status, headers)
        try:
            limit = tally.admit(ctx, deadline_s)
            deadline = ctx.deadline
            items = start(ctx)
            first = await _next(items, deadline, limit)
        except BaseException as exc:
            tally.failed(exc)
            tally.close()
            raise
        return self._held(items, first, tally, deadline, limit)

    @staticmethod
    async def _held(
        items: AsyncIterator[T],
        first: T | _End,
        tally: _Tally,
        deadline: float | None,
        limit: float | None,
    ) -> AsyncIterator[T]:
        try:
            item = first
            while not isinstance(item, _End):
                yield item
                item = await _next(items, deadline, limit)
        except BaseException as exc:
            tally.failed(exc, cancelled=ClientDisconnected("the client left"))
            raise
        finally:
            close = getattr(items, "aclose", None)
            if close is not None:
                await close()
            tally.close()


class _End:
    """A stream's end (what ``_next`` returns instead of raising StopAsyncIteration)."""


async def _next(items: AsyncIterator[T], deadline: float | None, limit: float | None) -> T | _End:
    """The next item, within what is left of the stream's time limit."""
    try:
        if deadline is None:
            return await anext(items)
        remaining = deadline - asyncio.get_running_loop().time()
        return await asyncio.wait_for(anext(items), max(remaining, 0.0))
    except StopAsyncIteration:
        return _End()
    except TimeoutError:
        raise DeadlineExceeded(f"Request timed out after {limit:.3g}s") from None

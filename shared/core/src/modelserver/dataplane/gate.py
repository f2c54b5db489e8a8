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
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from ..errors import ModelServerError
from ..observability import metrics, tracing
from .context import RequestContext
from .policy import RequestPolicy
from .repository import ModelRepository

T = TypeVar("T")

UNKNOWN_MODEL = "<unknown>"


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
        if self.record_metrics:
            label = model_name if model_name in self.repository.models else UNKNOWN_MODEL
            model_metrics: metrics.ModelMetrics | None = metrics.for_model(label)
            metrics.INFLIGHT.inc()
        else:
            model_metrics = None
        trace = (
            tracing.begin(headers, model=model_name, protocol=ctx.protocol)
            if tracing.enabled()
            else None
        )
        ctx.trace = trace
        start = time.perf_counter()
        status: int | str = "OK" if grpc_status else 200
        error: str | None = None
        policy = self.policy
        admitted = False
        try:
            policy.admit()
            admitted = True
            limit = policy.limit(deadline_s)
            ctx.limited = limit is not None
            return await policy.bounded(work(ctx), limit)
        except ModelServerError as exc:
            status = exc.grpc_code if grpc_status else exc.http_status
            error = exc.message
            raise
        except asyncio.CancelledError:
            # Not a failure of the server: the gRPC client cancelled (or its
            # deadline ran out), or shutdown cut the request off, which REST
            # answers 503 (protocol/rest/app.py).
            status = "CANCELLED" if grpc_status else 503
            error = "cancelled before the answer was ready"
            raise
        except BaseException as exc:
            status = "INTERNAL" if grpc_status else 500
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            if admitted:
                policy.release()
            if model_metrics is not None:
                metrics.INFLIGHT.dec()
                model_metrics.request(ctx.protocol, status, time.perf_counter() - start)
            if trace is not None:
                trace.finish(status, error)

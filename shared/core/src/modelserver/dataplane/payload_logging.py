"""KServe's request/response logger: each inference sent to a sink as a CloudEvent.

``--logger_url`` and ``--logger_mode all|request|response``. Events go out in
CloudEvents binary HTTP mode (the ``ce-*`` headers carry the attributes, the
body is the v2 JSON of the request or response) from a background task, through
a queue bounded by events (``--logger_queue_size``) and by the bytes of the
tensors they hold (``--logger_queue_bytes``): inference never waits for the
sink, and when the sink is slow or down events are dropped and counted
(``modelserver_logger_events_total``), never buffered without bound. An
event's tensors are released as soon as it is sent or dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from ..codecs.v2_rest import encode_infer_request_json, encode_infer_response
from ..observability.metrics import LOGGER_EVENTS
from ..types import InferRequest, InferResponse, Tensor

logger = logging.getLogger(__name__)

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
MODES = ("all", "request", "response")
MIN_BACKOFF_S = 0.1
MAX_BACKOFF_S = 5.0

Event = tuple[str, str, InferRequest, InferResponse | None, int]
"""(CloudEvent type, id, request, response or None, bytes it holds)."""


def _tensor_bytes(tensors: Iterable[Tensor]) -> int:
    """What the tensors keep alive: their buffers, and each string of a BYTES tensor."""
    total = 0
    for tensor in tensors:
        data = tensor.data
        total += data.nbytes
        if data.dtype == object:
            total += sum(len(x) if isinstance(x, bytes | str) else 8 for x in data.flat)
    return total


class PayloadLogger:
    """A bounded queue of inference events and the task that posts them."""

    def __init__(
        self,
        url: str,
        mode: str = "all",
        queue_size: int = 1024,
        queue_bytes: int = 64 * 1024 * 1024,
        timeout_s: float = 5.0,
        senders: int = 2,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"logger mode must be one of {MODES}, got {mode!r}")
        self.url = url
        self.log_requests = mode in ("all", "request")
        self.log_responses = mode in ("all", "response")
        self.queue: asyncio.Queue[Event] = asyncio.Queue(queue_size)
        self.queue_bytes = queue_bytes
        #: Bytes held by queued events; an event over the budget is dropped.
        self.queued_bytes = 0
        self.timeout_s = timeout_s
        self.source = f"urn:modelserver:{socket.gethostname()}"
        self._senders = senders
        self._tasks: list[asyncio.Task[None]] = []
        self._client: Any = None
        self._sent = LOGGER_EVENTS.labels("sent")
        self._dropped = LOGGER_EVENTS.labels("dropped")
        self._failed = LOGGER_EVENTS.labels("failed")
        self._backoff = 0.0
        self._paused_until = 0.0

    def start(self) -> None:
        import httpx

        self._client = httpx.AsyncClient(timeout=self.timeout_s)
        self._tasks = [
            asyncio.get_running_loop().create_task(self._send_forever(), name=f"logger-{i}")
            for i in range(self._senders)
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None:
            await self._client.aclose()

    def record_request(self, request: InferRequest) -> None:
        """Queue a request's event as it arrives (so failed inferences are logged too)."""
        if self.log_requests:
            size = _tensor_bytes(request.inputs)
            self._put((REQUEST_TYPE, request.id or uuid.uuid4().hex, request, None, size))

    def record_response(self, request: InferRequest, response: InferResponse) -> None:
        """Queue a response's event; its ce-id is the request's."""
        if self.log_responses:
            size = _tensor_bytes(response.outputs)
            self._put((RESPONSE_TYPE, request.id or uuid.uuid4().hex, request, response, size))

    def _put(self, event: Event) -> None:
        if self._paused_until and time.monotonic() < self._paused_until:
            self._dropped.inc()  # the sink is failing: not even queued, costs nothing
            return
        size = event[4]
        if self.queued_bytes + size > self.queue_bytes:
            self._dropped.inc()
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self._dropped.inc()
            return
        self.queued_bytes += size

    def _take(self) -> Event:
        event = self.queue.get_nowait()
        self.queued_bytes -= event[4]
        return event

    async def _send_forever(self) -> None:
        while True:
            event = await self.queue.get()
            self.queued_bytes -= event[4]
            kind, event_id, request, response, _ = event
            del event
            try:
                if response is None:
                    body = encode_infer_request_json(request)
                else:
                    body, _ = encode_infer_response(response, None)
                headers = {
                    "ce-specversion": "1.0",
                    "ce-id": event_id,
                    "ce-type": kind,
                    "ce-source": self.source,
                    "ce-time": datetime.now(UTC).isoformat(),
                    "ce-inferenceservicename": request.model_name,
                    "ce-modelname": request.model_name,
                    "ce-requestid": event_id,
                    "content-type": "application/json",
                }
                reply = await self._client.post(self.url, content=body, headers=headers)
                if reply.status_code >= 400:
                    self._failed.inc()
                else:
                    self._sent.inc()
                    self._backoff = 0.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed.inc()
                self._pause(exc)
            finally:
                # The tensors go now, not when the next event replaces these names.
                request = response = None  # type: ignore[assignment]

    def _pause(self, exc: Exception) -> None:
        """After a failed send, drop events for a while (doubling, up to 5 s).

        A sink that is down would otherwise cost a connection attempt and an
        exception per event, on the same CPU as inference.
        """
        self._backoff = min(MAX_BACKOFF_S, max(MIN_BACKOFF_S, self._backoff * 2))
        self._paused_until = time.monotonic() + self._backoff
        dropped = 0
        while not self.queue.empty():
            self._take()
            dropped += 1
        if dropped:
            self._dropped.inc(dropped)
        logger.warning(
            "request logger sink %s failed (%s); dropping events for %.1fs",
            self.url,
            type(exc).__name__,
            self._backoff,
        )

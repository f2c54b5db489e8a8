"""uvicorn's httptools protocol with the limits a server facing the open network needs.

uvicorn closes a keep-alive connection only after it has answered once; a
connection that never sends anything, trickles its headers or stops halfway
through its body is held forever, and a few thousand of them exhaust the file
descriptors (slowloris). Here every phase of a connection has a time limit:

* idle (a new connection, or between requests): ``--http_keepalive_timeout``,
  above the 60 s idle timeout of Envoy/Istio in front of KServe, so the
  proxy, not us, closes idle pooled connections first and never races us;
* from a request's first byte until its headers end: ``--http_header_timeout``;
* between two pieces of a request's body: ``--http_body_timeout``; a body
  that stops arriving is answered 408 and the connection closed.

Errors found below the application (a malformed request line or
Content-Length, a transfer coding other than chunked, the limits above) are
answered like every other error, ``{"error": "..."}`` as JSON, then the
connection is closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a request we refuse."""


def _error_bytes(status: int, message: str) -> bytes:
    body = orjson.dumps({"error": message})
    return b"".join(
        [
            STATUS_LINE[status],
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            b"connection: close\r\n\r\n",
            body,
        ]
    )


class GuardedHttpProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with header and body time limits and JSON protocol errors."""

    header_timeout: float = 30.0
    body_timeout: float = 60.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase_timer: asyncio.TimerHandle | None = None
        self._refusal: tuple[int, str] | None = None

    # -- timers ---------------------------------------------------------------

    def _arm(self, seconds: float, status: int, message: str) -> None:
        self._disarm()
        if seconds > 0:
            self._phase_timer = self.loop.call_later(seconds, self._expired, status, message)

    def _disarm(self) -> None:
        if self._phase_timer is not None:
            self._phase_timer.cancel()
            self._phase_timer = None

    def _expired(self, status: int, message: str) -> None:
        self._phase_timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or not cycle.response_started:
            self.transport.write(_error_bytes(status, message))
        if cycle is not None and not cycle.response_complete:
            # The application's receive() now reports a disconnect.
            cycle.disconnected = True
            cycle.message_event.set()
        self.logger.warning("%s; closing the connection", message)
        self.transport.close()

    # -- connection and parser callbacks ----------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Idle from the start, not only after a first answer.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm(
            self.header_timeout,
            408,
            f"Request headers not complete within {self.header_timeout:g}s",
        )

    def on_headers_complete(self) -> None:
        for name, value in self.headers:
            if name == b"transfer-encoding" and value.strip().lower() != b"chunked":
                self._refusal = (
                    501,
                    f"Transfer-Encoding {value.decode('latin-1')!r} is not supported; "
                    "send the body as is, or chunked",
                )
                raise _Refused()
        super().on_headers_complete()
        self._arm_body()

    def _arm_body(self) -> None:
        self._arm(
            self.body_timeout,
            408,
            f"Request body stopped arriving for {self.body_timeout:g}s",
        )

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._arm_body()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """Parser errors (and requests refused while parsing) as JSON, then close."""
        status, message = self._refusal or (400, f"Malformed HTTP request: {msg}")
        self._refusal = None
        self._disarm()
        self.transport.write(_error_bytes(status, message))
        self.transport.close()


def guarded_protocol(header_timeout: float, body_timeout: float) -> type[GuardedHttpProtocol]:
    """The protocol class for one server's limits."""
    return type(
        "GuardedHttpProtocol",
        (GuardedHttpProtocol,),
        {"header_timeout": header_timeout, "body_timeout": body_timeout},
    )

"""A CloudEvents sink for the request logger's tests: it records, waits, is slow or down."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Sink:
    """A CloudEvents receiver on a free loopback port, recording what it gets."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.events: list[dict] = []
        #: A sink that is down: every connection is closed unanswered.
        self.down = False
        self.lock = threading.Lock()
        self.delay_s = delay_s
        self.concurrent = 0
        self.max_concurrent = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                if sink.down:
                    self.close_connection = True
                    return
                with sink.lock:
                    sink.concurrent += 1
                    sink.max_concurrent = max(sink.max_concurrent, sink.concurrent)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if sink.delay_s:
                    time.sleep(sink.delay_s)
                with sink.lock:
                    sink.concurrent -= 1
                    sink.events.append(
                        {
                            "path": self.path,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": body,
                        }
                    )
                self.send_response(202)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                """Keep the sink's own request log out of the test output."""

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/events"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Sink:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def snapshot(self) -> list[dict]:
        with self.lock:
            return list(self.events)

    def wait(self, predicate, what: str, timeout: float = 15.0) -> list[dict]:
        """Poll until ``predicate(events)`` holds; the events then."""
        deadline = time.monotonic() + timeout
        while True:
            events = self.snapshot()
            if predicate(events):
                return events
            if time.monotonic() > deadline:
                raise AssertionError(f"sink: timed out waiting for {what}; got {events}")
            time.sleep(0.02)

    def of(self, event_id: str) -> list[dict]:
        return [e for e in self.snapshot() if e["headers"].get("ce-id") == event_id]

"""Start a target, time its cold start, keep it running, stop it.

Cold start is measured from just before exec to the first 200 from
``/v2/health/ready`` and to the first correct inference answer, polled every
few milliseconds from the harness. Each server runs in its own session so it
and any children it forks can be stopped together by its process-group id.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from . import checks
from .paths import Paths
from .system import CpuLayout
from .targets import Ports, Target

POLL_S = 0.005


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports() -> Ports:
    return Ports(free_port(), free_port(), free_port())


@dataclass
class ColdStart:
    ready_s: float
    first_answer_s: float


class ServerError(RuntimeError):
    """A server under test did not start, or answered wrongly."""


class Server:
    """One running server process (tree) of a target."""

    def __init__(self, target: Target, paths: Paths, layout: CpuLayout, log_dir: Path):
        self.target = target
        self.paths = paths
        self.layout = layout
        self.ports = free_ports()
        launch = target.build(paths, self.ports)
        self.argv = [*layout.server_prefix(), *launch.argv]
        self.cwd = launch.cwd
        self.log_path = log_dir / f"{target.label}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.ports.http}{path}"

    def start(self, expected: list[int], timeout_s: float = 120.0) -> ColdStart:
        """Exec the server and wait for readiness and a correct answer; returns the timings."""
        self._log = self.log_path.open("ab")
        self._log.write(f"\n=== {' '.join(self.argv)}\n".encode())
        self._log.flush()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if self.target.venv is not None:
            # A PYTHONPATH meant for our venv (e.g. a snapshot of our sources) stays out of theirs.
            env.pop("PYTHONPATH", None)
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = t0 + timeout_s
        ready = self._poll(deadline, self._is_ready) - t0
        answer = self._poll(deadline, lambda: self._answers(expected)) - t0
        return ColdStart(ready, answer)

    def _poll(self, deadline: float, probe: Callable[[], bool]) -> float:
        while True:
            if not self.alive():
                raise ServerError(
                    f"{self.target.label} exited with {self.proc.returncode if self.proc else '?'}"
                    f"; see {self.log_path}"
                )
            if probe():
                return time.perf_counter()
            if time.perf_counter() > deadline:
                raise ServerError(f"{self.target.label} not ready in time; see {self.log_path}")
            time.sleep(POLL_S)

    def _is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url("/v2/health/ready"), timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _answers(self, expected: list[int]) -> bool:
        body = (self.paths.payloads / f"{self.target.payloads}v2-1.json").read_bytes()
        result = checks.check_rest(
            self.url("/v2/models/iris/infer"), body, checks.JSON_HEADERS, expected
        )
        return result.ok

    def stop(self, grace_s: float = 15.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace_s)
        # Children (an inference pool, --workers) share the session the server leads.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

"""``--workers N``: N server processes sharing the ports (SO_REUSEPORT), kept alive.

SIGTERM/SIGINT are passed on to every worker, which drains and exits. A
worker that dies on its own (killed by the OOM killer, a crash in native
code) is logged with its signal or exit code and replaced, after a backoff
that grows while replacements keep dying; the others serve meanwhile. Past
``--worker_restarts_per_minute`` replacements in a minute, or when a worker
exits because it cannot start at all (exit 2: a bad model file, a port),
the supervisor stops the others and exits non-zero with one clear line, so
the orchestrator restarts the pod instead of looping.

Metrics stay one view: every worker writes its samples under
``PROMETHEUS_MULTIPROC_DIR``; a dead worker's gauges of live values are
dropped (``mark_process_dead``) while its counters are kept, so the summed
totals never go back.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import deque
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any

from ..model.base import Model
from ..observability.logs import configure_logging
from ..settings import Settings
from . import ports
from .process import CANNOT_START, serve_process

logger = logging.getLogger("modelserver")

#: First wait before replacing a dead worker; doubles per quick death, up to MAX_BACKOFF_S.
BACKOFF_S = 0.5
MAX_BACKOFF_S = 10.0
#: A worker that lived this long resets the backoff.
STABLE_S = 30.0


def _worker(model_class: type[Model], settings: Settings) -> None:
    sys.exit(serve_process(model_class, settings, reuse_port=True))


def describe_exit(code: int | None) -> str:
    """``killed by SIGKILL`` or ``exited with code 3``."""
    if code is None:
        return "is still running"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class Supervisor:
    """Starts the workers, forwards signals, replaces the ones that die."""

    def __init__(self, model_class: type[Model], settings: Settings) -> None:
        self.model_class = model_class
        self.settings = settings
        self.ctx = multiprocessing.get_context("spawn")
        self.slots: list[BaseProcess | None] = [None] * settings.workers
        self.started_at: dict[int, float] = {}
        self.restarts: deque[float] = deque()
        #: slot -> monotonic time its replacement is due
        self.pending: dict[int, float] = {}
        self.backoff: dict[int, float] = {}
        self.stopping = False
        self.code = 0

    def _start(self, slot: int) -> None:
        proc = self.ctx.Process(
            target=_worker, args=(self.model_class, self.settings), name=f"worker-{slot}"
        )
        proc.start()
        self.slots[slot] = proc
        self.started_at[slot] = time.monotonic()
        logger.info("worker-%d started (pid %s)", slot, proc.pid)

    def forward(self, signum: int, frame: Any = None) -> None:
        self.stopping = True
        self.pending.clear()
        for proc in self.slots:
            if proc is not None and proc.pid is not None and proc.is_alive():
                os.kill(proc.pid, signum)

    def _fail(self, message: str, code: int) -> None:
        logger.error("%s; stopping the other workers", message)
        self.code = self.code or code
        self.forward(signal.SIGTERM)

    def _died(self, slot: int, proc: BaseProcess) -> None:
        from prometheus_client import multiprocess

        proc.join()
        self.slots[slot] = None
        if proc.pid is not None:
            multiprocess.mark_process_dead(proc.pid)
        code = proc.exitcode
        if self.stopping:
            return
        what = f"worker-{slot} (pid {proc.pid}) {describe_exit(code)}"
        if code == CANNOT_START:
            self._fail(f"{what}: it cannot start (see its error above)", CANNOT_START)
            return
        now = time.monotonic()
        self.restarts.append(now)
        while self.restarts and now - self.restarts[0] > 60.0:
            self.restarts.popleft()
        limit = self.settings.worker_restarts_per_minute
        if len(self.restarts) > limit:
            self._fail(
                f"{what}; {len(self.restarts)} workers died within a minute "
                f"(--worker_restarts_per_minute={limit})",
                1,
            )
            return
        lived = now - self.started_at.get(slot, now)
        backoff = (
            BACKOFF_S
            if lived >= STABLE_S
            else min(MAX_BACKOFF_S, self.backoff.get(slot, BACKOFF_S / 2) * 2)
        )
        self.backoff[slot] = backoff
        self.pending[slot] = now + backoff
        logger.error("%s; replacing it in %.1fs", what, backoff)

    def run(self) -> int:
        for slot in range(len(self.slots)):
            self._start(slot)
        logger.info("started %d workers", len(self.slots))
        while any(p is not None for p in self.slots) or self.pending:
            timeout = None
            if self.pending:
                timeout = max(0.0, min(self.pending.values()) - time.monotonic())
            alive = {p.sentinel: (slot, p) for slot, p in enumerate(self.slots) if p is not None}
            ready = wait(list(alive), timeout)
            for sentinel in ready:
                if isinstance(sentinel, int):
                    slot, proc = alive[sentinel]
                    self._died(slot, proc)
            now = time.monotonic()
            for slot, due in list(self.pending.items()):
                if due <= now and not self.stopping:
                    del self.pending[slot]
                    self._start(slot)
        return self.code


def supervise(model_class: type[Model], settings: Settings) -> int:
    """Run ``settings.workers`` server processes until they stop; the exit code."""
    configure_logging(settings.log_level, settings.log_format)
    try:
        ports.check(settings.host, settings.http_port, True, "HTTP", "http_port")
        if settings.enable_grpc:
            ports.check(settings.host, settings.grpc_port, True, "gRPC", "grpc_port")
    except ports.PortUnavailable as exc:
        logger.error("cannot start: %s", exc)
        return CANNOT_START
    metrics_dir = tempfile.mkdtemp(prefix="modelserver-metrics-")
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", metrics_dir)
    supervisor = Supervisor(model_class, settings)
    signal.signal(signal.SIGTERM, supervisor.forward)
    signal.signal(signal.SIGINT, supervisor.forward)
    try:
        return supervisor.run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)

"""``--workers N``: N server processes sharing the ports (SO_REUSEPORT).

SIGTERM/SIGINT are passed on; if any worker dies the others are stopped and
the exit code is non-zero, so the orchestrator restarts the pod rather than
keep a server that silently lost capacity.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
from multiprocessing.connection import wait
from typing import Any

from ..model.base import Model
from ..observability.logs import configure_logging
from ..settings import Settings
from . import ports
from .process import CANNOT_START, serve_process

logger = logging.getLogger("modelserver")


def _worker(model_class: type[Model], settings: Settings) -> None:
    sys.exit(serve_process(model_class, settings, reuse_port=True))


def supervise(model_class: type[Model], settings: Settings) -> int:
    """Run ``settings.workers`` server processes until they stop; their worst exit code."""
    configure_logging(settings.log_level, settings.log_format)
    try:
        ports.check(settings.host, settings.http_port, True, "HTTP", "http_port")
        if settings.enable_grpc:
            ports.check(settings.host, settings.grpc_port, True, "gRPC", "grpc_port")
    except ports.PortUnavailable as exc:
        logger.error("cannot start: %s", exc)
        return CANNOT_START
    # One metrics view across workers: each writes its samples here and any
    # worker's /metrics sums them.
    metrics_dir = tempfile.mkdtemp(prefix="modelserver-metrics-")
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", metrics_dir)
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_worker, args=(model_class, settings), name=f"worker-{i}")
        for i in range(settings.workers)
    ]
    stopping = False

    def forward(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.pid is not None and p.is_alive():
                os.kill(p.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for p in procs:
        p.start()
    logger.info("started %d workers", len(procs))
    code = 0
    from prometheus_client import multiprocess

    alive = list(procs)
    while alive:
        ready = wait([p.sentinel for p in alive])
        for p in list(alive):
            if p.sentinel in ready:
                p.join()
                alive.remove(p)
                multiprocess.mark_process_dead(p.pid)
                if p.exitcode != 0 and not stopping:
                    # A worker stopped by our own SIGTERM (say, while still
                    # loading) is not a failure; one that died on its own is.
                    code = code or (p.exitcode if p.exitcode and p.exitcode > 0 else 1)
                    logger.error("%s exited with %s; stopping the others", p.name, p.exitcode)
                    forward(signal.SIGTERM, None)
    shutil.rmtree(metrics_dir, ignore_errors=True)
    return code

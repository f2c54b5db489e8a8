"""One server process: bind the ports, load the models, serve until stopped.

The order is the container contract's: a port that is taken is reported
before anything loads; the models load before any port listens (KServe's
readiness probe is a TCP connect); then HTTP and gRPC serve in one event
loop until SIGTERM, which drains in-flight requests within the grace period.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from ..dataplane.repository import ModelRepository
from ..dataplane.response_cache import ResponseCache
from ..dataplane.served import ServedModel, ServingOptions
from ..errors import ModelLoadError, excerpt
from ..model.base import Model
from ..model.discovery import discover_models, find_versions
from ..observability.logs import configure_logging
from ..settings import Settings
from . import ports

if TYPE_CHECKING:
    from .server import ModelServer

logger = logging.getLogger("modelserver")

#: Exit status of a server that could not start (bad flags, ports, model files).
CANNOT_START = 2


def build_repository(
    model_class: type[Model], settings: Settings, executor: ThreadPoolExecutor
) -> tuple[ModelRepository, dict[str, Path]]:
    """The repository and the models found in ``--model_dir``, not yet loaded.

    Every model, now or on a repository load, is built by the one factory
    made here, so a reload is served exactly as the first load was (and finds
    the versions there are then, in TF Serving's versioned layout).
    """
    options = ServingOptions(
        executor=executor,
        predict_executor=settings.predict_executor,
        max_batch_size=settings.max_batch_size,
        max_batch_delay_s=settings.max_batch_delay_ms / 1000.0,
        enable_metrics=settings.enable_metrics,
        model_root=Path(settings.model_dir),
        max_inputs=settings.max_inputs,
        warmup=settings.warmup,
        cache=(
            ResponseCache(settings.response_cache_size, settings.response_cache_bytes)
            if settings.response_cache_size > 0
            else None
        ),
    )

    def factory(name: str, path: Path) -> ServedModel:
        versions = (
            find_versions(path, model_class.extensions, model_class.accepts)
            if model_class.versioned
            else {}
        )
        if not versions:
            model = model_class(name, path, version=settings.model_version, settings=settings)
            return ServedModel(model, options)
        served = {
            version: ServedModel(
                model_class(name, directory, version=version, settings=settings), options
            )
            for version, directory in versions.items()
        }
        *older, latest = served.values()
        latest.older = {other.version: other for other in older}
        latest.model_dir = path  # a reload rescans the versions
        return latest

    found = discover_models(
        settings.model_dir,
        settings.model_name,
        model_class.extensions,
        model_class.accepts,
        versioned=model_class.versioned,
    )
    multi = len(found) > 1 or Path(settings.model_dir) != next(iter(found.values()))
    return ModelRepository(factory, settings.model_dir if multi else None), found


def load_models(repository: ModelRepository, found: dict[str, Path]) -> None:
    """Load each model found, in this thread; the first failure stops the start."""
    for name, path in found.items():
        served = repository.factory(name, path)
        logger.info("loading model %s from %s", name, path)
        served.load()
        repository.add(served)


class CannotStart(Exception):
    """The server cannot start; the message says why in one line."""


def prepare_server(
    model_class: type[Model], settings: Settings, reuse_port: bool = False
) -> tuple[ModelServer, ThreadPoolExecutor]:
    """Bind the ports, load the models: a server ready to ``serve()``, and its predict pool.

    CannotStart (the reason in one line) for a bad token file, a taken port
    or a model that cannot load; nothing is left bound then.
    """
    from ..dataplane.dataplane import DataPlane
    from ..dataplane.policy import load_tokens
    from .server import ModelServer

    try:
        tokens = load_tokens(settings.auth_token_file)
    except (OSError, ValueError) as exc:
        raise CannotStart(f"authentication: {exc}") from None
    try:
        http_socket = _bind_ports(settings, reuse_port)
    except ports.PortUnavailable as exc:
        raise CannotStart(str(exc)) from None
    executor = ThreadPoolExecutor(max_workers=settings.max_threads, thread_name_prefix="predict")
    try:
        repository, found = build_repository(model_class, settings, executor)
        load_models(repository, found)
    except BaseException as exc:
        http_socket.close()
        executor.shutdown(wait=False)
        if isinstance(exc, ModelLoadError):
            raise CannotStart(str(exc)) from None
        if isinstance(exc, Exception):
            reason = excerpt(str(exc), 2000)
            raise CannotStart(f"loading the model failed: {type(exc).__name__}: {reason}") from None
        raise
    dataplane = DataPlane(
        repository,
        server_name=model_class.server_name,
        protocols=model_class.protocols,
        workers=settings.workers,
        shared_memory=settings.allow_shared_memory,
    )
    dataplane.dialect = model_class.dialect
    return ModelServer(dataplane, settings, http_socket, tokens, reuse_port), executor


def serve_process(model_class: type[Model], settings: Settings, reuse_port: bool = False) -> int:
    """Bind, load, then serve until stopped; the exit code of one server process."""
    configure_logging(settings.log_level, settings.log_format)
    try:
        server, executor = prepare_server(model_class, settings, reuse_port)
    except CannotStart as exc:
        logger.error("cannot start: %s", exc)
        return CANNOT_START
    # Everything loaded so far (frameworks, the model) lives as long as the
    # process: keep it out of the collector's full passes, which would
    # otherwise walk it all and stall requests for tens of milliseconds.
    gc.freeze()
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # uvloop has no Windows build; asyncio's loop serves too
        loop_factory = None
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(server.serve())
    except OSError as exc:
        logger.error("cannot serve: %s", exc)
        return 1
    _leave_stuck_predicts(executor)
    return 0


def _bind_ports(settings: Settings, reuse_port: bool) -> socket.socket:
    """The bound HTTP socket; the gRPC port checked. PortUnavailable names the flag."""
    sock = ports.bind(settings.host, settings.http_port, reuse_port, "HTTP", "http_port")
    if settings.enable_grpc:
        try:
            ports.check(settings.host, settings.grpc_port, reuse_port, "gRPC", "grpc_port")
        except ports.PortUnavailable:
            sock.close()
            raise
    return sock


def _leave_stuck_predicts(executor: ThreadPoolExecutor) -> None:
    """Exit now if predict calls outlived the grace period.

    The pool's threads cannot be interrupted, and Python would wait for them
    at exit; the orchestrator asked us to stop within the grace period.
    """
    executor.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + 0.5
    busy = [t for t in threading.enumerate() if t.name.startswith("predict")]
    for thread in busy:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [t for t in busy if t.is_alive()]
    if stuck:
        logger.warning(
            "%d predict call(s) still running after the grace period; exiting without them",
            len(stuck),
        )
        logging.shutdown()
        os._exit(0)

"""HTTP (uvicorn) and gRPC (grpc.aio) in one event loop, with signal handling and workers.

Models are loaded before this starts, so a port that accepts connections has
a model behind it (KServe's raw-deployment probe is a TCP connect). SIGTERM
or SIGINT turns readiness false at once, stops accepting, lets in-flight
requests finish within the grace period, and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Iterator

import grpc
import uvicorn

from ..dataplane.dataplane import DataPlane
from ..dataplane.gate import InferenceGate
from ..dataplane.payload_logging import PayloadLogger
from ..dataplane.policy import RequestPolicy
from ..observability import tracing
from ..protocol.grpc.servicer import generic_handler
from ..protocol.grpc.tfserving import tfserving_handlers
from ..protocol.rest.app import RestApp
from ..protocol.rest.routes import is_probe
from ..settings import Settings
from .http import guarded_protocol

logger = logging.getLogger("modelserver")


def _skip_probes(record: logging.LogRecord) -> bool:
    """Access-log filter: health, readiness and metrics scrapes are not logged."""
    args = record.args
    if isinstance(args, tuple) and len(args) >= 3:
        return not is_probe(str(args[1]), str(args[2]).split("?", 1)[0])
    return True


class _UvicornServer(uvicorn.Server):
    """uvicorn without its own signal handlers: ours drain HTTP and gRPC together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ModelServer:
    """Serves one data plane over REST and gRPC until told to stop."""

    def __init__(
        self,
        dataplane: DataPlane,
        config: Settings,
        http_socket: socket.socket,
        auth_tokens: list[bytes] | None = None,
        reuse_port: bool = False,
    ) -> None:
        self.dataplane = dataplane
        self.config = config
        self.http_socket = http_socket
        self.reuse_port = reuse_port
        self.policy = RequestPolicy(
            auth_tokens or [], config.max_concurrent_requests, config.request_timeout
        )
        self.gate = InferenceGate(dataplane.repository, self.policy, config.enable_metrics)
        self._http: _UvicornServer | None = None
        self._grpc: grpc.aio.Server | None = None
        self._stopping: asyncio.Event | None = None
        self._grpc_stop: asyncio.Future[None] | None = None

    async def _start_grpc(self) -> grpc.aio.Server:
        cfg = self.config
        options = [
            ("grpc.max_send_message_length", cfg.grpc_max_message_length),
            ("grpc.max_receive_message_length", cfg.grpc_max_message_length),
            ("grpc.so_reuseport", 1 if self.reuse_port else 0),
        ]
        server = grpc.aio.server(options=options)
        handlers = [generic_handler(self.dataplane, self.gate)]
        if self.dataplane.dialect == "tfserving":
            handlers += tfserving_handlers(self.dataplane, self.gate)
        server.add_generic_rpc_handlers(handlers)
        address = (
            f"[{cfg.host}]:{cfg.grpc_port}" if ":" in cfg.host else f"{cfg.host}:{cfg.grpc_port}"
        )
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError:
            bound = 0
        if bound == 0:
            raise OSError(f"cannot bind gRPC port {address} (--grpc_port or GRPC_PORT)")
        await server.start()
        return server

    def request_stop(self) -> None:
        """Begin a graceful stop: not ready, stop accepting, drain, exit."""
        if self._stopping is None or self._stopping.is_set():
            return
        logger.info(
            "shutting down: draining in-flight requests (grace %.0fs)", self.config.grace_period
        )
        self.dataplane.draining = True
        self._stopping.set()
        if self._http is not None:
            self._http.should_exit = True
        if self._grpc is not None:
            self._grpc_stop = asyncio.ensure_future(self._grpc.stop(self.config.grace_period))

    async def serve(self) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        tracing.setup(cfg.otel_endpoint, service_name=self.dataplane.server_name)
        if cfg.logger_url:
            self.dataplane.payload_logger = PayloadLogger(
                cfg.logger_url, cfg.logger_mode, cfg.logger_queue_size, cfg.logger_queue_bytes
            )
            self.dataplane.payload_logger.start()
        if cfg.access_log and not cfg.access_log_probes:
            logging.getLogger("uvicorn.access").addFilter(_skip_probes)
        app = RestApp(self.dataplane, self.gate, cfg.max_body_size, cfg.enable_docs_url)
        sock = self.http_socket
        sock.listen(2048)
        if cfg.enable_grpc:
            self._grpc = await self._start_grpc()
        uv_config = uvicorn.Config(
            app,
            loop="none",
            http=guarded_protocol(cfg.http_header_timeout, cfg.http_body_timeout),
            timeout_keep_alive=cfg.http_keepalive_timeout,  # type: ignore[arg-type]
            lifespan="off",
            proxy_headers=False,
            access_log=cfg.access_log,
            log_level=None,  # levels are ours (cli.configure_logging)
            timeout_graceful_shutdown=cfg.grace_period,  # type: ignore[arg-type]
            log_config=None,
            server_header=False,
            date_header=False,
        )
        self._http = _UvicornServer(uv_config)
        logger.info(
            "serving %s: HTTP on %s:%d%s",
            ", ".join(self.dataplane.repository.models),
            cfg.host,
            cfg.http_port,
            f", gRPC on {cfg.host}:{cfg.grpc_port}" if cfg.enable_grpc else "",
        )
        try:
            await self._http.serve(sockets=[sock])
        finally:
            self.dataplane.draining = True
            if self._grpc_stop is not None:
                await self._grpc_stop
            elif self._grpc is not None:
                await self._grpc.stop(cfg.grace_period)
            sock.close()
            if self.dataplane.payload_logger is not None:
                await self.dataplane.payload_logger.stop()
            self.dataplane.close()
            tracing.shutdown()
        logger.info("stopped")

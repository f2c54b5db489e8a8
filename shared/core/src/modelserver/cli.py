"""The command line every runtime shares: KServe's flags, environment fallbacks, workers.

``python -m <runtime> --model_name NAME --model_dir DIR --http_port 8080
--grpc_port 8081`` as KServe's ServingRuntimes pass it. Each flag can also
come from an environment variable of its name in capitals (``MODEL_NAME``,
``HTTP_PORT``...); a flag on the command line wins over the environment, a
repeated flag's last value wins (KServe appends the InferenceService's args
after the runtime's), and unknown flags are logged and ignored so a newer
KServe cannot crash us.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import multiprocessing
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import ModelLoadError

logger = logging.getLogger("modelserver")

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", ""}


def str2bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {value!r}")


class _EnvParser(argparse.ArgumentParser):
    """An ArgumentParser whose defaults come from environment variables.

    ``add_argument(... env=False)`` opts a flag out; otherwise the variable is
    the flag's name without dashes, in capitals.
    """

    def add_argument(self, *names: Any, env: bool | str = True, **kwargs: Any) -> Any:  # type: ignore[override]
        action = super().add_argument(*names, **kwargs)
        if env and action.option_strings:
            var = env if isinstance(env, str) else action.dest.upper()
            if var in os.environ and action.nargs != 0:
                action.default = os.environ[var]
                if action.type is None and isinstance(kwargs.get("default"), int):
                    action.type = int
            if action.help is not None and action.help is not argparse.SUPPRESS:
                action.help += f" [env {var}]"
        return action


def build_parser(
    prog: str, add_runtime_arguments: Callable[[argparse.ArgumentParser], None] | None = None
) -> argparse.ArgumentParser:
    parser = _EnvParser(prog=prog, description=f"Serve models with {prog}.", allow_abbrev=False)
    add = parser.add_argument
    add("--model_name", "--model-name", default="model", help="name the model is served under")
    add(
        "--model_dir",
        "--model-dir",
        default="/mnt/models",
        help="directory holding the model file, or one sub-folder per model",
    )
    add("--model_version", default="1", help="version the model reports and accepts")
    add("--http_port", "--http-port", type=int, default=8080, help="HTTP port (v1 and v2 REST)")
    add("--grpc_port", "--grpc-port", type=int, default=8081, help="gRPC port (v2)")
    add("--host", default="0.0.0.0", help="address to bind")
    add("--enable_grpc", type=str2bool, default=True, help="serve v2 gRPC")
    add("--workers", type=int, default=1, help="server processes sharing the ports")
    add(
        "--max_batch_size",
        type=int,
        default=0,
        help="adaptive batching: most rows merged into one predict call (0: off)",
    )
    add(
        "--max_batch_delay_ms",
        type=float,
        default=0.0,
        help="adaptive batching: how long a batch may wait for more requests",
    )
    add(
        "--max_threads",
        type=int,
        default=max(4, (os.cpu_count() or 1)),
        help="threads for predict calls that run off the event loop",
    )
    add(
        "--predict_executor",
        choices=["auto", "inline", "thread"],
        default="auto",
        help="where predict runs: auto (inline once proved fast), inline, or thread",
    )
    add(
        "--nthread",
        type=int,
        default=0,
        help="framework threads per predict (0: the framework's default)",
    )
    add(
        "--grpc_max_message_length",
        type=int,
        default=100 * 1024 * 1024,
        help="largest gRPC message in bytes, both directions",
    )
    add(
        "--max_body_size",
        type=int,
        default=100 * 1024 * 1024,
        help="largest REST request body in bytes (413 above)",
    )
    add(
        "--grace_period",
        type=float,
        default=30.0,
        help="seconds in-flight requests get after SIGTERM",
    )
    add(
        "--enable_metrics",
        type=str2bool,
        default=True,
        help="record Prometheus metrics of inference requests (GET /metrics)",
    )
    add("--log_format", default="text", choices=["text", "json"], help="log line format")
    add(
        "--access_log_probes",
        type=str2bool,
        default=False,
        help="also log health, readiness and metrics requests in the access log",
    )
    add("--logger_url", default=None, help="send each inference as a CloudEvent to this URL")
    add(
        "--logger_mode",
        default="all",
        choices=["all", "request", "response"],
        help="what the request logger sends",
    )
    add(
        "--logger_queue_size",
        type=int,
        default=1024,
        help="events held for a slow sink before new ones are dropped",
    )
    add(
        "--otel_endpoint",
        default=None,
        help="OTLP/HTTP endpoint for OpenTelemetry traces (or set OTEL_* variables)",
    )
    add(
        "--auth_token_file",
        default=None,
        help="file of accepted bearer tokens, one per line (tokens also from AUTH_TOKENS)",
    )
    add(
        "--max_concurrent_requests",
        type=int,
        default=0,
        help="inference requests in flight before 503 (0: no limit)",
    )
    add(
        "--request_timeout",
        type=float,
        default=0.0,
        help="seconds an inference may take before 504 / DEADLINE_EXCEEDED (0: none)",
    )
    add(
        "--log_level",
        default="info",
        choices=["debug", "info", "warning", "error", "critical"],
        help="log level",
    )
    add("--access_log", type=str2bool, default=False, help="log every HTTP request")
    add("--enable_docs_url", type=str2bool, default=False, help="serve OpenAPI docs at /docs")
    # Accepted for compatibility with KServe's model server; they change nothing here.
    for flag in (
        "--max_asyncio_workers",
        "--enable_latency_logging",
        "--configure_logging",
        "--log_config_file",
        "--access_log_format",
        "--predictor_host",
        "--protocol",
        "--framework",
        "--predictor_protocol",
        "--predictor_use_ssl",
        "--predictor_request_timeout_seconds",
        "--predictor_request_retries",
        "--enable_predictor_health_check",
        "--grpc_max_send_message_length",
        "--grpc_max_receive_message_length",
    ):
        add(flag, default=None, help=argparse.SUPPRESS, env=False)
    if add_runtime_arguments is not None:
        add_runtime_arguments(parser)
    return parser


def parse_args(
    prog: str,
    argv: Sequence[str] | None,
    add_runtime_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    parser = build_parser(prog, add_runtime_arguments)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        logging.getLogger("modelserver").warning(
            "ignoring unknown arguments: %s", " ".join(unknown)
        )
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.max_batch_size < 0 or args.max_batch_delay_ms < 0:
        parser.error("--max_batch_size and --max_batch_delay_ms must not be negative")
    # argparse checks choices only on the command line; values from the
    # environment are checked here.
    for action in parser._actions:
        value = getattr(args, action.dest, None)
        if action.choices is not None and value not in action.choices:
            parser.error(
                f"{action.option_strings[0]}={value!r}: choose from {', '.join(action.choices)}"
            )
    return args


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        import orjson

        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure_logging(level: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        formatter: logging.Formatter = JsonFormatter()
        formatter.converter = time.gmtime
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(formatter)
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uv = logging.getLogger(name)
        uv.handlers = [handler]
        uv.propagate = False
    # uvicorn's own start/stop chatter repeats ours; keep its warnings and errors.
    if level.lower() != "debug":
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    # The request logger's client would log every event it posts.
    logging.getLogger("httpx").setLevel(logging.WARNING)


ModelFactory = Callable[[str, Path, argparse.Namespace], Any]


def _load_models(model_class: type, args: argparse.Namespace) -> Any:
    from concurrent.futures import ThreadPoolExecutor

    from .batching import Batcher
    from .discovery import discover_models
    from .execution import PredictRunner
    from .metrics import batch_observer, for_model
    from .repository import ModelRepository

    executor = ThreadPoolExecutor(max_workers=args.max_threads, thread_name_prefix="predict")
    options = vars(args)

    def factory(name: str, path: Path) -> Any:
        model = model_class(name, path, version=args.model_version, options=options)
        model.runner = PredictRunner(executor, args.predict_executor)
        model.metrics = for_model(name) if args.enable_metrics else None
        if args.max_batch_size > 0 and not model.dynamic_outputs:
            model.batcher = Batcher(
                name,
                model.compute,
                model.runner.run,
                args.max_batch_size,
                args.max_batch_delay_ms / 1000.0,
                observe=batch_observer(name) if args.enable_metrics else None,
            )
        return model

    found = discover_models(
        args.model_dir, args.model_name, model_class.extensions, model_class.accepts
    )
    multi = len(found) > 1 or Path(args.model_dir) != next(iter(found.values()))
    repository = ModelRepository(args.model_dir if multi else None, factory if multi else None)
    for name, path in found.items():
        model = factory(name, path)
        logger.info("loading model %s from %s", name, path)
        model.start()
        repository.add(model)
    return repository, executor


def serve_process(model_class: type, args: argparse.Namespace, reuse_port: bool = False) -> int:
    """Load the models, then serve until stopped; the exit code of one server process."""
    configure_logging(args.log_level, args.log_format)
    from .policy import load_tokens

    try:
        tokens = load_tokens(args.auth_token_file)
    except (OSError, ValueError) as exc:
        logger.error("cannot start: authentication: %s", exc)
        return 2
    try:
        repository, executor = _load_models(model_class, args)
    except ModelLoadError as exc:
        logger.error("cannot start: %s", exc)
        return 2
    except Exception as exc:
        logger.error("cannot start: loading the model failed: %s: %s", type(exc).__name__, exc)
        return 2

    from .dataplane import DataPlane
    from .server import ModelServer, ServerConfig

    # Everything loaded so far (frameworks, the model) lives as long as the
    # process: keep it out of the collector's full passes, which would
    # otherwise walk it all and stall requests for tens of milliseconds.
    gc.freeze()

    dataplane = DataPlane(
        repository, server_name=getattr(model_class, "server_name", "modelserver")
    )
    dataplane.workers = args.workers
    config = ServerConfig(
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        enable_grpc=args.enable_grpc,
        grpc_max_message_length=args.grpc_max_message_length,
        max_body_size=args.max_body_size,
        grace_period=args.grace_period,
        reuse_port=reuse_port,
        enable_docs_url=args.enable_docs_url,
        access_log=args.access_log,
        access_log_probes=args.access_log_probes,
        log_level=args.log_level,
        auth_tokens=tokens,
        max_concurrent_requests=args.max_concurrent_requests,
        request_timeout=args.request_timeout,
        logger_url=args.logger_url,
        logger_mode=args.logger_mode,
        logger_queue_size=args.logger_queue_size,
        otel_endpoint=args.otel_endpoint,
        enable_metrics=args.enable_metrics,
    )
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # uvloop has no Windows build; asyncio's loop serves too
        loop_factory = None
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(ModelServer(dataplane, config).serve())
    except OSError as exc:
        logger.error("cannot serve: %s", exc)
        return 1
    _leave_stuck_predicts(executor)
    return 0


def _leave_stuck_predicts(executor: Any) -> None:
    """Exit now if predict calls outlived the grace period.

    The pool's threads cannot be interrupted, and Python would wait for them
    at exit; the orchestrator asked us to stop within the grace period.
    """
    import threading

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


def _worker(model_class: type, args: argparse.Namespace) -> None:
    sys.exit(serve_process(model_class, args, reuse_port=True))


def _supervise(model_class: type, args: argparse.Namespace) -> int:
    """Run ``--workers`` server processes on shared ports (SO_REUSEPORT).

    SIGTERM/SIGINT are passed on; if any worker dies the others are stopped
    and the exit code is non-zero, so the orchestrator restarts the pod rather
    than keep a server that silently lost capacity.
    """
    configure_logging(args.log_level, args.log_format)
    # One metrics view across workers: each writes its samples here and any
    # worker's /metrics sums them.
    metrics_dir = tempfile.mkdtemp(prefix="modelserver-metrics-")
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", metrics_dir)
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_worker, args=(model_class, args), name=f"worker-{i}")
        for i in range(args.workers)
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
    from multiprocessing.connection import wait

    alive = list(procs)
    from prometheus_client import multiprocess

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
    import shutil

    shutil.rmtree(metrics_dir, ignore_errors=True)
    return code


def run(model_class: type, prog: str | None = None, argv: Sequence[str] | None = None) -> int:
    """Entry point of a runtime: parse flags, load, serve. Returns the exit code."""
    prog = prog or getattr(model_class, "server_name", "modelserver")
    add_args = getattr(model_class, "add_arguments", None)
    args = parse_args(prog, argv, add_args)
    if args.workers > 1:
        return _supervise(model_class, args)
    return serve_process(model_class, args)


def main() -> None:
    """``modelserver --model_class module:Class`` serves a custom Model subclass."""
    import importlib

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--model_class", default=os.environ.get("MODEL_CLASS"))
    known, rest = pre.parse_known_args()
    if not known.model_class or ":" not in known.model_class:
        print("usage: modelserver --model_class package.module:ClassName [flags]", file=sys.stderr)
        sys.exit(2)
    module_name, _, class_name = known.model_class.partition(":")
    model_class = getattr(importlib.import_module(module_name), class_name)
    sys.exit(run(model_class, argv=rest))

"""Settings declared once: each flag is a typed dataclass field.

A field made with :func:`setting` carries everything about its flag: type
(from the annotation), default, help, environment variable and spellings.
The parser, the environment fallback, ``--help`` (with defaults and variable
names) and the object the server and the model read all derive from that one
declaration, so a flag cannot be written three times and drift.

A runtime adds its own flags by subclassing :class:`Settings`::

    @dataclass
    class ONNXSettings(Settings):
        device: Literal["auto", "cuda", "cpu"] = setting("auto", "where the graph runs")

    class ONNXModel(TensorModel):
        settings_class = ONNXSettings

and reads ``self.settings.device``, typed. Rules, as KServe's runtimes pass
flags: the command line wins over the environment; a repeated flag's last
value wins (KServe appends an InferenceService's args after the runtime's);
unknown flags are logged and ignored; a boolean works as a switch
(``--access_log``) and with a value (``--enable_grpc=false``).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

logger = logging.getLogger("modelserver")

_TRUE = frozenset({"1", "true", "yes", "on", "y", "t"})
_FALSE = frozenset({"0", "false", "no", "off", "n", "f", ""})

MIB = 1024 * 1024

S = TypeVar("S", bound="Settings")


def str2bool(value: str | bool) -> bool:
    """A boolean from a flag or variable: true/false, yes/no, on/off, 1/0."""
    if isinstance(value, bool):
        return value
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {value!r}")


@dataclass(frozen=True, slots=True)
class Flag:
    """What :func:`setting` records about one flag (the field's metadata)."""

    help: str
    #: True: the flag's name in capitals; a string: that variable; False: none.
    env: str | bool
    aliases: tuple[str, ...]
    minimum: float | None
    hidden: bool


def setting(
    default: Any = None,
    help: str = "",
    *,
    env: str | bool = True,
    aliases: Sequence[str] = (),
    minimum: float | None = None,
    hidden: bool = False,
    default_factory: Callable[[], Any] | None = None,
) -> Any:
    """A dataclass field that is also a command-line flag.

    ``env=True`` reads the variable named like the flag in capitals, a string
    names another variable, ``False`` reads none. ``minimum`` refuses smaller
    numbers. ``hidden`` flags are accepted for compatibility and left out of
    ``--help``.
    """
    meta = {"flag": Flag(help, env, tuple(aliases), minimum, hidden)}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _cpu_threads() -> int:
    return max(4, os.cpu_count() or 1)


@dataclass
class Settings:
    """The flags every runtime shares (KServe's model server flags and ours)."""

    model_name: str = setting("model", "name the model is served under", aliases=["--model-name"])
    model_dir: str = setting(
        "/mnt/models",
        "directory holding the model file, or one sub-folder per model",
        aliases=["--model-dir"],
    )
    model_version: str = setting("1", "version the model reports and accepts")
    http_port: int = setting(8080, "HTTP port (v1 and v2 REST)", aliases=["--http-port"], minimum=0)
    grpc_port: int = setting(8081, "gRPC port (v2)", aliases=["--grpc-port"], minimum=0)
    host: str = setting("0.0.0.0", "address to bind")
    enable_grpc: bool = setting(True, "serve v2 gRPC")
    workers: int = setting(1, "server processes sharing the ports", minimum=1)
    worker_restarts_per_minute: int = setting(
        10,
        "with --workers > 1: dead workers replaced within a minute before the server gives up",
        minimum=0,
    )
    max_batch_size: int = setting(
        32,
        "adaptive batching: most rows merged into one predict call, for models that can "
        "batch; requests arriving one at a time run alone (0: off)",
        minimum=0,
    )
    max_batch_delay_ms: float = setting(
        0.0, "adaptive batching: how long a batch may wait for more requests", minimum=0
    )
    max_threads: int = setting(
        help="threads for predict calls that run off the event loop (default: max(4, cores))",
        default_factory=_cpu_threads,
        minimum=1,
    )
    predict_executor: Literal["auto", "inline", "thread"] = setting(
        "auto", "where predict runs: auto (inline once proved fast), inline, or thread"
    )
    nthread: int = setting(
        0, "framework threads per predict (0: the framework's default)", minimum=0
    )
    grpc_max_message_length: int = setting(
        100 * MIB, "largest gRPC message in bytes, both directions", minimum=1
    )
    max_body_size: int = setting(
        100 * MIB, "largest REST request body in bytes (413 above)", minimum=1
    )
    max_inputs: int = setting(
        4096,
        "most named inputs one request may have, for a model that declares none "
        "(more than a model declares are always refused)",
        minimum=1,
    )
    grace_period: float = setting(30.0, "seconds in-flight requests get after SIGTERM", minimum=0)
    http_keepalive_timeout: float = setting(
        75.0,
        "seconds an idle HTTP connection is kept (above Envoy's 60 s idle timeout)",
        minimum=0,
    )
    http_header_timeout: float = setting(
        30.0, "seconds a request may take to send its headers (408 after)", minimum=0
    )
    http_body_timeout: float = setting(
        60.0, "seconds a request's body may pause between pieces (408 after)", minimum=0
    )
    enable_metrics: bool = setting(
        True, "record Prometheus metrics of inference requests (GET /metrics)"
    )
    log_level: Literal["debug", "info", "warning", "error", "critical"] = setting(
        "info", "log level"
    )
    log_format: Literal["text", "json"] = setting("text", "log line format")
    access_log: bool = setting(False, "log every HTTP request")
    access_log_probes: bool = setting(
        False, "also log health, readiness and metrics requests in the access log"
    )
    enable_docs_url: bool = setting(False, "serve the OpenAPI document and docs at /docs")
    logger_url: str | None = setting(None, "send each inference as a CloudEvent to this URL")
    logger_mode: Literal["all", "request", "response"] = setting(
        "all", "what the request logger sends"
    )
    logger_queue_size: int = setting(
        1024, "events held for a slow sink before new ones are dropped", minimum=1
    )
    logger_queue_bytes: int = setting(
        64 * MIB, "bytes of tensors held for a slow sink before events are dropped", minimum=1
    )
    otel_endpoint: str | None = setting(
        None, "OTLP/HTTP endpoint for OpenTelemetry traces (or set OTEL_* variables)"
    )
    auth_token_file: str | None = setting(
        None, "file of accepted bearer tokens, one per line (more in AUTH_TOKENS=a,b)"
    )
    max_concurrent_requests: int = setting(
        0, "inference requests in flight before 503 (0: no limit)", minimum=0
    )
    request_timeout: float = setting(
        0.0, "seconds an inference may take before 504 / DEADLINE_EXCEEDED (0: none)", minimum=0
    )
    warmup: bool = setting(
        True,
        "run a few requests through each model before it reports ready: those of "
        "warmup.json beside the model, else built from its metadata",
    )
    response_cache_size: int = setting(
        0,
        "answers kept for identical requests (same model version, inputs, outputs and "
        "parameters), least recently used evicted first (0: no cache)",
        minimum=0,
    )
    response_cache_bytes: int = setting(
        64 * MIB, "bytes of output data the response cache may hold", minimum=1
    )
    allow_shared_memory: bool = setting(
        False,
        "let co-located clients register POSIX shared memory regions for tensors "
        "(Triton's system shared memory; --workers 1 only)",
    )

    #: KServe model-server flags accepted for compatibility; they change nothing here.
    IGNORED_FLAGS: typing.ClassVar[tuple[str, ...]] = (
        "max_asyncio_workers",
        "enable_latency_logging",
        "configure_logging",
        "log_config_file",
        "access_log_format",
        "predictor_host",
        "protocol",
        "framework",
        "predictor_protocol",
        "predictor_use_ssl",
        "predictor_request_timeout_seconds",
        "predictor_request_retries",
        "enable_predictor_health_check",
        "grpc_max_send_message_length",
        "grpc_max_receive_message_length",
    )

    # -- derived ------------------------------------------------------------

    @classmethod
    def fields(cls) -> list[tuple[dataclasses.Field[Any], Flag, Any]]:
        """Every flag field with its declaration and resolved type."""
        hints = typing.get_type_hints(cls)
        return [
            (f, f.metadata["flag"], hints[f.name])
            for f in dataclasses.fields(cls)
            if "flag" in f.metadata
        ]

    @classmethod
    def parser(cls, prog: str) -> argparse.ArgumentParser:
        """The argparse parser for these flags; defaults come from the environment."""
        parser = argparse.ArgumentParser(
            prog=prog,
            description=f"Serve models with {prog}. Each flag may also come from the "
            "environment variable in brackets; the command line wins.",
            allow_abbrev=False,
        )
        for field, flag, hint in cls.fields():
            kind, choices, _ = _kind(hint)
            names = [f"--{field.name}", *flag.aliases]
            default = _default(field)
            help_text = argparse.SUPPRESS if flag.hidden else _help(flag, default, field.name)
            kwargs: dict[str, Any] = {"dest": field.name, "help": help_text, "default": None}
            if kind is bool:
                kwargs.update(nargs="?", const=True, type=str2bool, metavar="BOOL")
            else:
                kwargs.update(type=kind, metavar=field.name.upper())
                if choices:
                    kwargs.update(choices=choices, metavar="{" + ",".join(choices) + "}")
            parser.add_argument(*names, **kwargs)
        for name in cls.IGNORED_FLAGS:
            parser.add_argument(f"--{name}", default=None, help=argparse.SUPPRESS)
        return parser

    @classmethod
    def parse(
        cls: type[S],
        argv: Sequence[str] | None = None,
        prog: str = "modelserver",
        environ: typing.Mapping[str, str] | None = None,
    ) -> S:
        """Settings from the command line, then the environment, then the defaults.

        Exits with argparse's usage error (status 2) for a value that is not
        of its flag's type, out of its choices or under its minimum, naming
        the flag or the variable it came from.
        """
        environ = os.environ if environ is None else environ
        parser = cls.parser(prog)
        args, unknown = parser.parse_known_args(argv)
        if unknown:
            logger.warning("ignoring unknown arguments: %s", " ".join(unknown))
        values: dict[str, Any] = {}
        for field, flag, hint in cls.fields():
            value = getattr(args, field.name)
            source = f"--{field.name}"
            if value is None and flag.env:
                var = _env_name(flag, field.name)
                if var in environ:
                    source = var
                    try:
                        value = _convert(hint, environ[var])
                    except (ValueError, argparse.ArgumentTypeError) as exc:
                        parser.error(f"{var}={environ[var]!r}: {exc}")
            if value is None:
                continue
            error = _check(hint, flag, value)
            if error:
                parser.error(f"{source}={value!r}: {error}")
            values[field.name] = value
        return cls(**values)


def _env_name(flag: Flag, name: str) -> str:
    return flag.env if isinstance(flag.env, str) else name.upper()


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return None
    return field.default


def _help(flag: Flag, default: Any, name: str) -> str:
    parts = [flag.help]
    if default is not None:
        shown = str(default).lower() if isinstance(default, bool) else default
        parts.append(f"(default: {shown})")
    if flag.env:
        parts.append(f"[env {_env_name(flag, name)}]")
    return " ".join(p for p in parts if p)


def _kind(hint: Any) -> tuple[Any, tuple[str, ...] | None, bool]:
    """(scalar type, choices for a Literal, optional) of an annotation."""
    optional = False
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        hint = args[0]
        origin = typing.get_origin(hint)
    if origin is Literal:
        return str, tuple(str(a) for a in typing.get_args(hint)), optional
    return hint, None, optional


def _convert(hint: Any, raw: str) -> Any:
    kind, _, _ = _kind(hint)
    if kind is bool:
        return str2bool(raw)
    return kind(raw)


def _check(hint: Any, flag: Flag, value: Any) -> str | None:
    _, choices, _ = _kind(hint)
    if choices and value not in choices:
        return f"choose from {', '.join(choices)}"
    if flag.minimum is not None and isinstance(value, int | float) and value < flag.minimum:
        return f"must be at least {flag.minimum:g}"
    return None

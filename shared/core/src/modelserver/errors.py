"""The errors the server answers with, each carrying its REST and gRPC status.

Every layer raises these and only the transports turn them into bytes, so one
table (the architecture's) decides the status of each failure in both
protocols.
"""

from __future__ import annotations

from collections.abc import Iterable

#: How much of a foreign message (a framework's, a parser's) an error repeats.
EXCERPT_CHARS = 300


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """``text`` safe to show: control and undecodable characters escaped, cut to ``limit``.

    Framework errors sometimes quote the bytes of the file they failed on
    (``invalid load key, '\\x80'``, a protobuf dump); a client or a log line
    must never receive raw binary, nor a megabyte of it.
    """
    cleaned = "".join(
        ch if ch.isprintable() or ch in " " else ch.encode("unicode_escape").decode("ascii")
        for ch in text.replace("\r\n", "\n").replace("\n", " ")
    )
    if len(cleaned) > limit:
        cleaned = cleaned[: limit - 1] + "…"
    return cleaned


class ModelServerError(Exception):
    """Base of every error that reaches a client with a chosen status."""

    http_status: int = 500
    grpc_code: str = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ModelServerError):
    """The request is malformed or does not fit the model: the client's fault."""

    http_status = 400
    grpc_code = "INVALID_ARGUMENT"


class ModelNotFound(ModelServerError):
    """No model of that name (or version) is known to the server."""

    http_status = 404
    grpc_code = "NOT_FOUND"

    def __init__(
        self, name: str, version: str | None = None, served: Iterable[str] | None = None
    ) -> None:
        if version:
            message = f"Model with name {name} and version {version} does not exist."
        else:
            message = f"Model with name {name} does not exist."
        if served is not None:
            names = sorted(served)
            shown = ", ".join(names[:20]) + (" ..." if len(names) > 20 else "")
            message += f" Served models: {shown}." if names else " No model is served."
        super().__init__(message)


class ModelNotReady(ModelServerError):
    """The model is known but cannot serve now (loading, unloaded, failed)."""

    http_status = 503
    grpc_code = "UNAVAILABLE"

    def __init__(self, name: str, detail: str = "") -> None:
        suffix = f": {detail}" if detail else ""
        super().__init__(f"Model with name {name} is not ready{suffix}.")


class PayloadTooLarge(ModelServerError):
    """The request body exceeds the configured maximum."""

    http_status = 413
    grpc_code = "RESOURCE_EXHAUSTED"


class UnsupportedMediaType(ModelServerError):
    """The body's Content-Encoding or Content-Type is not one this endpoint reads."""

    http_status = 415
    grpc_code = "INVALID_ARGUMENT"


class Unauthenticated(ModelServerError):
    """No valid credentials were presented while authentication is on."""

    http_status = 401
    grpc_code = "UNAUTHENTICATED"


class InferenceError(ModelServerError):
    """The model raised while predicting: the server's fault, reported as such."""

    http_status = 500
    grpc_code = "INTERNAL"


class ModelLoadError(Exception):
    """A model could not be found or loaded from its directory.

    Raised at startup (the CLI turns it into a clear message and a non-zero
    exit) and by the repository's load operation. The message is passed
    through :func:`excerpt`, since it often carries a framework's words
    about a file's bytes.
    """

    def __init__(self, message: str) -> None:
        super().__init__(excerpt(message, 2000))


class DeadlineExceeded(ModelServerError):
    """The request outlived its time limit (``--request_timeout`` or the gRPC deadline)."""

    http_status = 504
    grpc_code = "DEADLINE_EXCEEDED"


class ServerBusy(ModelServerError):
    """More requests are in flight than ``--max_concurrent_requests`` allows."""

    http_status = 503
    grpc_code = "UNAVAILABLE"


class ClientDisconnected(ModelServerError):
    """The client left before its answer was ready; the work it queued is dropped."""

    http_status = 499
    grpc_code = "CANCELLED"


class RouteNotFound(ModelServerError):
    """No REST route has this path."""

    http_status = 404
    grpc_code = "UNIMPLEMENTED"

    def __init__(self, message: str = "Not Found") -> None:
        super().__init__(message)


class MethodNotAllowed(ModelServerError):
    """The path exists, but not for this method; ``allowed`` goes in the Allow header."""

    http_status = 405
    grpc_code = "UNIMPLEMENTED"

    def __init__(self, allowed: list[str]) -> None:
        super().__init__("Method Not Allowed")
        self.allowed = allowed


class ModelNotImplemented(ModelServerError):
    """The model does not offer this operation (an explainer, say)."""

    http_status = 501
    grpc_code = "UNIMPLEMENTED"

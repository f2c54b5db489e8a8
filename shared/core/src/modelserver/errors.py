"""The errors the server answers with, each carrying its REST and gRPC status.

Every layer raises these and only the transports turn them into bytes, so one
table (the architecture's) decides the status of each failure in both
protocols.
"""

from __future__ import annotations

import grpc


class ModelServerError(Exception):
    """Base of every error that reaches a client with a chosen status."""

    http_status: int = 500
    grpc_status: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ModelServerError):
    """The request is malformed or does not fit the model: the client's fault."""

    http_status = 400
    grpc_status = grpc.StatusCode.INVALID_ARGUMENT


class ModelNotFound(ModelServerError):
    """No model of that name (or version) is known to the server."""

    http_status = 404
    grpc_status = grpc.StatusCode.NOT_FOUND

    def __init__(self, name: str, version: str | None = None) -> None:
        if version:
            super().__init__(f"Model with name {name} and version {version} does not exist.")
        else:
            super().__init__(f"Model with name {name} does not exist.")


class ModelNotReady(ModelServerError):
    """The model is known but cannot serve now (loading, unloaded, failed)."""

    http_status = 503
    grpc_status = grpc.StatusCode.UNAVAILABLE

    def __init__(self, name: str, detail: str = "") -> None:
        suffix = f": {detail}" if detail else ""
        super().__init__(f"Model with name {name} is not ready{suffix}.")


class PayloadTooLarge(ModelServerError):
    """The request body exceeds the configured maximum."""

    http_status = 413
    grpc_status = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unauthenticated(ModelServerError):
    """No valid credentials were presented while authentication is on."""

    http_status = 401
    grpc_status = grpc.StatusCode.UNAUTHENTICATED


class InferenceError(ModelServerError):
    """The model raised while predicting: the server's fault, reported as such."""

    http_status = 500
    grpc_status = grpc.StatusCode.INTERNAL


class ModelLoadError(Exception):
    """A model could not be found or loaded from its directory.

    Raised at startup (the CLI turns it into a clear message and a non-zero
    exit) and by the repository's load operation.
    """


class DeadlineExceeded(ModelServerError):
    """The request outlived its time limit (``--request_timeout`` or the gRPC deadline)."""

    http_status = 504
    grpc_status = grpc.StatusCode.DEADLINE_EXCEEDED


class ServerBusy(ModelServerError):
    """More requests are in flight than ``--max_concurrent_requests`` allows."""

    http_status = 503
    grpc_status = grpc.StatusCode.UNAVAILABLE


class ClientDisconnected(ModelServerError):
    """The client left before its answer was ready; the work it queued is dropped."""

    http_status = 499
    grpc_status = grpc.StatusCode.CANCELLED

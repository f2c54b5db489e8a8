"""Protocol-agnostic operations: health, metadata, inference, repository.

The transports call these and only encode what comes back. Answers that do
not change between requests (server metadata, each model's metadata) are
computed when the repository changes, not per request.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from typing import Any

import orjson

from .. import __version__
from ..errors import InvalidInput, ModelLoadError, ModelServerError
from ..types import InferRequest, InferResponse
from .context import RequestContext
from .payload_logging import PayloadLogger
from .repository import ModelRepository
from .served import ServedModel

logger = logging.getLogger(__name__)

_ID_PREFIX = uuid.uuid4().hex[:12]
_ids = itertools.count(1)

#: The protocol extensions this server implements, as server metadata lists them.
EXTENSIONS = ("binary_tensor_data", "model_repository")


class DataPlane:
    """The server's operations over one model repository."""

    def __init__(self, repository: ModelRepository, server_name: str = "modelserver"):
        self.repository = repository
        self.server_name = server_name
        self.draining = False
        #: Server processes sharing the ports; repository changes need just one.
        self.workers = 1
        #: KServe's request/response logger, when ``--logger_url`` is set.
        self.payload_logger: PayloadLogger | None = None
        self.started_at = time.time()
        self.server_metadata_dict: dict[str, Any] = {
            "name": server_name,
            "version": __version__,
            "extensions": list(EXTENSIONS),
        }
        self.server_metadata_json = orjson.dumps(self.server_metadata_dict)
        self._metadata_json: dict[tuple[str, str], bytes] = {}
        #: The v1 flavour the REST paths and gRPC services speak (``Model.dialect``).
        self.dialect = "kserve"
        repository.on_change.append(self._refresh)
        self._refresh()

    def _refresh(self) -> None:
        self._metadata_json = {
            (name, version.version): orjson.dumps(_metadata(version))
            for name, model in self.repository.models.items()
            for version in (*model.older.values(), model)
        }

    # -- health -------------------------------------------------------------

    @staticmethod
    def live() -> bool:
        return True

    def ready(self) -> bool:
        return not self.draining and self.repository.all_ready

    def model_ready(self, name: str, version: str | None = None) -> bool:
        model = self.repository.get(name, version)
        return model.ready and not self.draining

    # -- metadata -----------------------------------------------------------

    def model(self, name: str, version: str | None = None) -> ServedModel:
        return self.repository.get(name, version)

    def model_metadata_json(self, name: str, version: str | None = None) -> bytes:
        model = self.repository.get(name, version)
        key = (model.name, model.version)
        cached = self._metadata_json.get(key)
        if cached is None:
            cached = self._metadata_json[key] = orjson.dumps(_metadata(model))
        return cached

    def model_at(
        self, name: str, version: str | None = None, label: str | None = None
    ) -> ServedModel:
        """The model (any state) at a version number, a version label or (neither) the latest.

        Labels are the model's ``version_labels`` (TF Serving's); the checks and
        their words are TF Serving's.
        """
        if version is not None and label is not None:
            raise InvalidInput(
                f"Both model version ({version}) and model version label ({label}) cannot be "
                "supplied."
            )
        if version is not None:
            if not (version.isascii() and version.isdigit()):
                raise InvalidInput(f"Failed to convert version: {version} to numeric.")
            version = str(int(version))
        if label is not None:
            served = self.repository.get(name)
            model = served.model
            version = model.version_labels().get(label) if model is not None else None
            if version is None:
                raise InvalidInput(f"Unrecognized servable version label: {label}")
        return self.repository.get(name, version)

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        return _metadata(self.repository.get(name, version))

    # -- inference ------------------------------------------------------------

    async def infer(self, request: InferRequest, ctx: RequestContext) -> InferResponse:
        model = self.repository.get_ready(request.model_name, request.model_version)
        payload_logger = self.payload_logger
        if payload_logger is None:
            return await model.infer(request, ctx)
        if request.id is None:
            # Ties the request and response events together; a counter under a
            # per-process random prefix costs no system call per request.
            request.id = f"{_ID_PREFIX}-{next(_ids)}"
        payload_logger.record_request(request)
        response = await model.infer(request, ctx)
        payload_logger.record_response(request, response)
        return response

    # -- repository extension ---------------------------------------------------

    def repository_index(self, ready_only: bool = False) -> list[dict[str, Any]]:
        return self.repository.index(ready_only)

    def _single_process(self, what: str) -> None:
        if self.workers > 1:
            raise InvalidInput(
                f"Cannot {what} a model with --workers {self.workers}: each worker holds its "
                "own models and only one would change; run with --workers 1 to manage the "
                "repository"
            )

    async def load(self, name: str) -> None:
        self._single_process("load")
        try:
            await self.repository.load(name)
        except ModelServerError:
            raise
        except ModelLoadError as exc:
            raise InvalidInput(str(exc)) from None

    async def unload(self, name: str) -> None:
        self._single_process("unload")
        await self.repository.unload(name)


def _metadata(model: ServedModel) -> dict[str, Any]:
    """A model's metadata; a runtime that fails to describe itself still gets an answer."""
    try:
        return model.metadata()
    except Exception as exc:
        logger.exception("model %s failed to describe itself", model.name)
        return {
            "name": model.name,
            "versions": [model.version] if model.version else [],
            "platform": model.platform,
            "inputs": [],
            "outputs": [],
            "reason": f"metadata unavailable: {type(exc).__name__}: {exc}",
        }

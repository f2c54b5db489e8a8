"""Protocol-agnostic operations: health, metadata, inference, repository, and
Triton's extensions (statistics, model configuration, system shared memory).

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
from ..codecs.tensor_data import SHM_BYTE_SIZE, SHM_OFFSET, SHM_REGION, shared_memory_ref
from ..errors import InvalidInput, ModelLoadError, ModelServerError
from ..types import InferRequest, InferResponse
from .context import RequestContext
from .decode_pool import DecodePool
from .payload_logging import PayloadLogger
from .repository import ModelRepository
from .served import ServedModel
from .shared_memory import SharedMemoryRegistry

logger = logging.getLogger(__name__)

_ID_PREFIX = uuid.uuid4().hex[:12]
_ids = itertools.count(1)

#: The protocol extensions this server implements, as server metadata lists them
#: (Triton's names); ``system_shared_memory`` only where registering is allowed.
EXTENSIONS = ("binary_tensor_data", "model_repository", "statistics", "model_configuration")
SHARED_MEMORY_EXTENSION = "system_shared_memory"


class DataPlane:
    """The server's operations over one model repository.

    ``workers``: server processes sharing the ports (each has its own
    models and regions, so repository changes and shared memory need one);
    ``shared_memory``: clients may register shared-memory regions.
    """

    def __init__(
        self,
        repository: ModelRepository,
        server_name: str = "modelserver",
        protocols: tuple[str, ...] = (),
        *,
        workers: int = 1,
        shared_memory: bool = False,
    ):
        self.repository = repository
        self.server_name = server_name
        #: Optional REST protocols served beside v1 and v2 (``Model.protocols``).
        self.protocols = protocols
        self.draining = False
        self.workers = workers
        #: Triton's system shared memory regions, when clients may register them.
        self.shared_memory = SharedMemoryRegistry() if shared_memory and workers == 1 else None
        #: Where large bodies are decoded; inline only while shared memory is taken
        #: (its regions are this process's).
        self.decoder = DecodePool(enabled=self.shared_memory is None)
        #: KServe's request/response logger, when ``--logger_url`` is set.
        self.payload_logger: PayloadLogger | None = None
        self.started_at = time.time()
        extensions = list(EXTENSIONS)
        if self.shared_memory is not None:
            extensions.append(SHARED_MEMORY_EXTENSION)
        self.server_metadata_dict: dict[str, Any] = {
            "name": server_name,
            "version": __version__,
            "extensions": extensions,
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
        if not request.id:
            # Every answer carries an id (KServe's SDK requires one), and the
            # payload logger ties request and response events by it: the
            # request's own, else a counter under a per-process random prefix,
            # which costs no system call per request.
            request.id = f"{_ID_PREFIX}-{next(_ids)}"
        payload_logger = self.payload_logger
        if payload_logger is not None:
            payload_logger.record_request(request)
        response = await model.infer(request, ctx)
        if request.outputs:
            self._outputs_to_shared_memory(request, response)
        if payload_logger is not None:
            payload_logger.record_response(request, response)
        return response

    def _outputs_to_shared_memory(self, request: InferRequest, response: InferResponse) -> None:
        """Write the outputs asked for in shared memory there; their answers carry no data."""
        assert request.outputs is not None
        for asked, tensor in zip(request.outputs, response.outputs, strict=False):
            ref = shared_memory_ref(asked.parameters, asked.name)
            if ref is None:
                continue
            if self.shared_memory is None:
                raise InvalidInput(
                    f"Output '{asked.name}' is asked for in shared memory, which this server "
                    "does not take (start it with --allow_shared_memory)"
                )
            written = self.shared_memory.write(ref, tensor)
            tensor.parameters = {
                **tensor.parameters,
                SHM_REGION: ref.region,
                SHM_OFFSET: ref.offset,
                SHM_BYTE_SIZE: written,
            }

    # -- statistics and model configuration (Triton's extensions) ------------------

    def statistics(self, name: str | None = None, version: str | None = None) -> dict[str, Any]:
        """Triton's ``$stats_model_response``: one model's, or every model's."""
        models = [self.repository.get(name, version)] if name else self.repository.models.values()
        return {"model_stats": [m.stats.json(m.name, m.version) for m in models]}

    def model_config(self, name: str, version: str | None = None) -> dict[str, Any]:
        return self.repository.get_ready(name, version).config()

    # -- system shared memory (Triton's extension) -----------------------------------

    def _registry(self) -> SharedMemoryRegistry:
        if self.shared_memory is None:
            reason = (
                f"each of the --workers {self.workers} processes would hold its own regions; "
                "run with --workers 1"
                if self.workers > 1
                else "start the server with --allow_shared_memory"
            )
            raise InvalidInput(f"This server takes no shared memory regions: {reason}")
        return self.shared_memory

    def register_shared_memory(self, name: str, key: Any, offset: Any, byte_size: Any) -> None:
        self._registry().register(name, key, offset, byte_size)

    def unregister_shared_memory(self, name: str | None = None) -> None:
        self._registry().unregister(name)

    def shared_memory_status(self, name: str | None = None) -> list[dict[str, Any]]:
        return self._registry().status(name)

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

    def input_limits(self) -> dict[str, int | None]:
        """Each model's ``max_inputs``, for a decoder that does not know the model yet."""
        return {name: model.max_inputs for name, model in self.repository.models.items()}

    def close(self) -> None:
        """At shutdown: stop the decoder, let go of what clients registered (shared memory)."""
        self.decoder.close()
        if self.shared_memory is not None:
            self.shared_memory.close()

    async def load(self, name: str, parameters: dict[str, Any] | None = None) -> None:
        """(Re)load a model from its directory; Triton's load parameters are refused."""
        if parameters:
            raise InvalidInput(
                f"Load parameter {', '.join(repr(k) for k in sorted(parameters))} is not "
                "supported: models load from their directory as they are, a 'config' or "
                "'file:' override would be ignored"
            )
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

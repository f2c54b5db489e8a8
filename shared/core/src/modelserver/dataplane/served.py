"""One served model: its lifecycle and the request pipeline around its ``Model``.

The pipeline of one inference, in order: select the outputs (from the
model's output table), preprocess (the model's, per request), batch or
queue, run ``compute`` (inline on the event loop or in the pool, as the
runner decides; under a time limit inline only when predict is proved fast
enough to end well inside it), then pack the
outputs as tensors. Around it: metrics, Triton-style statistics, trace
phases, the client's disconnect (queued work of a client that left is
dropped) and the in-flight count that unload waits for. Errors from the
model's own code become a 400 (its ``input_errors``) or a logged 500.

A model whose ``compute`` returns a pandas DataFrame answers its columns as
the outputs, and the response says so (``content_type: pd``, the v2
convention MLServer's codecs read), so a protocol that answers tables as
records (MLflow's) can.

A model with signatures answers each request with the one it selects
(``Model.for_request``), batched apart from the others. A model in TF
Serving's versioned layout is served as its highest version, holding the
others in ``older``; the repository finds each by its version.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..datatypes import config_datatype, datatype_of
from ..errors import (
    InferenceError,
    InvalidInput,
    ModelLoadError,
    ModelNotImplemented,
    ModelNotReady,
    ModelServerError,
    excerpt,
)
from ..model.base import Model
from ..model.content_types import output_content_types
from ..model.explanations import Explainer
from ..model.generation import Chunk, Generation, TextGenerator, generates
from ..model.outputs import alias_index
from ..model.tabular import is_frame
from ..observability import metrics
from ..types import InferRequest, InferResponse, Tensor
from . import warmup
from .batching import Batcher, batch_key, rows_of
from .context import RequestContext, abandon_on_disconnect
from .execution import PredictRunner
from .response_cache import INLINE_HASH_BYTES, ResponseCache, input_bytes, request_key
from .statistics import ModelStatistics

logger = logging.getLogger("modelserver.dataplane")

#: How much of a model's own exception text a client gets back.
MESSAGE_CHARS = 1000


class ModelState(enum.StrEnum):
    """Lifecycle states, named as the repository extension reports them."""

    LOADING = "LOADING"
    READY = "READY"
    UNAVAILABLE = "UNAVAILABLE"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class ServingOptions:
    """How every model of this server is served; the same for a reload."""

    executor: Executor | None = None
    predict_executor: str = "auto"
    max_batch_size: int = 0
    max_batch_delay_s: float = 0.0
    enable_metrics: bool = True
    #: ``--model_dir``: what clients see of file paths is relative to it.
    model_root: Path | None = None
    #: ``--max_inputs``: the most inputs a request to a model that declares none may have.
    max_inputs: int = 4096
    #: ``--warmup``: run warm-up requests before a model is READY (``warmup``). Off
    #: unless asked for, so a model served by hand is loaded as it is.
    warmup: bool = False
    #: ``--response_cache_size``: the process's response cache, shared by its models.
    cache: ResponseCache | None = None

    def client_text(self, text: str, limit: int) -> str:
        """``text`` for a client: paths under ``--model_dir`` made relative, cut, escaped.

        Clients need not (and should not) learn where the server keeps its
        files; the server's own log keeps the full path.
        """
        root = self.model_root
        if root is not None:
            for prefix in {str(root.resolve()), str(root)}:
                text = text.replace(prefix.rstrip("/") + "/", "")
        return excerpt(text, limit)


class ServedModel:
    """A model under a name: its state and the pipeline its requests go through."""

    def __init__(self, model: Model, options: ServingOptions | None = None) -> None:
        self.options = options or ServingOptions()
        self.model: Model | None = model
        self.name = model.name
        self.version = model.version
        self.model_dir: Path | None = model.model_dir
        self.platform = model.platform
        self.state = ModelState.LOADING
        self.reason = ""
        #: Requests inside ``infer`` now; unload waits for them to finish.
        self.inflight = 0
        self.runner = PredictRunner(self.options.executor, self.options.predict_executor)
        self.metrics = metrics.for_model(self.name) if self.options.enable_metrics else None
        self.cache_counters = (
            metrics.cache_counters(self.name)
            if self.options.cache is not None and self.options.enable_metrics
            else None
        )
        #: Triton's statistics extension: counts and durations since this load.
        self.stats = ModelStatistics()
        self.batcher: Batcher | None = None
        #: Batchers of the model's signatures, made on their first request.
        self._signature_batchers: dict[int, Batcher | None] = {}
        #: Set while warm-up requests run (``_warm_up``): they are never batched.
        self._warming = False
        #: The other versions served under this name, by version (ascending).
        self.older: dict[str, ServedModel] = {}
        #: The most inputs a request may have (``declared_input_limit``), set by ``load``.
        self.max_inputs: int = self.options.max_inputs

    # -- lifecycle ----------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.state is ModelState.READY

    @property
    def versions(self) -> list[str]:
        """Every version served under this name, ascending (this one, the highest, last)."""
        return [*self.older, self.version] if self.version else list(self.older)

    def at_version(self, version: str) -> ServedModel | None:
        """This model or one of its older versions; None when no such version is served."""
        return self if version == self.version else self.older.get(version)

    def load(self) -> None:
        """Load the model (blocking) and mark it READY, or FAILED with the reason.

        Older versions load first; one that fails fails the whole model.
        """
        model = self.require_model()
        self.state = ModelState.LOADING
        for version, other in self.older.items():
            try:
                other.load()
            except BaseException:
                self.state = ModelState.FAILED
                self.reason = f"version {version}: {other.reason}"
                raise
        started = time.perf_counter()
        try:
            model.load()
            if not len(model.outputs) and not model.outputs.dynamic:
                model.outputs.add("predict")
            if self.options.warmup:
                self._warm_up(model)
        except BaseException as exc:
            self.state = ModelState.FAILED
            self.reason = self.options.client_text(str(exc) or type(exc).__name__, 2000)
            raise
        self.batcher = self._batcher(model)
        self.max_inputs = self._input_limit(model)
        self.state = ModelState.READY
        self.reason = ""
        metrics.MODEL_LOAD_SECONDS.labels(self.name).set(time.perf_counter() - started)

    def _input_limit(self, model: Model) -> int:
        """What the model's declared inputs can hold, else ``--max_inputs``."""
        try:
            declared = declared_input_limit(model.inputs_metadata())
        except Exception:
            logger.exception("model %s failed to describe its inputs", self.name)
            declared = None
        return declared if declared is not None else self.options.max_inputs

    def _warm_up(self, model: Model) -> None:
        """Run the warm-up requests through the pipeline (``warmup``), not counted anywhere.

        Blocking, like ``load``: in an event loop of its own, in a thread of
        its own when this thread already runs one.
        """
        found = warmup.plan(model, self.name, self.version, self.model_dir)
        if not found.requests:
            logger.info("model %s: no warm-up (%s)", self.name, found.reason)
            return
        recorded, self.metrics = self.metrics, None
        # Unbatched, as the model's own batcher is made after: a batcher belongs
        # to the event loop it first ran in, and warm-up runs in one of its own.
        self._warming = True
        started = time.perf_counter()
        try:
            ran = _blocking(lambda: self._warm(model, found))
        finally:
            self.metrics = recorded
            self.stats = ModelStatistics()
            self._warming = False
        logger.info(
            "model %s warmed up: %d of %d requests from %s, %d rounds, in %.0f ms",
            self.name,
            ran,
            len(found.requests),
            found.source,
            warmup.ROUNDS,
            (time.perf_counter() - started) * 1000,
        )

    async def _warm(self, model: Model, found: warmup.Plan) -> int:
        """Each request ``warmup.ROUNDS`` times; how many requests ran."""
        ran = 0
        for index, request in enumerate(found.requests):
            try:
                for _ in range(warmup.ROUNDS):
                    await self._pipeline(model, request, RequestContext("warmup"))
            except Exception as exc:
                reason = exc.message if isinstance(exc, ModelServerError) else repr(exc)
                if found.required:
                    raise ModelLoadError(
                        f"warm-up request {index} of {found.source} failed: {reason}"
                    ) from None
                logger.warning(
                    "model %s: warm-up request %s skipped, the model refused it: %s",
                    self.name,
                    request.id,
                    reason,
                )
                continue
            ran += 1
        return ran

    def _batcher(self, model: Model) -> Batcher | None:
        opts = self.options
        if opts.max_batch_size <= 0:
            return None
        if not model.batchable or model.outputs.dynamic:
            logger.info("model %s: adaptive batching is off; this model cannot batch", self.name)
            return None
        return Batcher(
            self.name,
            model.compute,
            self.runner.run,
            opts.max_batch_size,
            opts.max_batch_delay_s,
            observe=metrics.batch_observer(self.name) if opts.enable_metrics else None,
            executed=self._executed,
            parallel=getattr(opts.executor, "_max_workers", 1),
        )

    def _executed(self, rows: int, start_ns: int, end_ns: int) -> None:
        self.stats.execution(rows, end_ns - start_ns, end_ns)

    def stop(self) -> None:
        """Take no more requests, and forget the answers kept for this name.

        The repository stops an instance when it unloads it and when a reload
        swaps a new one in: no kept answer outlives the model that computed
        it, and a stopped instance keeps none of its requests still running.
        """
        self.state = ModelState.UNAVAILABLE
        self.reason = "unloaded"
        for other in self.older.values():
            other.stop()
        if self.options.cache is not None:
            self.options.cache.drop(self.name)

    def release(self) -> None:
        """Let go of the model so its memory can be reclaimed (after in-flight requests)."""
        model, self.model, self.batcher = self.model, None, None
        self._signature_batchers.clear()
        if model is not None:
            model.release()
        for other in self.older.values():
            other.release()

    @property
    def busy(self) -> int:
        """Requests in flight in every version."""
        return self.inflight + sum(other.inflight for other in self.older.values())

    def require_model(self) -> Model:
        if self.model is None:
            raise ModelNotReady(self.name, self.reason or "released")
        return self.model

    # -- metadata -------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """Model metadata: only a loaded model can describe its tensors."""
        meta: dict[str, Any] = {
            "name": self.name,
            "versions": self.versions,
            "platform": self.platform,
            "inputs": [],
            "outputs": [],
        }
        model = self.model
        if self.state is not ModelState.READY or model is None:
            meta["state"] = self.state.value
            if self.reason:
                meta["reason"] = self.reason
            return meta
        meta["inputs"] = model.inputs_metadata()
        meta["outputs"] = model.outputs.metadata()
        params = dict(model.metadata_parameters())
        if not model.outputs.dynamic:
            params["default_outputs"] = model.outputs.defaults()
        params["explanations"] = (
            model.explainer.metadata()
            if model.explainer is not None
            else {"supported": False, "reason": self._unexplained(model)}
        )
        if params:
            meta["parameters"] = params
        return meta

    def explainer(self) -> Explainer:
        """What the model declared about its contributions; 501 saying why when nothing."""
        model = self.require_model()
        if model.explainer is None:
            raise ModelNotImplemented(
                f"Model '{self.name}' cannot explain its predictions: {self._unexplained(model)}"
            )
        return model.explainer

    @staticmethod
    def _unexplained(model: Model) -> str:
        return model.explain_unsupported or (
            f"{model.server_name} computes no per-feature contributions for its models; "
            "only :predict is served"
        )

    def config(self) -> dict[str, Any]:
        """Triton's model configuration, from what the model declares.

        ``max_batch_size`` is the batching limit when this model is batched
        (then ``dims`` leave out the batch dimension, as Triton's do), else
        0 and ``dims`` are the whole declared shapes.
        """
        model = self.require_model()
        batcher = self.batcher
        max_batch = batcher.max_batch_size if batcher is not None else 0

        def dims(shape: Any) -> list[int]:
            whole = [int(d) for d in shape]
            return whole[1:] if max_batch and whole else whole

        config: dict[str, Any] = {
            "name": self.name,
            "platform": self.platform,
            "backend": model.server_name,
            "max_batch_size": max_batch,
            "input": [
                {
                    "name": spec["name"],
                    "data_type": config_datatype(spec["datatype"]),
                    "format": "FORMAT_NONE",
                    "dims": dims(spec["shape"]),
                    "optional": False,
                }
                for spec in model.inputs_metadata()
            ],
            "output": [
                {
                    "name": spec["name"],
                    "data_type": config_datatype(spec["datatype"]),
                    "dims": dims(spec["shape"]),
                    "label_filename": "",
                }
                for spec in model.outputs.metadata()
            ],
        }
        if batcher is not None:
            config["dynamic_batching"] = {
                "preferred_batch_size": [],
                "max_queue_delay_microseconds": int(batcher.max_delay_s * 1_000_000),
            }
        return config

    # -- the request pipeline ------------------------------------------------------

    async def infer(self, request: InferRequest, ctx: RequestContext) -> InferResponse:
        """Select, preprocess, batch or queue, compute, pack: one request's answer."""
        model = self.model
        if model is None or self.state is not ModelState.READY:
            raise ModelNotReady(self.name, self.reason)
        cache = self.options.cache
        if cache is None:
            return await self._pipeline(model, request, ctx)
        return await self._cached(cache, model, request, ctx)

    async def _cached(
        self, cache: ResponseCache, model: Model, request: InferRequest, ctx: RequestContext
    ) -> InferResponse:
        """The kept answer to an identical request, else the pipeline's, then kept."""
        started = time.perf_counter_ns()
        if input_bytes(request) <= INLINE_HASH_BYTES:
            key = request_key(request, self.version)
        else:
            loop = asyncio.get_running_loop()
            key = await loop.run_in_executor(None, request_key, request, self.version)
        entry = cache.get(self.name, key)
        counters = self.cache_counters
        if entry is not None:
            response = entry.response(self.name, self.version, request.id)
            self.stats.hit(time.perf_counter_ns() - started, time.time_ns())
            if counters is not None:
                counters.hits.inc()
            return response
        looked_up = time.perf_counter_ns()
        response = await self._pipeline(model, request, ctx)
        keeping = time.perf_counter_ns()
        if self.state is ModelState.READY:
            cache.put(self.name, key, response)
        self.stats.miss(looked_up - started + time.perf_counter_ns() - keeping)
        if counters is not None:
            counters.misses.inc()
        return response

    async def _pipeline(
        self, model: Model, request: InferRequest, ctx: RequestContext
    ) -> InferResponse:
        self.inflight += 1
        started = time.perf_counter_ns()
        try:
            requested = [o.name for o in request.outputs] if request.outputs else None
            try:
                model = model.for_request(request)
                names = model.outputs.select(requested, self.name)
                inputs = model.preprocess(request)
            except ModelServerError:
                raise
            except Exception as exc:
                raise self._served_error(model, exc, request.id) from exc
            prepared = time.perf_counter_ns()
            computed = await self._compute(model, request, inputs, list(dict.fromkeys(names)), ctx)
            packing = time.perf_counter_ns()
            outputs = self._pack(model, computed.results, names, requested)
            output_content_types(request, outputs)
            done = time.perf_counter_ns()
            self.stats.request(
                rows_of(inputs),
                done - started,
                computed.start_ns - computed.queued_ns,
                (prepared - started, computed.end_ns - computed.start_ns, done - packing),
                not computed.batched,
            )
            return InferResponse(
                model_name=self.name,
                model_version=self.version,
                id=request.id,
                outputs=outputs,
                parameters={"content_type": "pd"} if is_frame(computed.results) else {},
            )
        except BaseException:
            self.stats.failure(time.perf_counter_ns() - started)
            raise
        finally:
            self.inflight -= 1

    async def _compute(
        self,
        model: Model,
        request: InferRequest,
        inputs: Any,
        names: list[str],
        ctx: RequestContext,
    ) -> Computed:
        batcher = self.batcher if model is self.model else self._signature_batcher(model)
        key = batch_key(inputs, names) if batcher is not None else None
        queued_ns = time.time_ns()
        try:
            queued = False
            if batcher is not None and key is not None:
                rows = rows_of(inputs)
                if batcher.alone(rows):
                    work = batcher.run_alone(inputs, names, ctx.deadline, rows)
                else:
                    work = batcher.enqueue(inputs, names, key, ctx.deadline, rows)
                    queued = True
            else:
                work = self.runner.run(model.compute, inputs, names, deadline=ctx.deadline)
            if not queued and self.runner.inline_for(ctx.deadline):
                results, start_ns, end_ns = await work
            else:
                results, start_ns, end_ns = await abandon_on_disconnect(work, ctx.disconnected)
        except ModelServerError:
            raise
        except Exception as exc:
            raise self._served_error(model, exc, request.id) from exc
        if key is None:
            self.stats.execution(rows_of(inputs), end_ns - start_ns, end_ns)
        if self.metrics is not None:
            self.metrics.queue.observe((start_ns - queued_ns) / 1e9)
            self.metrics.predict.observe((end_ns - start_ns) / 1e9)
        if ctx.trace is not None:
            ctx.trace.phase("queue", queued_ns, start_ns)
            ctx.trace.phase("predict", start_ns, end_ns)
        return Computed(results, queued_ns, start_ns, end_ns, key is not None)

    def _signature_batcher(self, signature: Model) -> Batcher | None:
        if self._warming:
            return None
        key = id(signature)
        if key not in self._signature_batchers:
            self._signature_batchers[key] = self._batcher(signature)
        return self._signature_batchers[key]

    async def generate(self, job: Generation) -> AsyncIterator[Chunk]:
        """A generative model's chunks for ``job``, in flight (for unload) until the last.

        Errors of the model's own code become a 400 (its ``input_errors``)
        or a logged 500, as for ``infer``.
        """
        model = self.model
        if model is None or self.state is not ModelState.READY:
            raise ModelNotReady(self.name, self.reason)
        if not generates(model):
            raise InvalidInput(f"Model '{self.name}' does not generate text")
        assert isinstance(model, TextGenerator)
        watch = metrics.for_generation(self.name) if self.metrics is not None else None
        self.inflight += 1
        if watch is not None:
            watch.active.inc()
        started = time.perf_counter()
        tokens = 0
        try:
            async for chunk in model.stream(job):
                if watch is not None and tokens == 0 and chunk.tokens:
                    watch.first_token.observe(time.perf_counter() - started)
                tokens += chunk.tokens
                yield chunk
        except ModelServerError:
            raise
        except Exception as exc:
            raise self._served_error(model, exc, job.id) from exc
        finally:
            self.inflight -= 1
            if watch is not None:
                watch.active.dec()
                watch.tokens.inc(tokens)

    def _pack(
        self,
        model: Model,
        results: Mapping[str, Any],
        names: list[str],
        requested: list[str] | None,
    ) -> list[Tensor]:
        """The output tensors, each under the name the request used (an alias stays one)."""
        if model.outputs.dynamic and requested:
            return [to_tensor(name, self._dynamic(results, name)) for name in requested]
        if requested:
            pairs = zip(requested, names, strict=True)
            return [to_tensor(asked, results[name]) for asked, name in pairs]
        return [to_tensor(str(name), value) for name, value in results.items()]

    def _dynamic(self, results: Mapping[str, Any], name: str) -> Any:
        """A requested output of a dynamic table: by name, or the N-th for ``output-N``."""
        if name in results:
            return results[name]
        index = alias_index(name)
        if index is not None and index < len(results):
            return list(results.values())[index]
        raise InvalidInput(
            f"Model '{self.name}' has no output named {name!r}; available: {', '.join(results)}"
        )

    def _served_error(
        self, model: Model, exc: Exception, request_id: str | None
    ) -> ModelServerError:
        """What the client gets for an exception of the model's own code."""
        text = self.options.client_text(str(exc), MESSAGE_CHARS)
        if isinstance(exc, model.input_errors):
            return InvalidInput(f"Model '{self.name}' rejected the input: {text}")
        logger.error(
            "model %s raised (request id %s)",
            self.name,
            request_id,
            exc_info=exc,
        )
        return InferenceError(f"Model '{self.name}' failed: {type(exc).__name__}: {text}")


@dataclass(frozen=True, slots=True)
class Computed:
    """What one request's compute step gave: its outputs and when it queued, ran and ended."""

    results: Mapping[str, Any]
    queued_ns: int
    start_ns: int
    end_ns: int
    #: Run in a batch with other requests (its execution is counted by the batcher).
    batched: bool


def declared_input_limit(specs: list[dict[str, Any]]) -> int | None:
    """The most named inputs a request to a model with these declared inputs can need.

    Each declared input once, but a table [N, F] (a declared width F) may also
    come as F named columns, as clients of table models send it (a DataFrame).
    None when the model declares no inputs or a table of unknown width: then
    ``--max_inputs`` bounds the request instead.
    """
    if not specs:
        return None
    total = 0
    for spec in specs:
        shape = list(spec.get("shape") or [])
        if len(shape) != 2:
            total += 1
            continue
        width = shape[1]
        if not isinstance(width, int) or width < 0:
            return None
        total += max(width, 1)
    return total


T = TypeVar("T")


def _blocking(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine ``work()`` to its end from blocking code (``load``)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work())
    with ThreadPoolExecutor(1, thread_name_prefix="warmup") as thread:
        return thread.submit(asyncio.run, work()).result()


def to_tensor(name: str, value: Any) -> Tensor:
    """An output tensor from whatever predict returned (array, list, Series, frame)."""
    if hasattr(value, "to_numpy"):
        value = value.to_numpy()
    try:
        arr = np.asarray(value)
    except ValueError as exc:  # ragged rows: no tensor shape
        raise InferenceError(f"Output '{name}' is not a regular array: {exc}") from None
    if arr.dtype.kind in "US":
        obj = np.empty(arr.shape, dtype=object)
        obj[...] = arr
        arr = obj
    try:
        datatype = datatype_of(arr.dtype)
    except TypeError as exc:
        raise InferenceError(f"Output '{name}': {exc}") from None
    return Tensor(name, datatype, tuple(arr.shape), arr)

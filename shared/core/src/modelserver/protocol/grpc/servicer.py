"""The v2 gRPC transport: ``inference.GRPCInferenceService`` on grpc.aio.

Registered as a generic handler built from the service descriptor, so the
messages come from our private pool (see ``messages``). Each RPC maps its
message through the gRPC codec to the data plane; errors leave with the
status code from the architecture's table, the same as REST. On the
``ModelStreamInfer`` stream every request is answered on the stream, an
error as ``error_message``, and the stream stays open for the next. As
Triton's decoupled models answer, a request to a generative model gets one
response per chunk of text as it is written, and every request's last
response carries the parameter ``triton_final_response: true``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format
from google.protobuf.message import DecodeError

from ... import protos as pb
from ...codecs import v2_grpc
from ...dataplane.context import RequestContext
from ...dataplane.dataplane import DataPlane
from ...dataplane.gate import UNKNOWN_MODEL, InferenceGate
from ...dataplane.policy import RequestPolicy
from ...dataplane.served import ServedModel
from ...errors import InferenceError, InvalidInput, ModelServerError
from ...model.generation import Chunk, Generation, TextGenerator, generates, sampling_params
from ...observability import metrics, tracing
from ...types import InferRequest, InferResponse, Tensor

logger = logging.getLogger("modelserver.grpc")

Handler = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]


#: RPCs that stay open to probes when authentication is on.
PROBES = frozenset(["ServerLive", "ServerReady", "ModelReady"])


def _metadata(context: grpc.aio.ServicerContext[Any, Any]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)]


#: Bytes -> the request an RPC takes (``ModelInfer``'s may decode off the loop).
Parse = Callable[[bytes], Awaitable[Any]]


def _guarded(
    method: str,
    fn: Handler,
    request_cls: Any,
    policy: RequestPolicy,
    parse: Parse | None = None,
) -> Handler:
    """Parse the request and run the RPC, mapping every failure to its gRPC status.

    Parsing happens here rather than in grpc's deserializer so that bytes that
    are not a valid message get INVALID_ARGUMENT (grpc would answer UNKNOWN);
    ``parse`` replaces ``request_cls.FromString`` where given.
    Anything unexpected is INTERNAL and logged.
    """

    checks_auth = policy.auth_on and method not in PROBES

    async def answer(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if checks_auth:
            policy.authenticate(_authorization(context))
        try:
            request = request_cls.FromString(raw) if parse is None else await parse(raw)
        except DecodeError as exc:
            if method == "ModelInfer":
                metrics.for_model(UNKNOWN_MODEL).request("v2-grpc", "INVALID_ARGUMENT", 0.0)
            raise InvalidInput(f"Malformed {request_cls.__name__} message: {exc}") from None
        del raw
        return await fn(request, context)

    @functools.wraps(fn)
    async def wrapper(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await answer(raw, context)
        except ModelServerError as exc:
            error = exc
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            logger.exception("%s failed", method)
            error = InferenceError(f"Internal error: {type(exc).__name__}: {exc}")
        # grpc keeps the abort's exception, and through its traceback this frame,
        # in a reference cycle with the call: let go of the request's bytes and of
        # the frames that decoded it, or they live until the next full collection.
        del raw
        error.__traceback__ = None
        error.__context__ = None
        await abort_with(context, method, error)

    return wrapper


def status_of(exc: ModelServerError) -> grpc.StatusCode:
    """The gRPC status of one of our errors (each names its code)."""
    return grpc.StatusCode[exc.grpc_code]


async def abort_with(
    context: grpc.aio.ServicerContext[Any, Any], method: str, exc: ModelServerError
) -> None:
    """The one mapping from an error to its gRPC answer, logged by severity."""
    level = logging.ERROR if exc.http_status >= 500 else logging.WARNING
    logger.log(level, "%s -> %s: %s", method, exc.grpc_code, exc.message)
    await context.abort(status_of(exc), exc.message)


def _authorization(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return value if isinstance(value, str) else value.decode("latin-1")
    return None


def _stream_guarded(
    fn: Callable[[AsyncIterator[bytes], Any], AsyncIterator[Any]], policy: RequestPolicy
) -> Callable[[AsyncIterator[bytes], Any], AsyncIterator[Any]]:
    """A streaming RPC behind authentication (checked once, when the stream opens)."""

    @functools.wraps(fn)
    async def wrapper(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[Any]:
        if policy.auth_on:
            try:
                policy.authenticate(_authorization(context))
            except ModelServerError as exc:
                await abort_with(context, fn.__name__, exc)
        async for answer in fn(requests, context):
            yield answer

    return wrapper


#: Marks the end of a stream's requests in its answer queue.
_END_OF_REQUESTS = object()
#: Marks that one request of a stream has had its last answer.
_ANSWERED = object()
#: Triton's parameter on a stream response: the request's last response.
FINAL = "triton_final_response"


class InferenceServicer:
    """The RPCs of GRPCInferenceService over a data plane."""

    def __init__(self, dataplane: DataPlane, gate: InferenceGate):
        self.dataplane = dataplane
        self.gate = gate
        meta = dataplane.server_metadata_dict
        self._server_metadata = pb.ServerMetadataResponse(
            name=meta["name"], version=meta["version"], extensions=meta["extensions"]
        )
        self._live = pb.ServerLiveResponse(live=True)

    async def ServerLive(self, request: Any, context: Any) -> Any:
        return self._live

    async def ServerReady(self, request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=self.dataplane.ready())

    async def ModelReady(self, request: Any, context: Any) -> Any:
        ready = self.dataplane.model_ready(request.name, request.version or None)
        return pb.ModelReadyResponse(ready=ready)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        return self._server_metadata

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        meta = self.dataplane.model_metadata(request.name, request.version or None)
        response = pb.ModelMetadataResponse(
            name=meta["name"], versions=meta["versions"], platform=meta["platform"]
        )
        for key in ("inputs", "outputs"):
            target = getattr(response, key)
            for spec in meta[key]:
                target.add(name=spec["name"], datatype=spec["datatype"], shape=spec["shape"])
        return response

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        remaining = context.time_remaining()
        return await self.gate.serve(
            request.model_name,
            RequestContext("v2-grpc"),
            functools.partial(self._infer, request),
            grpc_status=True,
            deadline_s=remaining,
            headers=_metadata(context) if tracing.enabled() else (),
        )

    async def parse_infer(self, raw: bytes) -> Any:
        """A ModelInferRequest; one costly to decode, parsed and decoded in the decoding process.

        Costly: more than ``INLINE_DECODE_BYTES`` to walk element by element
        (``v2_grpc.decode_size``: large raw tensors are cheap, typed contents
        and many inputs are not).

        Then it comes back as our ``InferRequest`` (``_infer`` takes either);
        unparseable bytes raise ``DecodeError`` either way.
        """
        decoder = self.dataplane.decoder
        size = v2_grpc.decode_size(raw)
        if not decoder.offloads(size):
            return pb.ModelInferRequest.FromString(raw)
        limits = self.dataplane.input_limits()
        return await decoder.decode(size, v2_grpc.parse_and_decode, raw, limits)

    async def _infer(self, request: Any, ctx: RequestContext) -> Any:
        served = self.dataplane.repository.get_ready(
            request.model_name, request.model_version or None
        )
        trace = ctx.trace
        t0 = time.time_ns() if trace is not None else 0
        if isinstance(request, InferRequest):
            infer_request = request  # decoded with the message (``parse_infer``)
        else:
            registry = self.dataplane.shared_memory
            infer_request = v2_grpc.decode_infer_request(
                request, registry.read if registry is not None else None, served.max_inputs
            )
        if trace is not None:
            trace.phase("decode", t0, time.time_ns())
        response = await self.dataplane.infer(infer_request, ctx)
        t2 = time.time_ns() if trace is not None else 0
        out = v2_grpc.encode_infer_response(response)
        if trace is not None:
            trace.phase("encode", t2, time.time_ns())
        return out

    async def ModelStreamInfer(
        self, requests: AsyncIterator[bytes], context: Any
    ) -> AsyncIterator[Any]:
        """Answer each request of the stream on it, in the order the answers come.

        Requests run concurrently (so they batch like separate calls); each
        answer is a ``ModelStreamInferResponse`` with the response or, for a
        request that failed, its ``error_message`` (and the request's id),
        and the stream goes on. A generative model answers with one response
        per chunk of text. It ends when the client closes its side and every
        request has had its last answer.
        """
        answers: asyncio.Queue[Any] = asyncio.Queue()
        tasks: set[asyncio.Task[None]] = set()
        started = 0

        async def answer(raw: bytes) -> None:
            try:
                async for response in self._stream_answers(raw, context):
                    answers.put_nowait(response)
            finally:
                answers.put_nowait(_ANSWERED)

        async def read() -> None:
            nonlocal started
            try:
                async for raw in requests:
                    started += 1
                    task = asyncio.ensure_future(answer(raw))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            finally:
                answers.put_nowait(_END_OF_REQUESTS)

        reader = asyncio.ensure_future(read())
        answered = 0
        ended = False
        try:
            while not ended or answered < started:
                item = await answers.get()
                if item is _END_OF_REQUESTS:
                    ended = True
                elif item is _ANSWERED:
                    answered += 1
                else:
                    yield item
        finally:
            reader.cancel()
            for task in list(tasks):
                task.cancel()

    async def _stream_answers(self, raw: bytes, context: Any) -> AsyncIterator[Any]:
        """One stream request's answers: its response(s), or its error as ``error_message``."""
        request = None
        try:
            try:
                request = await self.parse_infer(raw)
            except DecodeError as exc:
                raise InvalidInput(f"Malformed ModelInferRequest message: {exc}") from None
            served = self.dataplane.repository.get(
                request.model_name, request.model_version or None
            )
            if generates(served.model):
                async for response in self._generation(served, request, context):
                    yield response
                return
            response = await self.ModelInfer(request, context)
            response.parameters[FINAL].bool_param = True
            yield pb.ModelStreamInferResponse(infer_response=response)
            return
        except ModelServerError as exc:
            level = logging.ERROR if exc.http_status >= 500 else logging.WARNING
            logger.log(level, "ModelStreamInfer -> %s: %s", exc.grpc_code, exc.message)
            message = exc.message
        except Exception as exc:
            logger.exception("ModelStreamInfer failed")
            message = f"Internal error: {type(exc).__name__}: {exc}"
        failed = pb.ModelStreamInferResponse(error_message=message)
        if request is not None:
            failed.infer_response.model_name = request.model_name
            failed.infer_response.model_version = request.model_version
            failed.infer_response.id = request.id
            failed.infer_response.parameters[FINAL].bool_param = True
        yield failed

    async def _generation(
        self, served: ServedModel, request: Any, context: Any
    ) -> AsyncIterator[Any]:
        """A generation request's answers: one response per chunk, the last marked final."""
        job = generation_job(v2_grpc.decode_infer_request(request))
        model = served.require_model()
        assert isinstance(model, TextGenerator)
        chunks = await self.gate.open_stream(
            request.model_name,
            RequestContext("v2-grpc"),
            lambda ctx: served.generate(job),
            grpc_status=True,
            deadline_s=context.time_remaining(),
            headers=_metadata(context) if tracing.enabled() else (),
        )
        ended = 0
        async for chunk in chunks:
            ended += chunk.finish_reason is not None
            final = ended == job.params.n
            response = _chunk_response(served, request.id, model.text_output, chunk, job, final)
            yield pb.ModelStreamInferResponse(infer_response=response)

    async def RepositoryIndex(self, request: Any, context: Any) -> Any:
        response = pb.RepositoryIndexResponse()
        for entry in self.dataplane.repository_index(request.ready):
            response.models.add(
                name=entry["name"],
                version=entry.get("version", ""),
                state=entry.get("state", ""),
                reason=entry.get("reason", ""),
            )
        return response

    async def RepositoryModelLoad(self, request: Any, context: Any) -> Any:
        await self.dataplane.load(request.model_name, dict(request.parameters))
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request: Any, context: Any) -> Any:
        await self.dataplane.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()

    # -- Triton's statistics, model configuration and system shared memory --------------

    async def ModelStatistics(self, request: Any, context: Any) -> Any:
        stats = self.dataplane.statistics(request.name or None, request.version or None)
        return json_format.ParseDict(stats, pb.ModelStatisticsResponse())

    async def ModelConfig(self, request: Any, context: Any) -> Any:
        config = self.dataplane.model_config(request.name, request.version or None)
        return json_format.ParseDict({"config": config}, pb.ModelConfigResponse())

    async def SystemSharedMemoryStatus(self, request: Any, context: Any) -> Any:
        response = pb.SystemSharedMemoryStatusResponse()
        for region in self.dataplane.shared_memory_status(request.name or None):
            json_format.ParseDict(region, response.regions[region["name"]])
        return response

    async def SystemSharedMemoryRegister(self, request: Any, context: Any) -> Any:
        self.dataplane.register_shared_memory(
            request.name, request.key, request.offset, request.byte_size
        )
        return pb.SystemSharedMemoryRegisterResponse()

    async def SystemSharedMemoryUnregister(self, request: Any, context: Any) -> Any:
        self.dataplane.unregister_shared_memory(request.name or None)
        return pb.SystemSharedMemoryUnregisterResponse()


def generation_job(request: InferRequest) -> Generation:
    """The generation a v2 request asks for: one prompt (one BYTES element), its parameters."""
    if len(request.inputs) != 1 or request.inputs[0].datatype != "BYTES":
        raise InvalidInput("A generation request has one BYTES input: the prompt")
    data = request.inputs[0].data.reshape(-1)
    if data.size != 1:
        raise InvalidInput(
            f"A streamed generation takes one prompt per request, got {data.size}; "
            "send each prompt as a request of its own on the stream"
        )
    prompt = data[0]
    text = prompt.decode("utf-8", errors="replace") if isinstance(prompt, bytes) else str(prompt)
    return Generation(text, sampling_params(request.parameters), request.id or "")


def _chunk_response(
    served: ServedModel, request_id: str, output: str, chunk: Chunk, job: Generation, final: bool
) -> Any:
    """One chunk as a ModelInferResponse: its text, and what it says of its sequence."""
    text = np.empty(1, dtype=object)
    text[0] = chunk.text.encode("utf-8")
    parameters: dict[str, Any] = {FINAL: final, "index": chunk.index, "tokens": chunk.tokens}
    if chunk.finish_reason is not None:
        parameters["finish_reason"] = chunk.finish_reason
    if final:
        parameters["prompt_tokens"] = job.prompt_tokens
    response = InferResponse(
        served.name, [Tensor(output, "BYTES", (1,), text)], request_id, served.version, parameters
    )
    return v2_grpc.encode_infer_response(response)


def service_handler(
    service: Any, servicer: Any, message_class: Callable[[str], Any], policy: RequestPolicy
) -> grpc.GenericRpcHandler:
    """A handler serving every RPC of a service descriptor with ``servicer``'s methods.

    ``message_class`` finds a message's class by full name in the service's pool.
    """
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in service.methods:
        request_cls = message_class(method.input_type.full_name)
        response_cls = message_class(method.output_type.full_name)
        if method.client_streaming:
            handlers[method.name] = grpc.stream_stream_rpc_method_handler(
                _stream_guarded(getattr(servicer, method.name), policy),
                request_deserializer=None,
                response_serializer=response_cls.SerializeToString,
            )
            continue
        parse = servicer.parse_infer if method.name == "ModelInfer" else None
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            _guarded(method.name, getattr(servicer, method.name), request_cls, policy, parse),
            request_deserializer=None,
            response_serializer=response_cls.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


def generic_handler(dataplane: DataPlane, gate: InferenceGate) -> grpc.GenericRpcHandler:
    """A handler serving every RPC of the service descriptor."""
    servicer = InferenceServicer(dataplane, gate)
    return service_handler(pb.SERVICE, servicer, pb.message_class, gate.policy)

"""OpenAI's API over the data plane: models, completions, chat completions, embeddings.

Served under ``/openai/v1/`` (where KServe's huggingfaceserver serves it)
and ``/v1/`` when the runtime's ``Model.protocols`` has "openai"; ``GET
/v1/models`` and ``GET /v1/models/{name}`` answer for KServe's v1 protocol
and OpenAI's at once (each client reads its own fields).

Completions and chats go to a generative model (``TextGenerator``) through
its served model, which counts them in flight; a streamed one is an SSE
reply whose events are written as the model writes, admitted by the gate
until its last event, and cancelled (the model stops writing) when the
client leaves. A completions request with several prompts writes them
concurrently, choice ``i * n + j`` being prompt ``i``'s ``j``-th sequence.
Embeddings are ordinary v2 inferences of the model's ``embedding`` and
``token_count`` outputs, so they are batched with every other request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

import numpy as np

from ...codecs import openai as codec
from ...dataplane.context import RequestContext, abandon_on_disconnect
from ...dataplane.dataplane import DataPlane
from ...dataplane.gate import InferenceGate
from ...dataplane.served import ServedModel
from ...errors import InvalidInput, ModelServerError
from ...model.generation import EMBEDDING, TOKEN_COUNT, Chunk, Generation, TextGenerator
from ...types import InferRequest, RequestedOutput, Tensor
from .exchange import JSON, HttpRequest, Reply, StreamReply, json_reply, wait_for_disconnect

logger = logging.getLogger("modelserver.openai")

#: The protocol label of OpenAI's requests in metrics and traces.
PROTOCOL = "openai-rest"


class OpenAIHandlers:
    """The OpenAI endpoints over one data plane (``Handlers.openai``)."""

    def __init__(
        self,
        dataplane: DataPlane,
        gate: InferenceGate,
        read: Callable[[HttpRequest], Awaitable[bytes]],
    ) -> None:
        self.dataplane = dataplane
        self.gate = gate
        self.read = read

    # -- models ------------------------------------------------------------------------

    def entry(self, name: str) -> dict[str, Any]:
        plane = self.dataplane
        return codec.model_entry(name, int(plane.started_at), plane.server_name)

    def listing(self) -> dict[str, Any]:
        """``GET /v1/models``: every served model."""
        return {"object": "list", "data": [self.entry(n) for n in self.dataplane.repository.models]}

    async def models(self, req: HttpRequest) -> Reply:
        return json_reply(self.listing())

    async def model(self, req: HttpRequest) -> Reply:
        return json_reply(self.entry(self.dataplane.repository.get(req.name).name))

    # -- completions and chats -----------------------------------------------------------

    async def completions(self, req: HttpRequest) -> Reply | StreamReply:
        return await self._text(req, codec.completion_request(await self.read(req)))

    async def chat_completions(self, req: HttpRequest) -> Reply | StreamReply:
        return await self._text(req, codec.chat_request(await self.read(req)))

    async def _text(self, req: HttpRequest, request: codec.TextRequest) -> Reply | StreamReply:
        answer = codec.TextAnswer(request)
        ctx = RequestContext(PROTOCOL)
        if request.stream:
            chunks = await self.gate.open_stream(
                request.model, ctx, partial(self._chunks, answer), headers=req.headers
            )
            return StreamReply(codec.SSE, _events(answer, chunks))
        ctx.disconnected = partial(wait_for_disconnect, req.receive)
        return await self.gate.serve(
            request.model, ctx, partial(self._whole, answer), headers=req.headers
        )

    async def _whole(self, answer: codec.TextAnswer, ctx: RequestContext) -> Reply:
        async def collect() -> None:
            async for chunk in self._chunks(answer, ctx):
                answer.add(chunk)

        await abandon_on_disconnect(collect(), ctx.disconnected)
        return 200, answer.body(), JSON, []

    async def _chunks(self, answer: codec.TextAnswer, ctx: RequestContext) -> AsyncIterator[Chunk]:
        """Every chunk of every prompt, numbered as OpenAI numbers choices."""
        request = answer.request
        served = self.dataplane.repository.get_ready(request.model)
        jobs = [
            Generation(prompt, request.params, answer.id, templated=request.chat)
            for prompt in self._prompts(served, request)
        ]
        n = request.params.n
        try:
            async for which, chunk in _merged([served.generate(job) for job in jobs]):
                chunk.index += which * n
                answer.prompt_tokens = sum(job.prompt_tokens for job in jobs)
                yield chunk
        finally:
            for job in jobs:
                job.cancelled.set()

    @staticmethod
    def _prompts(served: ServedModel, request: codec.TextRequest) -> list[str | list[int]]:
        if not request.chat:
            return request.prompts
        model = served.require_model()
        if not isinstance(model, TextGenerator) or not model.generates:
            raise InvalidInput(f"Model '{served.name}' does not generate text")
        return [model.chat_prompt(request.messages)]

    # -- embeddings ------------------------------------------------------------------------

    async def embeddings(self, req: HttpRequest) -> Reply:
        request = codec.embedding_request(await self.read(req))
        ctx = RequestContext(PROTOCOL, disconnected=partial(wait_for_disconnect, req.receive))
        return await self.gate.serve(
            request.model, ctx, partial(self._embed, request), headers=req.headers
        )

    async def _embed(self, request: codec.EmbeddingRequest, ctx: RequestContext) -> Reply:
        served = self.dataplane.repository.get_ready(request.model)
        model = served.require_model()
        if EMBEDDING not in model.outputs or TOKEN_COUNT not in model.outputs:
            raise InvalidInput(f"Model '{served.name}' does not embed text")
        inputs = model.inputs_metadata()
        name = inputs[0]["name"] if len(inputs) == 1 else "input"
        texts = np.empty(len(request.texts), dtype=object)
        texts[:] = [t.encode("utf-8") for t in request.texts]
        infer = InferRequest(
            request.model,
            [Tensor(name, "BYTES", texts.shape, texts)],
            outputs=[RequestedOutput(EMBEDDING), RequestedOutput(TOKEN_COUNT)],
        )
        response = await self.dataplane.infer(infer, ctx)
        vectors, tokens = (t.data for t in response.outputs)
        body = codec.embeddings_body(request.model, vectors, tokens.tolist(), request.base64)
        return 200, body, JSON, []


async def _events(answer: codec.TextAnswer, chunks: AsyncIterator[Chunk]) -> AsyncIterator[bytes]:
    """A stream's events; an error after the first ends it as OpenAI's error event."""
    try:
        async for chunk in chunks:
            yield answer.event(chunk)
        if answer.request.include_usage:
            yield answer.usage_event()
    except ModelServerError as exc:
        logger.warning("stream %s ended by an error: %s", answer.id, exc.message)
        yield codec.sse(codec.error_object(exc.http_status, exc.message))
        return
    except Exception as exc:
        logger.error("stream %s failed", answer.id, exc_info=exc)
        yield codec.sse(codec.error_object(500, f"Internal error: {type(exc).__name__}: {exc}"))
        return
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()
    yield codec.DONE


class _End:
    """One merged stream ended."""


async def _merged(streams: list[AsyncIterator[Chunk]]) -> AsyncIterator[tuple[int, Chunk]]:
    """The chunks of several streams as they come, each with its stream's position."""
    if len(streams) == 1:
        async for chunk in streams[0]:
            yield 0, chunk
        return
    queue: asyncio.Queue[tuple[int, Chunk | _End | BaseException]] = asyncio.Queue()

    async def pump(which: int, stream: AsyncIterator[Chunk]) -> None:
        try:
            async for chunk in stream:
                queue.put_nowait((which, chunk))
        except Exception as exc:
            queue.put_nowait((which, exc))
        else:
            queue.put_nowait((which, _End()))

    tasks = [asyncio.ensure_future(pump(i, s)) for i, s in enumerate(streams)]
    running = len(tasks)
    try:
        while running:
            which, item = await queue.get()
            if isinstance(item, _End):
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield which, item
    finally:
        for task in tasks:
            task.cancel()

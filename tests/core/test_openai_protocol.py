"""OpenAI's API and streamed generation in the core, in process, with a framework-free model.

``Words`` is a ``TextGenerator`` that writes the prompt's words again, one
token per word, so every answer is known in advance; it can be told to hold
after two tokens (until cancelled) or to fail. What a real runtime does with
it (huggingfaceserver, through the real server and the ``openai`` client) is
in tests/runtimes/test_huggingface.py; here: the codec's rules, the SSE
stream as the app writes it, a client leaving, admission held by a stream,
errors before and after the first event, and the gRPC stream's responses.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import orjson
import pytest
from inproc import Arith, Stack, asgi, grpc_channel, loaded, stack
from modelserver import (
    EMBEDDING,
    TOKEN_COUNT,
    Chunk,
    Generation,
    InvalidInput,
    Model,
    StopText,
    TextGenerator,
    sampling_params,
    tensor_spec,
)
from modelserver import protos as pb
from modelserver.codecs import openai as codec
from modelserver.protocol.rest.routes import OPENAI

WAIT_S = 5.0


class Words(Model, TextGenerator):
    """Writes the prompt's words again (``w`` becomes `` w<sequence>``), one token each."""

    def __init__(self, name: str = "words") -> None:
        super().__init__(name)
        self.jobs: list[Generation] = []
        self.hold = False
        self.stopped = threading.Event()

    def load(self) -> None:
        self.outputs.add(self.text_output, "BYTES", [-1])

    def predict(self, inputs: Any) -> Any:
        return inputs

    def chat_prompt(self, messages: list[dict[str, Any]]) -> str:
        return " ".join(m["content"] for m in messages)

    def generate(self, job: Generation, emit: Any) -> None:
        self.jobs.append(job)
        words = str(job.prompt).split()
        job.prompt_tokens = len(words)
        if "refuse" in words:
            raise ValueError("this prompt is refused")
        params = job.params
        stops = [StopText(params.stop) for _ in range(params.n)]
        done = [False] * params.n
        limit = params.max_tokens or 8
        for step in range(limit):
            if self.hold and step == 2:
                job.cancelled.wait(WAIT_S)
            if job.cancelled.is_set():
                self.stopped.set()
                return
            word = words[step % len(words)]
            if word == "boom":
                raise RuntimeError("the model broke mid-way")
            for i in range(params.n):
                if done[i]:
                    continue
                text = stops[i].feed(f" {word}{i}")
                reason = "stop" if stops[i].stopped else None
                if reason is None and step == limit - 1:
                    reason, text = "length", text + stops[i].flush()
                done[i] = reason is not None
                emit(Chunk(i, text, 1, finish_reason=reason))


class Embedder(Model):
    """Each text's vector: [its length, its words]; the two outputs OpenAI's embeddings read."""

    def load(self) -> None:
        self.outputs.add(EMBEDDING, "FP32", [-1, 2])
        self.outputs.add(TOKEN_COUNT, "INT64", [-1], default=False)

    def predict(self, inputs: Any) -> Any:
        texts = [str(t) for t in inputs]
        vectors = np.array([[len(t), len(t.split())] for t in texts], dtype=np.float32)
        return {EMBEDDING: vectors, TOKEN_COUNT: np.array([len(t.split()) for t in texts])}

    def inputs_metadata(self) -> list[dict[str, Any]]:
        return [tensor_spec("text", "BYTES", [-1])]


@pytest.fixture
def words() -> Words:
    return Words()


@pytest.fixture
def s(words: Words) -> Stack:
    served = [loaded(words), loaded(Embedder("emb")), loaded(Arith())]
    return stack(*served, protocols=(OPENAI,))


def post(s: Stack, path: str, body: dict[str, Any], **kwargs: Any) -> Any:
    return asyncio.run(asgi(s.app(), "POST", path, orjson.dumps(body), **kwargs))


def events(bodies: list[bytes]) -> list[Any]:
    """The SSE events of a streamed reply: one per body message, [DONE] as itself."""
    out = []
    for body in bodies:
        if not body:
            continue
        assert body.startswith(b"data: ") and body.endswith(b"\n\n"), body
        data = body[6:-2]
        out.append(data.decode() if data == b"[DONE]" else orjson.loads(data))
    return out


# -- the codec's rules --------------------------------------------------------------------


def test_requests_are_checked_as_openai_checks_them() -> None:
    request = codec.completion_request(b'{"model": "m", "prompt": ["a b", [1, 2]]}')
    assert request.prompts == ["a b", [1, 2]] and request.params.max_tokens == 16
    chat = codec.chat_request(
        orjson.dumps(
            {
                "model": "m",
                "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                "max_completion_tokens": 3,
                "logprobs": True,
                "top_logprobs": 2,
            }
        )
    )
    assert chat.messages == [{"role": "user", "content": "hi"}]
    assert (chat.params.max_tokens, chat.params.logprobs) == (3, 2)
    refused = {
        b'{"model": "m", "prompt": "x", "max_token": 3}': "Unrecognized request argument",
        b'{"prompt": "x"}': "'model' is required",
        b'{"model": "m", "prompt": "x", "echo": true}': "'echo' is not supported",
        b'{"model": "m", "prompt": "x", "n": 17}': "'n'",
        b'{"model": "m", "prompt": "x", "top_p": 0}': "greater than 0",
        b'{"model": "m", "prompt": "x", "stream_options": {}}': "stream_options",
        b'{"model": "m", "prompt": []}': "'prompt'",
    }
    for body, reason in refused.items():
        with pytest.raises(InvalidInput, match=reason):
            codec.completion_request(body)
    image = {"type": "image_url", "image_url": {"url": "x"}}
    with pytest.raises(InvalidInput, match="image_url"):
        codec.chat_request(
            orjson.dumps({"model": "m", "messages": [{"role": "user", "content": [image]}]})
        )
    with pytest.raises(InvalidInput, match="dimensions"):
        codec.embedding_request(b'{"model": "m", "input": "x", "dimensions": 8}')


def test_sampling_params_read_v2_parameters() -> None:
    params = sampling_params({"max_tokens": 5.0, "temperature": 0, "stop": "x", "seed": 3})
    assert (params.max_tokens, params.temperature, params.stop, params.seed) == (5, 0.0, ("x",), 3)
    with pytest.raises(InvalidInput, match="min_tokens"):
        sampling_params({"max_tokens": 2, "min_tokens": 3})


def test_stop_text_holds_back_what_may_start_a_stop_sequence() -> None:
    stops = StopText(("END", "xy"))
    assert stops.feed("abc E") == "abc "
    assert stops.feed("N") == ""
    assert stops.feed("o x") == "ENo "
    assert stops.feed("yz") == "" and stops.stopped
    assert stops.flush() == ""
    open_ended = StopText(("END",))
    assert open_ended.feed("the EN") == "the "
    assert open_ended.flush() == "EN"


def test_errors_have_openais_shape() -> None:
    assert codec.error_object(404, "no such model") == {
        "error": {
            "message": "no such model",
            "type": "invalid_request_error",
            "param": None,
            "code": "model_not_found",
        }
    }
    assert codec.error_object(503, "busy")["error"]["type"] == "server_error"


# -- completions and chats over REST --------------------------------------------------------


def test_a_completion_and_its_usage(s: Stack) -> None:
    reply = post(s, "/v1/completions", {"model": "words", "prompt": "a b", "max_tokens": 3, "n": 2})
    answer = orjson.loads(reply.body)
    assert reply.status == 200
    assert [c["text"] for c in answer["choices"]] == [" a0 b0 a0", " a1 b1 a1"]
    assert answer["usage"] == {"prompt_tokens": 2, "completion_tokens": 6, "total_tokens": 8}


def test_several_prompts_are_written_together_and_numbered(s: Stack, words: Words) -> None:
    body = {"model": "words", "prompt": ["a", "b c"], "max_tokens": 2, "n": 2}
    answer = orjson.loads(post(s, "/openai/v1/completions", body).body)
    assert [(c["index"], c["text"]) for c in answer["choices"]] == [
        (0, " a0 a0"),
        (1, " a1 a1"),
        (2, " b0 c0"),
        (3, " b1 c1"),
    ]
    assert answer["usage"]["prompt_tokens"] == 3
    assert len(words.jobs) == 2


def test_a_stream_is_one_event_per_chunk_then_done(s: Stack) -> None:
    body = {"model": "words", "messages": [{"role": "user", "content": "a b"}], "max_tokens": 3}
    body.update(stream=True, stream_options={"include_usage": True})
    reply = post(s, "/v1/chat/completions", body)
    assert reply.status == 200 and reply.headers["content-type"] == "text/event-stream"
    got = events(reply.bodies)
    assert got[-1] == "[DONE]"
    deltas = [e["choices"][0]["delta"] for e in got[:-2]]
    assert deltas[0] == {"role": "assistant", "content": " a0"}
    assert "".join(d.get("content", "") for d in deltas) == " a0 b0 a0"
    assert got[-2]["choices"] == [] and got[-2]["usage"]["completion_tokens"] == 3
    assert all(e["object"] == "chat.completion.chunk" for e in got[:-1])


def test_a_client_that_leaves_a_stream_cancels_its_generation(s: Stack, words: Words) -> None:
    words.hold = True
    leave = asyncio.Event()
    sent: list[dict[str, Any]] = []

    async def main() -> None:
        body = {"model": "words", "prompt": "a b", "max_tokens": 50, "stream": True}
        request = asyncio.ensure_future(
            asgi(s.app(), "POST", "/v1/completions", orjson.dumps(body), leave=leave, sent=sent)
        )
        while len([m for m in sent if m.get("body")]) < 2:  # two events written
            await asyncio.sleep(0.001)
        leave.set()
        await asyncio.wait_for(request, WAIT_S)

    asyncio.run(main())
    assert words.stopped.wait(WAIT_S), "the model saw the cancellation"
    assert words.jobs[0].cancelled.is_set()
    assert s.repository.get("words").inflight == 0
    assert s.policy.inflight == 0


def test_a_stream_holds_its_admission_until_it_ends(words: Words) -> None:
    busy = stack(loaded(words), max_concurrent=1, protocols=(OPENAI,))
    words.hold = True
    leave = asyncio.Event()
    sent: list[dict[str, Any]] = []

    async def main() -> Any:
        body = orjson.dumps({"model": "words", "prompt": "a", "max_tokens": 9, "stream": True})
        first = asyncio.ensure_future(
            asgi(busy.app(), "POST", "/v1/completions", body, leave=leave, sent=sent)
        )
        while not any(m.get("body") for m in sent):
            await asyncio.sleep(0.001)
        second = await asgi(busy.app(), "POST", "/v1/completions", body)
        leave.set()
        await first
        return second

    second = asyncio.run(main())
    assert second.status == 503
    assert orjson.loads(second.body)["error"]["code"] == "server_busy"
    assert busy.policy.inflight == 0


def test_errors_before_the_first_event_keep_their_status(s: Stack) -> None:
    refused = post(s, "/v1/completions", {"model": "words", "prompt": "refuse this"})
    assert refused.status == 400
    assert "refused" in orjson.loads(refused.body)["error"]["message"]
    unknown = post(s, "/v1/completions", {"model": "nope", "prompt": "x", "stream": True})
    assert (
        unknown.status == 404 and orjson.loads(unknown.body)["error"]["code"] == "model_not_found"
    )
    chat = {"model": "arith", "messages": [{"role": "user", "content": "x"}]}
    not_generative = post(s, "/v1/chat/completions", chat)
    assert not_generative.status == 400
    assert "does not generate" in orjson.loads(not_generative.body)["error"]["message"]


def test_an_error_mid_stream_is_its_last_event(s: Stack) -> None:
    reply = post(s, "/v1/completions", {"model": "words", "prompt": "a boom", "stream": True})
    got = events(reply.bodies)
    assert got[0]["choices"][0]["text"] == " a0"
    assert got[-1]["error"]["type"] == "server_error" and "broke" in got[-1]["error"]["message"]
    assert "[DONE]" not in got


def test_embeddings_go_through_the_pipeline(s: Stack) -> None:
    body = {"model": "emb", "input": ["one two", "three"], "encoding_format": "float"}
    answer = orjson.loads(post(s, "/v1/embeddings", body).body)
    assert [d["embedding"] for d in answer["data"]] == [[7.0, 2.0], [5.0, 1.0]]
    assert answer["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    refused = post(s, "/v1/embeddings", {"model": "words", "input": "x"})
    assert refused.status == 400 and "does not embed" in refused.body.decode()


def test_v1_models_answer_kserve_and_openai(s: Stack) -> None:
    listing = orjson.loads(asyncio.run(asgi(s.app(), "GET", "/v1/models")).body)
    assert listing["models"] == ["words", "emb", "arith"]
    assert [m["id"] for m in listing["data"]] == listing["models"]
    one = orjson.loads(asyncio.run(asgi(s.app(), "GET", "/openai/v1/models/emb")).body)
    assert one["object"] == "model" and one["owned_by"] == "inproc"


def test_without_the_protocol_its_routes_are_unknown(words: Words) -> None:
    plain = stack(loaded(words))
    reply = asyncio.run(asgi(plain.app(), "POST", "/v1/completions", b"{}"))
    assert reply.status == 404
    assert "data" not in orjson.loads(asyncio.run(asgi(plain.app(), "GET", "/v1/models")).body)


# -- the gRPC stream --------------------------------------------------------------------------


def stream_request(model: str, prompt: str, **parameters: Any) -> Any:
    request = pb.ModelInferRequest(model_name=model, id=f"{model}-1")
    tensor = request.inputs.add(name="text", datatype="BYTES", shape=[1])
    tensor.contents.bytes_contents.append(prompt.encode())
    for key, value in parameters.items():
        request.parameters[key].int64_param = value
    return request


def test_the_grpc_stream_answers_a_generation_chunk_by_chunk(s: Stack) -> None:
    async def main() -> list[Any]:
        async with grpc_channel(s) as channel:
            call = channel.stream_stream(
                "/inference.GRPCInferenceService/ModelStreamInfer",
                request_serializer=pb.ModelInferRequest.SerializeToString,
                response_deserializer=pb.ModelStreamInferResponse.FromString,
            )
            x = np.ones((1, 2), dtype=np.float64)
            arith = pb.ModelInferRequest(model_name="arith", id="arith-1")
            arith.inputs.add(name="x", datatype="FP64", shape=[1, 2])
            arith.raw_input_contents.append(x.tobytes())
            requests = [stream_request("words", "a b", max_tokens=3), arith]
            return [r async for r in call(iter(requests))]

    answers = asyncio.run(main())
    assert not any(a.error_message for a in answers)
    by_request: dict[str, list[Any]] = {}
    for answer in answers:
        by_request.setdefault(answer.infer_response.id, []).append(answer.infer_response)
    words, (arith,) = by_request["words-1"], by_request["arith-1"]
    assert arith.parameters["triton_final_response"].bool_param
    assert [w.parameters["triton_final_response"].bool_param for w in words] == [
        False,
        False,
        True,
    ]
    texts = [w.raw_output_contents[0][4:].decode() for w in words]
    assert texts == [" a0", " b0", " a0"]
    assert words[-1].parameters["finish_reason"].string_param == "length"
    assert words[-1].parameters["prompt_tokens"].int64_param == 2

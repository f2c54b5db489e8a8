"""OpenAI's API (completions, chat completions, embeddings, models): bodies in and out.

Requests are checked the way OpenAI's API checks them (a misspelt or
unknown field is a 400 naming it, as ``Unrecognized request argument``), and
what this server does not do (tools, penalties, logit biases, echo, images)
is refused by name rather than ignored. The sampling options become
:class:`~modelserver.model.generation.SamplingParams`; vLLM's extensions
``min_tokens`` and ``top_k`` are accepted too (the ``openai`` client sends
them with ``extra_body``).

Answers are built from the model's :class:`~modelserver.model.generation.Chunk`
s: :class:`TextAnswer` collects them into one completion, or writes each as
a Server-Sent Event (``data: {...}``) of a streamed one, which ends with
``data: [DONE]``. Errors are OpenAI's ``{"error": {"message", "type",
"param", "code"}}``, in a body or, once a stream has begun, as its last
event.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from ..errors import InvalidInput
from ..model.generation import (
    MAX_LOGPROBS,
    Chunk,
    SamplingParams,
    TokenLogprob,
    sampling_params,
)
from .v2_rest import loads_object

SSE = b"text/event-stream"
DONE = b"data: [DONE]\n\n"

#: Fields each endpoint reads (besides the sampling options) and those it ignores.
_SAMPLING = frozenset(
    {"max_tokens", "min_tokens", "temperature", "top_p", "top_k", "seed", "stop", "n"}
)
_IGNORED = frozenset({"user", "metadata", "store", "service_tier", "parallel_tool_calls"})
_COMPLETION = _SAMPLING | {"model", "prompt", "stream", "stream_options", "logprobs", "echo"}
_COMPLETION |= {"suffix", "best_of", "logit_bias", "presence_penalty", "frequency_penalty"}
_CHAT = _SAMPLING | {"model", "messages", "stream", "stream_options", "logprobs", "top_logprobs"}
_CHAT |= {"max_completion_tokens", "logit_bias", "presence_penalty", "frequency_penalty"}
_CHAT |= {"tools", "tool_choice", "functions", "function_call", "response_format"}
_EMBEDDING = frozenset({"model", "input", "encoding_format", "dimensions"})
ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})

#: What an HTTP status is called in OpenAI's errors (``type``, ``code``).
_ERROR_KINDS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "model_not_found"),
    413: ("invalid_request_error", "request_too_large"),
    415: ("invalid_request_error", "unsupported_media_type"),
    429: ("requests", "rate_limit_exceeded"),
    499: ("invalid_request_error", "client_closed_request"),
    501: ("invalid_request_error", "not_implemented"),
    503: ("server_error", "server_busy"),
    504: ("server_error", "timeout"),
}


def error_object(status: int, message: str) -> dict[str, Any]:
    """OpenAI's error object for an HTTP status."""
    kind, code = _ERROR_KINDS.get(
        status, ("invalid_request_error", None) if status < 500 else ("server_error", None)
    )
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def encode_error(status: int, message: str) -> bytes:
    return orjson.dumps(error_object(status, message))


def sse(obj: Any) -> bytes:
    """One Server-Sent Event carrying ``obj`` as JSON."""
    return b"data: " + orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n\n"


# -- requests ------------------------------------------------------------------------------


@dataclass(slots=True)
class TextRequest:
    """A completions or chat completions request, checked."""

    model: str
    chat: bool
    params: SamplingParams
    #: Completions: one or more prompts, text or token ids.
    prompts: list[str | list[int]] = field(default_factory=list)
    #: Chat: the conversation, each message's content as text.
    messages: list[dict[str, Any]] = field(default_factory=list)
    stream: bool = False
    #: ``stream_options.include_usage``: a last event with the usage counts.
    include_usage: bool = False


@dataclass(slots=True)
class EmbeddingRequest:
    model: str
    texts: list[str]
    base64: bool


def _object(body: bytes, what: str, known: frozenset[str]) -> dict[str, Any]:
    obj = loads_object(body, what)
    unknown = [k for k in obj if k not in known and k not in _IGNORED]
    if unknown:
        raise InvalidInput(f"Unrecognized request argument supplied: {', '.join(unknown)}")
    model = obj.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidInput("'model' is required: the name of a served model (GET /v1/models)")
    return obj


def _refuse(obj: dict[str, Any], *names: str) -> None:
    """Options this server does not implement, refused unless absent or neutral."""
    for name in names:
        value = obj.get(name)
        if value in (None, 0, 0.0, False, {}, [], "auto", "none") or (
            name == "response_format" and value == {"type": "text"}
        ):
            continue
        raise InvalidInput(f"'{name}' is not supported by this server")


def _stream(obj: dict[str, Any]) -> tuple[bool, bool]:
    stream = obj.get("stream") or False
    if not isinstance(stream, bool):
        raise InvalidInput("'stream' must be true or false")
    options = obj.get("stream_options")
    if options is None:
        return stream, False
    if not stream:
        raise InvalidInput("'stream_options' is only allowed with 'stream': true")
    if not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool):
        raise InvalidInput("'stream_options' must be an object like {\"include_usage\": true}")
    return stream, bool(options.get("include_usage", False))


def _prompts(value: Any) -> list[str | list[int]]:
    def tokens(item: Any) -> bool:
        return isinstance(item, list) and bool(item) and all(_is_int(t) for t in item)

    if isinstance(value, str):
        return [value]
    if tokens(value):
        return [list(value)]
    if isinstance(value, list) and value and all(isinstance(p, str) or tokens(p) for p in value):
        return list(value)
    raise InvalidInput(
        "'prompt' must be a string, a list of strings, a list of token ids, or a list of such lists"
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def completion_request(body: bytes) -> TextRequest:
    """A ``POST /v1/completions`` body."""
    obj = _object(body, "completions request", _COMPLETION)
    _refuse(obj, "suffix", "logit_bias", "presence_penalty", "frequency_penalty", "echo")
    if "prompt" not in obj:
        raise InvalidInput("'prompt' is required")
    logprobs = obj.get("logprobs")
    if logprobs is not None and not (_is_int(logprobs) and 0 <= logprobs <= MAX_LOGPROBS):
        raise InvalidInput(f"'logprobs' must be an integer between 0 and {MAX_LOGPROBS}")
    # OpenAI's completions write 16 tokens unless told otherwise.
    limit = obj.get("max_tokens")
    params = sampling_params({**obj, "max_tokens": 16 if limit is None else limit}, logprobs)
    best_of = obj.get("best_of")
    if best_of is not None and best_of != params.n:
        raise InvalidInput("'best_of' is not supported (other than equal to 'n')")
    stream, usage = _stream(obj)
    return TextRequest(
        obj["model"], False, params, _prompts(obj["prompt"]), stream=stream, include_usage=usage
    )


def chat_request(body: bytes) -> TextRequest:
    """A ``POST /v1/chat/completions`` body; message contents become plain text."""
    obj = _object(body, "chat completions request", _CHAT)
    _refuse(obj, "logit_bias", "presence_penalty", "frequency_penalty")
    _refuse(obj, "tools", "functions", "response_format")
    if obj.get("tool_choice") not in (None, "none", "auto"):
        raise InvalidInput("'tool_choice' is not supported by this server")
    wants = obj.get("logprobs") or False
    top = obj.get("top_logprobs")
    if not isinstance(wants, bool):
        raise InvalidInput("'logprobs' must be true or false")
    if top is not None:
        if not (_is_int(top) and 0 <= top <= MAX_LOGPROBS):
            raise InvalidInput(f"'top_logprobs' must be an integer between 0 and {MAX_LOGPROBS}")
        if not wants:
            raise InvalidInput("'top_logprobs' needs 'logprobs': true")
    limit = "max_completion_tokens" if obj.get("max_completion_tokens") is not None else None
    params = sampling_params(obj, (top or 0) if wants else None, limit or "max_tokens")
    stream, usage = _stream(obj)
    return TextRequest(
        obj["model"],
        True,
        params,
        messages=_messages(obj.get("messages")),
        stream=stream,
        include_usage=usage,
    )


def _messages(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise InvalidInput("'messages' must be a non-empty list of messages")
    messages = []
    for i, message in enumerate(value):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise InvalidInput(
                f"messages[{i}] must be an object with a 'role' ({', '.join(sorted(ROLES))})"
            )
        if message.get("tool_calls"):
            raise InvalidInput(f"messages[{i}]: tool calls are not supported by this server")
        messages.append({"role": message["role"], "content": _content(message.get("content"), i)})
    return messages


def _content(content: Any, i: int) -> str:
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise InvalidInput(
                    f"messages[{i}]: content of type {kind!r} is not supported; send text"
                )
            parts.append(str(part.get("text", "")))
        return "".join(parts)
    raise InvalidInput(f"messages[{i}].content must be a string or a list of text parts")


def embedding_request(body: bytes) -> EmbeddingRequest:
    """A ``POST /v1/embeddings`` body (text inputs; token ids are refused)."""
    obj = _object(body, "embeddings request", _EMBEDDING)
    texts = obj.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise InvalidInput("'input' must be a string or a non-empty list of strings")
    if any(not t for t in texts):
        raise InvalidInput("'input' must not contain empty strings")
    encoding = obj.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise InvalidInput("'encoding_format' must be 'float' or 'base64'")
    if obj.get("dimensions") is not None:
        raise InvalidInput("'dimensions' is not supported: the model's vectors are what it is")
    return EmbeddingRequest(obj["model"], texts, encoding == "base64")


# -- answers ---------------------------------------------------------------------------------


def model_entry(name: str, created: int, owner: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": owner}


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def embeddings_body(
    model: str, vectors: np.ndarray, tokens: Sequence[int], as_base64: bool
) -> bytes:
    data = []
    for i, vector in enumerate(np.asarray(vectors, dtype=np.float32)):
        value: Any = base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
        if not as_base64:
            value = vector
        data.append({"object": "embedding", "index": i, "embedding": value})
    total = int(sum(tokens))
    body = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": total, "total_tokens": total},
    }
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


@dataclass(slots=True)
class _Choice:
    text: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    #: Characters written so far (completions' ``text_offset``).
    length: int = 0


class TextAnswer:
    """One completions or chat completions answer, whole or as a stream of events."""

    def __init__(self, request: TextRequest) -> None:
        self.request = request
        prefix = "chatcmpl" if request.chat else "cmpl"
        self.id = f"{prefix}-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.object = "chat.completion" if request.chat else "text_completion"
        self.choices: dict[int, _Choice] = {}
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def _head(self, streamed: bool) -> dict[str, Any]:
        kind = self.object + (".chunk" if streamed and self.request.chat else "")
        return {"id": self.id, "object": kind, "created": self.created, "model": self.request.model}

    # -- whole -----------------------------------------------------------------------

    def add(self, chunk: Chunk) -> None:
        """Collect a chunk into its choice."""
        choice = self.choices.setdefault(chunk.index, _Choice())
        choice.text.append(chunk.text)
        choice.logprobs.extend(chunk.logprobs)
        choice.finish_reason = chunk.finish_reason or choice.finish_reason
        self.completion_tokens += chunk.tokens

    def body(self) -> bytes:
        """The whole answer, every choice in index order, with the usage counts."""
        choices = []
        for index in sorted(self.choices):
            choice = self.choices[index]
            text = "".join(choice.text)
            entry: dict[str, Any] = {"index": index}
            if self.request.chat:
                entry["message"] = {"role": "assistant", "content": text}
            else:
                entry["text"] = text
            entry["logprobs"] = self._logprobs(choice.logprobs, 0)
            entry["finish_reason"] = choice.finish_reason
            choices.append(entry)
        answer = self._head(False)
        answer["choices"] = choices
        answer["usage"] = usage(self.prompt_tokens, self.completion_tokens)
        return orjson.dumps(answer)

    # -- streamed --------------------------------------------------------------------

    def event(self, chunk: Chunk) -> bytes:
        """One chunk as an event (a chat's first one per choice also names the role)."""
        choice = self.choices.get(chunk.index)
        first = choice is None
        if choice is None:
            choice = self.choices[chunk.index] = _Choice()
        self.completion_tokens += chunk.tokens
        entry: dict[str, Any] = {"index": chunk.index}
        if self.request.chat:
            delta: dict[str, Any] = {"role": "assistant"} if first else {}
            if chunk.text or first:
                delta["content"] = chunk.text
            entry["delta"] = delta
        else:
            entry["text"] = chunk.text
        entry["logprobs"] = self._logprobs(list(chunk.logprobs), choice.length)
        entry["finish_reason"] = chunk.finish_reason
        choice.length += len(chunk.text)
        out = self._head(True)
        out["choices"] = [entry]
        if self.request.include_usage:
            out["usage"] = None
        return sse(out)

    def usage_event(self) -> bytes:
        """``stream_options.include_usage``: the counts, in an event with no choices."""
        out = self._head(True)
        out["choices"] = []
        out["usage"] = usage(self.prompt_tokens, self.completion_tokens)
        return sse(out)

    # -- log probabilities -------------------------------------------------------------

    def _logprobs(self, tokens: list[TokenLogprob], offset: int) -> dict[str, Any] | None:
        if self.request.params.logprobs is None:
            return None
        if self.request.chat:
            return {
                "content": [
                    {
                        **_token(t.token, t.logprob),
                        "top_logprobs": [_token(tok, lp) for tok, lp in t.top],
                    }
                    for t in tokens
                ],
                "refusal": None,
            }
        offsets = []
        for t in tokens:
            offsets.append(offset)
            offset += len(t.token)
        return {
            "tokens": [t.token for t in tokens],
            "token_logprobs": [t.logprob for t in tokens],
            "top_logprobs": [dict(t.top) for t in tokens],
            "text_offset": offsets,
        }


def _token(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}

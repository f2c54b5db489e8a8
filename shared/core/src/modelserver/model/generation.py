"""Text generation: what a model that writes text offers, whichever protocol asks.

The OpenAI protocol (completions and chat completions, streamed or not) and
the v2 gRPC stream ask a generative model for text through one interface,
so a runtime implements generation once and every protocol serves it:

* :class:`TextGenerator` is the mixin a ``Model`` adds. Its ``stream`` gives
  the :class:`Chunk` s of one :class:`Generation` as they are written. The
  default ``stream`` runs the blocking ``generate`` in a thread of its own
  (one per generation, so several progress together and the event loop never
  waits on a decoding step) and hands each chunk to the loop as ``emit``
  receives it; an engine with its own event loop integration overrides
  ``stream`` instead.
* A generation that nobody reads any more (the client left, the request timed
  out, the server is stopping) has its ``cancelled`` event set; ``generate``
  checks it between tokens and stops.
* :func:`sampling_params` reads the sampling options of a request's
  parameters (v2) with the OpenAI names and rules; :class:`StopText` cuts
  generated text at stop sequences for engines that do not.

Embeddings are not generation: a model answers OpenAI's embeddings endpoint
through the ordinary pipeline (batched like any request) when its outputs
table has :data:`EMBEDDING` and :data:`TOKEN_COUNT` for one text input.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import math
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import InvalidInput

#: The output holding one vector per text (OpenAI's embeddings read it).
EMBEDDING = "embedding"
#: The output holding how many tokens each text was (OpenAI's usage counts).
TOKEN_COUNT = "token_count"
#: The most sequences one request may ask for (``n``), and the most logprobs alternatives.
MAX_N = 16
MAX_LOGPROBS = 20
#: OpenAI allows four stop sequences.
MAX_STOPS = 4

#: How often a cancelled generation's thread is checked for having stopped.
THREAD_POLL_S = 0.005

#: Why a sequence ended: a stop sequence or the end-of-sequence token, or its token limit.
STOP, LENGTH = "stop", "length"


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How to write: OpenAI's sampling options, checked (see :func:`sampling_params`)."""

    #: Most tokens per sequence; None: as many as the model's context leaves.
    max_tokens: int | None = None
    #: Fewest tokens per sequence (the end-of-sequence token is held back until then).
    min_tokens: int = 0
    #: 0 is greedy (always the likeliest token).
    temperature: float = 1.0
    top_p: float = 1.0
    #: 0: every token may be drawn.
    top_k: int = 0
    #: Draws are reproducible for one seed (each generation has its own generator).
    seed: int | None = None
    stop: tuple[str, ...] = ()
    #: Sequences written for the prompt.
    n: int = 1
    #: None: no log probabilities; k: each token's and its k likeliest alternatives'.
    logprobs: int | None = None


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One written token's log probability, and its likeliest alternatives'."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(slots=True)
class Chunk:
    """A piece of one sequence: its new text, the tokens that wrote it, and how it ended."""

    #: Which of the ``n`` sequences.
    index: int = 0
    text: str = ""
    #: Tokens written since the previous chunk of this sequence.
    tokens: int = 0
    logprobs: tuple[TokenLogprob, ...] = ()
    #: :data:`STOP` or :data:`LENGTH` on the sequence's last chunk, else None.
    finish_reason: str | None = None


@dataclass(slots=True)
class Generation:
    """One prompt to write for, as the model sees it."""

    #: Text, or token ids (OpenAI's completions take either).
    prompt: str | list[int]
    params: SamplingParams = field(default_factory=SamplingParams)
    #: The request's id, for logs.
    id: str = ""
    #: The prompt came from the chat template (which writes the special tokens itself).
    templated: bool = False
    #: Set by the core when nobody will read the rest; ``generate`` stops at the next token.
    cancelled: threading.Event = field(default_factory=threading.Event)
    #: Set by the model once it has encoded the prompt (for usage counts).
    prompt_tokens: int = 0


Emit = Callable[[Chunk], None]


class _Done:
    """The end of a generation's chunks in its queue."""


class TextGenerator:
    """Mixin of a ``Model`` that writes text (OpenAI completions and chats, gRPC streams)."""

    #: The output that holds generated text in v2 answers (and each gRPC stream response).
    text_output: ClassVar[str] = "text_output"

    @property
    def generates(self) -> bool:
        """Whether this model writes text (a runtime serving several tasks says per model)."""
        return True

    def chat_prompt(self, messages: list[dict[str, Any]]) -> str:
        """The prompt for a chat (OpenAI's ``messages``): the model's chat template applied."""
        raise InvalidInput("This model has no chat template; use completions")

    @abc.abstractmethod
    def generate(self, job: Generation, emit: Emit) -> None:
        """Write ``job`` (blocking, in a thread of its own), giving each piece to ``emit``.

        Set ``job.prompt_tokens`` before the first chunk; end every sequence
        with a chunk that has its ``finish_reason``; stop early once
        ``job.cancelled`` is set. Raise ``InvalidInput`` (or one of the model's
        ``input_errors``) for a prompt or parameters it cannot take, before
        the first chunk if at all possible.
        """
        raise NotImplementedError

    async def stream(self, job: Generation) -> AsyncIterator[Chunk]:
        """The chunks of ``job`` as they are written (``generate`` in its own thread).

        Closing the iterator early cancels the generation, and waits (without
        blocking the loop) for its thread to stop, so what counts generations
        in flight counts it until it has really ended.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Chunk | _Done | BaseException] = asyncio.Queue()

        def hand_over(item: Chunk | _Done | BaseException) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def run() -> None:
            try:
                self.generate(job, hand_over)
            except BaseException as exc:
                hand_over(exc)
            else:
                hand_over(_Done())

        thread = threading.Thread(target=run, name=f"generate-{job.id}", daemon=True)
        thread.start()
        try:
            while True:
                item = await queue.get()
                if isinstance(item, _Done):
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            job.cancelled.set()
            while thread.is_alive():
                await asyncio.sleep(THREAD_POLL_S)


def generates(model: object) -> bool:
    """Whether ``model`` writes text."""
    return isinstance(model, TextGenerator) and model.generates


# -- sampling options --------------------------------------------------------------------


def _number(params: Mapping[str, Any], name: str, low: float, high: float) -> float | None:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise InvalidInput(f"'{name}' must be a number, got {value!r}")
    if not low <= value <= high:
        raise InvalidInput(f"'{name}' must be between {low:g} and {high:g}, got {value!r}")
    return float(value)


def _integer(params: Mapping[str, Any], name: str, low: int, high: int | None = None) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"'{name}' must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InvalidInput(f"'{name}' must be {bound}, got {value}")
    return value


def _stops(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise InvalidInput("'stop' must be a string or a list of strings")
    if len(stops) > MAX_STOPS:
        raise InvalidInput(f"'stop' takes at most {MAX_STOPS} sequences, got {len(stops)}")
    if any(not s for s in stops):
        raise InvalidInput("'stop' sequences must not be empty")
    return tuple(stops)


def sampling_params(
    params: Mapping[str, Any], logprobs: int | None = None, max_tokens: str = "max_tokens"
) -> SamplingParams:
    """The sampling options among ``params`` (OpenAI's names), each checked; 400 otherwise.

    ``logprobs`` is given by the caller, since OpenAI's two endpoints spell
    it differently; ``max_tokens`` names the field that holds the limit.
    """
    max_new = _integer(params, max_tokens, 1)
    min_new = _integer(params, "min_tokens", 0) or 0
    if max_new is not None and min_new > max_new:
        raise InvalidInput(f"'min_tokens' ({min_new}) must not exceed '{max_tokens}' ({max_new})")
    temperature = _number(params, "temperature", 0.0, 2.0)
    top_p = _number(params, "top_p", 0.0, 1.0)
    if top_p == 0.0:
        raise InvalidInput("'top_p' must be greater than 0")
    seed = params.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise InvalidInput(f"'seed' must be an integer, got {seed!r}")
    return SamplingParams(
        max_tokens=max_new,
        min_tokens=min_new,
        temperature=1.0 if temperature is None else temperature,
        top_p=1.0 if top_p is None else top_p,
        top_k=_integer(params, "top_k", 0) or 0,
        seed=seed,
        stop=_stops(params.get("stop")),
        n=_integer(params, "n", 1, MAX_N) or 1,
        logprobs=logprobs,
    )


# -- stop sequences ------------------------------------------------------------------------


class StopText:
    """Cuts one sequence's text at its first stop sequence, holding back what may start one.

    Text that could be the beginning of a stop sequence is not handed out
    until the next piece shows whether it is (OpenAI's answers never contain
    the stop sequence, streamed or not).
    """

    __slots__ = ("_held", "_stops", "stopped")

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = stops
        self._held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """The text that can be handed out now; ``stopped`` turns true at a stop sequence."""
        if self.stopped:
            return ""
        if not self._stops:
            return text
        held = self._held + text
        cut = min((i for i in (held.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self._held = ""
            self.stopped = True
            return held[:cut]
        keep = 0
        for size in range(min(len(held), max(map(len, self._stops)) - 1), 0, -1):
            tail = held[-size:]
            if any(stop.startswith(tail) for stop in self._stops):
                keep = size
                break
        self._held = held[len(held) - keep :]
        return held[: len(held) - keep]

    def flush(self) -> str:
        """What was held back, once the sequence has ended without a stop sequence."""
        held, self._held = self._held, ""
        return "" if self.stopped else held

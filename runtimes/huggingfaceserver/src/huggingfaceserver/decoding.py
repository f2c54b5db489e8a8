"""The pieces transformers' ``generate`` is driven with: a sampler, a streamer, a stop check.

``generate`` runs greedy decoding, and the :class:`Sampler` (the last logits
processor) chooses each token itself: it applies temperature, top-k and
top-p, draws from its own ``torch.Generator`` (seeded from the request, so a
seed gives the same text whatever else the server is doing; transformers'
own sampling draws from torch's global generator, which every concurrent
generation would share), records the log probabilities asked for, and leaves
only the chosen token possible. transformers' own processors (the
end-of-sequence token held back until ``min_new_tokens``) run before it.

The :class:`ChunkStreamer` receives each step's tokens (``put``), turns them
into text incrementally, cuts each sequence at its stop sequences and hands
the model's :class:`~modelserver.Chunk` s to the core as they come. The
:class:`Finished` criterion ends sequences that hit a stop sequence, and all
of them once the generation is cancelled (the client left).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from modelserver import Chunk, SamplingParams, StopText, TokenLogprob
from modelserver.model.generation import LENGTH, STOP
from transformers import LogitsProcessor, StoppingCriteria
from transformers.generation.streamers import BaseStreamer

#: Token ids -> text (the tokenizer's decode, without special tokens).
Decode = Callable[[list[int]], str]

#: A step's record for one sequence: the chosen token's log probability, and alternatives.
Record = tuple[float, list[tuple[int, float]]]


class Sampler(LogitsProcessor):
    """Chooses each sequence's next token with the request's options and its own generator."""

    def __init__(self, params: SamplingParams, device: torch.device) -> None:
        self.temperature = params.temperature
        self.top_p = params.top_p
        self.top_k = params.top_k
        self.logprobs = params.logprobs
        self.generator = torch.Generator(device=device)
        seed = params.seed if params.seed is not None else secrets.randbits(63)
        self.generator.manual_seed(seed % (1 << 64))
        #: The last step's records, one per sequence (when log probabilities are asked for).
        self.last: list[Record] = []

    def _warped(self, scores: torch.Tensor) -> torch.Tensor:
        scores = scores / self.temperature
        if self.top_k and self.top_k < scores.shape[-1]:
            kth = torch.topk(scores, self.top_k, dim=-1).values[..., -1:]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if self.top_p < 1.0:
            ordered, order = torch.sort(scores, descending=True, dim=-1)
            probs = ordered.softmax(dim=-1)
            # Drop a token once the likelier ones already cover top_p (the first always stays).
            drop = probs.cumsum(dim=-1) - probs > self.top_p
            scores = scores.scatter(-1, order, ordered.masked_fill(drop, float("-inf")))
        return scores

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.temperature == 0.0:
            dist = scores.float()
            chosen = dist.argmax(dim=-1)
        else:
            dist = self._warped(scores.float())
            draws = torch.multinomial(dist.softmax(dim=-1), 1, generator=self.generator)
            chosen = draws.squeeze(1)
        if self.logprobs is not None:
            self.last = _records(dist.log_softmax(dim=-1), chosen, self.logprobs)
        only = torch.full_like(scores, float("-inf"))
        only.scatter_(1, chosen[:, None], 0.0)
        return only  # type: ignore[return-value]


def _records(logprobs: torch.Tensor, chosen: torch.Tensor, k: int) -> list[Record]:
    picked = logprobs.gather(1, chosen[:, None]).squeeze(1).tolist()
    if k:
        values, ids = torch.topk(logprobs, min(k, logprobs.shape[-1]), dim=-1)
        alternatives = [
            [(i, v) for i, v in zip(row_ids, row_values, strict=True) if v > float("-inf")]
            for row_ids, row_values in zip(ids.tolist(), values.tolist(), strict=True)
        ]
    else:
        alternatives = [[] for _ in picked]
    return list(zip(picked, alternatives, strict=True))


class IncrementalText:
    """One sequence's tokens as text, a piece per token once it decodes cleanly.

    Decoding a token alone loses what depends on its neighbours (a word's
    leading space, a character split over several byte tokens), so the text
    of a short window before the new tokens is decoded with and without
    them, and the difference is the new text, once it is not a partial
    character.
    """

    __slots__ = ("_decode", "_ids", "_prefix", "_read")

    def __init__(self, decode: Decode) -> None:
        self._decode = decode
        self._ids: list[int] = []
        self._prefix = 0
        self._read = 0

    def add(self, token: int) -> str:
        self._ids.append(token)
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        if len(after) <= len(before) or after.endswith("\ufffd"):
            return ""
        self._prefix, self._read = self._read, len(self._ids)
        return after[len(before) :]

    def rest(self) -> str:
        """What the last tokens decode to, even a partial character, at the end."""
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        self._prefix = self._read = len(self._ids)
        return after[len(before) :] if len(after) > len(before) else ""


@dataclass(slots=True)
class _Sequence:
    text: IncrementalText
    stops: StopText
    done: bool = False
    #: Tokens and log probabilities not yet handed out with any text.
    tokens: int = 0
    logprobs: list[TokenLogprob] = field(default_factory=list)


class ChunkStreamer(BaseStreamer):  # type: ignore[misc]
    """Each step's tokens, as the chunks of each sequence (``emit``), from generate's thread."""

    def __init__(
        self,
        n: int,
        params: SamplingParams,
        decode: Decode,
        token_text: Callable[[int], str],
        end_ids: set[int],
        sampler: Sampler,
        emit: Callable[[Chunk], None],
    ) -> None:
        self.sequences = [
            _Sequence(IncrementalText(decode), StopText(params.stop)) for _ in range(n)
        ]
        self.token_text = token_text
        self.end_ids = end_ids
        self.sampler = sampler
        self.emit = emit
        self.wants_logprobs = params.logprobs is not None
        #: Tokens written, every sequence together.
        self.written = 0
        self._prompt = True

    def put(self, value: torch.Tensor) -> None:
        if self._prompt:  # the first put is the prompt (or the decoder's start token)
            self._prompt = False
            return
        records = self.sampler.last
        for index, token in enumerate(value.reshape(-1).tolist()):
            sequence = self.sequences[index]
            if sequence.done:
                continue
            sequence.tokens += 1
            self.written += 1
            if self.wants_logprobs and index < len(records):
                sequence.logprobs.append(self._logprob(token, records[index]))
            if token in self.end_ids:
                text = sequence.stops.feed(sequence.text.rest()) + sequence.stops.flush()
                self._finish(index, sequence, text, STOP)
                continue
            text = sequence.stops.feed(sequence.text.add(token))
            if sequence.stops.stopped:
                self._finish(index, sequence, text, STOP)
            elif text:
                self._hand_out(index, sequence, text, None)

    def end(self) -> None:
        """The generation ended: sequences still open reached their token limit."""
        for index, sequence in enumerate(self.sequences):
            if not sequence.done:
                text = sequence.stops.feed(sequence.text.rest())
                reason = STOP if sequence.stops.stopped else LENGTH
                self._finish(index, sequence, text + sequence.stops.flush(), reason)

    def _finish(self, index: int, sequence: _Sequence, text: str, reason: str) -> None:
        sequence.done = True
        self._hand_out(index, sequence, text, reason)

    def _hand_out(self, index: int, sequence: _Sequence, text: str, reason: str | None) -> None:
        chunk = Chunk(index, text, sequence.tokens, tuple(sequence.logprobs), reason)
        sequence.tokens = 0
        sequence.logprobs = []
        self.emit(chunk)

    def _logprob(self, token: int, record: Record) -> TokenLogprob:
        logprob, alternatives = record
        top = tuple((self.token_text(i), lp) for i, lp in alternatives)
        return TokenLogprob(self.token_text(token), logprob, top)


class Finished(StoppingCriteria):
    """Ends the sequences the streamer has finished, and every one once cancelled."""

    def __init__(self, streamer: ChunkStreamer, cancelled: threading.Event) -> None:
        self.streamer = streamer
        self.cancelled = cancelled

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        rows = input_ids.shape[0]
        if self.cancelled.is_set():
            return torch.ones(rows, dtype=torch.bool, device=input_ids.device)  # type: ignore[return-value]
        done = [s.done for s in self.streamer.sequences]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)  # type: ignore[return-value]

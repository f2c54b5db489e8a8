"""One generation with transformers: the prompt checked, ``generate`` driven, chunks emitted.

Runs in the thread the core gives each generation (``TextGenerator.stream``)
or in the predict pool (a v2 request). The prompt is tokenized (a chat
template's output without adding special tokens again: the template writes
them), checked against the model's context, and written as ``n`` sequences
of one batch (the prompt repeated), decoded by ``decoding.py``'s sampler,
streamer and stop check. Every sequence ends with a chunk that says why:
``stop`` (a stop sequence or the end-of-sequence token) or ``length``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from modelserver import Chunk, Generation, InvalidInput
from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

from .decoding import ChunkStreamer, Finished, Sampler

if TYPE_CHECKING:
    from .model import HuggingFaceModel

logger = logging.getLogger(__name__)


def write(model: HuggingFaceModel, job: Generation, emit: Callable[[Chunk], None]) -> None:
    """Write ``job`` with ``model``, handing each chunk to ``emit`` as it is decoded."""
    params = job.params
    prompt = _prompt_ids(model, job)
    job.prompt_tokens = len(prompt)
    encoder_decoder = bool(model.network.config.is_encoder_decoder)
    room = model.max_length - (0 if encoder_decoder else len(prompt))
    if room < 1 or (params.max_tokens is not None and params.max_tokens > room):
        asked = params.max_tokens if params.max_tokens is not None else "any"
        raise InvalidInput(
            f"This model's maximum context length is {model.max_length} tokens; the prompt has "
            f"{len(prompt)} and {asked} more were asked for"
        )
    max_new = params.max_tokens if params.max_tokens is not None else room
    config = _config(model, max_new, min(params.min_tokens, max_new))
    sampler = Sampler(params, model.device)
    end_ids = _ids(config.eos_token_id)
    streamer = ChunkStreamer(
        params.n, params, model.decode, model.token_text, end_ids, sampler, emit
    )
    ids = torch.tensor([prompt] * params.n, dtype=torch.long, device=model.device)
    with torch.inference_mode():
        model.network.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            generation_config=config,
            logits_processor=LogitsProcessorList([sampler]),
            stopping_criteria=StoppingCriteriaList([Finished(streamer, job.cancelled)]),
            streamer=streamer,
        )
    if job.cancelled.is_set():
        logger.info(
            "generation %s stopped after %d tokens: nobody reads it any more",
            job.id or "-",
            streamer.written,
        )


def _prompt_ids(model: HuggingFaceModel, job: Generation) -> list[int]:
    if isinstance(job.prompt, list):
        vocabulary = len(model.tokenizer)
        bad = [t for t in job.prompt if not 0 <= t < vocabulary]
        if bad:
            raise InvalidInput(
                f"Token id {bad[0]} is not in this model's vocabulary (0 to {vocabulary - 1})"
            )
        return list(job.prompt)
    special = not job.templated and not model.settings.disable_special_tokens
    with model._lock:
        ids = model.tokenizer(job.prompt, add_special_tokens=special)["input_ids"]
    if not ids:
        raise InvalidInput("The prompt is empty")
    return list(ids)


def _config(model: HuggingFaceModel, max_new: int, min_new: int) -> GenerationConfig:
    """The model's generation config, decoding greedily over the sampler's single choice."""
    config = GenerationConfig.from_dict(model.network.generation_config.to_dict())
    pad = config.pad_token_id
    if pad is None:
        pad = model.tokenizer.pad_token_id
    if pad is None:
        pad = next(iter(_ids(config.eos_token_id)), 0)
    config.update(
        do_sample=False,
        num_beams=1,
        num_return_sequences=1,
        temperature=None,
        top_p=None,
        top_k=None,
        max_length=None,
        max_new_tokens=max_new,
        min_new_tokens=min_new or None,
        pad_token_id=pad,
    )
    return config


def _ids(value: Any) -> set[int]:
    if value is None:
        return set()
    if isinstance(value, int):
        return {value}
    return {int(v) for v in value}

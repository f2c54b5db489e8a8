"""Hugging Face transformers models: text in, the task's answer out, over every protocol.

A model directory as ``save_pretrained`` writes it (``config.json``, the
weights, the tokenizer's files) is loaded offline with the ``Auto`` class of
its task (``tasks.py``). Every task takes one BYTES input, ``text``, one
text per row ([N] or [N, 1]), and answers named, typed outputs:

=======================  =====================================================
sequence_classification  ``label`` (BYTES), ``probabilities`` and ``logits``
                         (FP32 [N, labels]; probabilities a default with
                         ``--return_probabilities``)
token_classification     ``entities`` (BYTES: each text's entities as JSON,
                         ``entity``, ``score``, ``index``, ``word``, ``start``,
                         ``end``; characters offsets into the text; "O" left out)
fill_mask                ``sequence`` (BYTES: the text with each mask filled),
                         ``predictions`` (BYTES: JSON, per mask the five
                         likeliest tokens with their scores)
text_embedding           ``embedding`` (FP32 [N, hidden]; pooled, optionally
                         normalised), ``token_count`` (INT64, not a default)
text_generation,         ``generated_text`` (BYTES); sampling options are the
text2text_generation     request's parameters (``max_tokens``, ``temperature``,
                         ``seed``, ``stop``, ... as OpenAI names them)
=======================  =====================================================

The encoder tasks batch: concurrent requests' texts are tokenized together,
padded to the longest, and run in one forward pass. Generation does not
batch; it is also served as OpenAI's completions and chats (``stream``, the
core's ``TextGenerator``), each generation in a thread of its own, and on
the gRPC stream one response per chunk. Tokenizer calls are serialised by a
lock: a fast tokenizer changes its padding state per call and refuses to be
used by two threads at once.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from modelserver import (
    EMBEDDING,
    TOKEN_COUNT,
    Chunk,
    Generation,
    InferRequest,
    InvalidInput,
    Model,
    ModelLoadError,
    SamplingParams,
    TextGenerator,
    choose_device,
    sampling_params,
    strings,
    tensor_spec,
)

from . import tasks
from .settings import HuggingFaceSettings

logger = logging.getLogger(__name__)

INPUT = "text"
#: Likeliest tokens listed per mask.
FILL_MASK_TOP = 5
DTYPES = {"float": "float32", "half": "float16"}
CUDA_NEEDS = "needs a CUDA build of torch and an NVIDIA GPU"


@dataclass(frozen=True, slots=True)
class Prompts:
    """A v2 generation request's texts and the sampling options of its parameters."""

    texts: list[str]
    params: SamplingParams


class HuggingFaceModel(Model, TextGenerator):
    """Serves one transformers model for its task."""

    extensions = (tasks.CONFIG,)
    platform = "huggingface"
    server_name = "huggingfaceserver"
    settings_class = HuggingFaceSettings
    settings: HuggingFaceSettings
    protocols = ("openai",)
    text_output = "generated_text"

    # -- loading ---------------------------------------------------------------------------

    def load(self) -> None:
        directory = self.model_file().parent
        settings = self.settings
        if settings.backend in ("vllm", "triton"):
            raise ModelLoadError(
                f"--backend {settings.backend} is not available in this server; it runs "
                "transformers (--backend auto or huggingface)"
            )
        described = tasks.describe(directory, settings.task)
        self.task = described.task
        import torch

        if settings.nthread:
            torch.set_num_threads(settings.nthread)
        self.device = torch.device(choose_device(settings.device, _cuda_problem(), directory.name))
        self.dtype = _dtype(settings.dtype, self.device)
        self._lock = threading.Lock()
        self.tokenizer = self._tokenizer(directory)
        self.network = self._network(directory, described)
        self.max_length = self._max_length(described.config)
        self.batchable = not self.generates
        self._declare(described)
        logger.info(
            "model %s: %s (%s) for %s on %s in %s, torch %s, threads %d, context %d tokens",
            self.name,
            directory.name,
            ", ".join(described.config.get("architectures") or [described.config["model_type"]]),
            self.task,
            self.device,
            str(self.dtype).removeprefix("torch."),
            torch.__version__,
            torch.get_num_threads(),
            self.max_length,
        )

    def _tokenizer(self, directory: Path) -> Any:
        from transformers import AutoTokenizer

        options: dict[str, Any] = {}
        if self.settings.disable_lower_case:
            options["do_lower_case"] = False
        try:
            tokenizer = AutoTokenizer.from_pretrained(
                str(directory),
                revision=self.settings.tokenizer_revision,
                trust_remote_code=self.settings.trust_remote_code,
                local_files_only=True,
                **options,
            )
        except Exception as exc:
            raise ModelLoadError(
                f"Cannot load the tokenizer in {directory}: {type(exc).__name__}: {exc}"
            ) from None
        if tokenizer.pad_token is None:
            # Padding batches needs a pad token; a causal LM's is its end-of-text token.
            fallback = tokenizer.eos_token or tokenizer.unk_token
            if fallback is None and not self.generates:
                raise ModelLoadError(f"The tokenizer in {directory} has no pad token to batch with")
            tokenizer.pad_token = fallback
        return tokenizer

    def _network(self, directory: Path, described: tasks.Described) -> Any:
        import transformers

        auto = {
            "sequence_classification": transformers.AutoModelForSequenceClassification,
            "token_classification": transformers.AutoModelForTokenClassification,
            "fill_mask": transformers.AutoModelForMaskedLM,
            "text_embedding": transformers.AutoModel,
            "text_generation": transformers.AutoModelForCausalLM,
            "text2text_generation": transformers.AutoModelForSeq2SeqLM,
        }[self.task]
        transformers.utils.logging.disable_progress_bar()
        try:
            network = auto.from_pretrained(
                str(directory),
                revision=self.settings.model_revision,
                dtype=self.dtype,
                trust_remote_code=self.settings.trust_remote_code,
                local_files_only=True,
            )
        except Exception as exc:
            weights = sorted(p.name for p in directory.glob("*.safetensors")) or ["no weights"]
            raise ModelLoadError(
                f"Cannot load {', '.join(weights)} in {directory} as {auto.__name__} for "
                f"{self.task} ({described.config['model_type']}): {type(exc).__name__}: {exc}"
            ) from None
        return network.to(self.device).eval().requires_grad_(False)

    def _max_length(self, config: dict[str, Any]) -> int:
        if self.settings.max_model_len:
            return self.settings.max_model_len
        for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            if isinstance(config.get(key), int):
                return int(config[key])
        limit = getattr(self.tokenizer, "model_max_length", 0)
        return int(limit) if 0 < limit < 1_000_000 else 512

    def _declare(self, described: tasks.Described) -> None:
        add = self.outputs.add
        if self.task == "sequence_classification":
            labels = self.network.config.num_labels
            add("label", "BYTES", [-1])
            add("probabilities", "FP32", [-1, labels], default=self.settings.return_probabilities)
            add("logits", "FP32", [-1, labels], default=False)
        elif self.task == "token_classification":
            add("entities", "BYTES", [-1])
        elif self.task == "fill_mask":
            if self.tokenizer.mask_token_id is None:
                raise ModelLoadError(
                    "This model's tokenizer has no mask token: it cannot fill masks"
                )
            self.warmup_text = f"The {self.tokenizer.mask_token} is warming up."
            add("sequence", "BYTES", [-1])
            add("predictions", "BYTES", [-1])
        elif self.task == "text_embedding":
            pooling = self.settings.pooling
            self.pooling = (described.pooling or "mean") if pooling == "auto" else pooling
            normalize = self.settings.normalize
            self.normalize = described.normalize if normalize is None else normalize
            add(EMBEDDING, "FP32", [-1, self.network.config.hidden_size])
            add(TOKEN_COUNT, "INT64", [-1], default=False)
        else:
            add(self.text_output, "BYTES", [-1])

    @property
    def generates(self) -> bool:
        return getattr(self, "task", "") in tasks.GENERATIVE

    # -- a request ---------------------------------------------------------------------------

    def preprocess(self, request: InferRequest) -> Any:
        """One text per row; a generation request's parameters are its sampling options."""
        if len(request.inputs) != 1:
            raise InvalidInput(
                f"Model '{self.name}' takes one input, '{INPUT}' (BYTES, one text per row); "
                f"got {len(request.inputs)}"
            )
        tensor = request.inputs[0]
        if tensor.datatype != "BYTES":
            raise InvalidInput(
                f"Model '{self.name}' takes text: input '{tensor.name}' must be BYTES, "
                f"got {tensor.datatype}"
            )
        data = tensor.data
        if data.ndim == 2 and data.shape[1] == 1:
            data = data[:, 0]
        if data.ndim != 1:
            raise InvalidInput(
                f"Model '{self.name}' takes one text per row (shape [N] or [N, 1]); "
                f"input '{tensor.name}' has shape {list(tensor.shape)}"
            )
        texts = strings(data)
        if self.generates:
            return Prompts(list(texts), sampling_params(request.parameters))
        return texts

    def predict(self, inputs: Any) -> dict[str, Any]:
        return self.compute(inputs, self.outputs.names)

    def compute(self, inputs: Any, names: list[str]) -> dict[str, Any]:
        if isinstance(inputs, Prompts):
            return {self.text_output: self._write_all(inputs)}
        import torch

        texts = [str(t) for t in inputs]
        with torch.inference_mode():
            if self.task == "sequence_classification":
                results = self._classify(texts)
            elif self.task == "token_classification":
                results = {"entities": self._entities(texts)}
            elif self.task == "fill_mask":
                results = self._fill(texts)
            else:
                results = self._embed(texts)
        return {name: results[name] for name in names}

    def _encode(self, texts: list[str], **options: Any) -> Any:
        """The texts as a padded batch of tensors on the model's device."""
        settings = self.settings
        with self._lock:
            batch = self.tokenizer(
                texts,
                padding=True,
                truncation=True,
                max_length=self.max_length,
                add_special_tokens=not settings.disable_special_tokens,
                return_token_type_ids=True if settings.return_token_type_ids else None,
                return_tensors="pt",
                **options,
            )
        return batch.to(self.device)

    def _forward(self, batch: Any) -> Any:
        wanted = self.settings.tensor_input_names
        names = [n.strip() for n in wanted.split(",")] if wanted else None
        feeds = {
            k: v for k, v in batch.items() if k != "offset_mapping" and (not names or k in names)
        }
        return self.network(**feeds)

    def _classify(self, texts: list[str]) -> dict[str, Any]:
        logits = self._forward(self._encode(texts)).logits.float()
        probabilities = logits.softmax(dim=-1)
        labels = self.network.config.id2label
        winners = probabilities.argmax(dim=-1).tolist()
        return {
            "label": np.array([str(labels.get(i, i)) for i in winners], dtype=object),
            "probabilities": probabilities.cpu().numpy(),
            "logits": logits.cpu().numpy(),
        }

    def _entities(self, texts: list[str]) -> np.ndarray:
        batch = self._encode(texts, return_offsets_mapping=True, return_special_tokens_mask=True)
        special = batch.pop("special_tokens_mask").tolist()
        offsets = batch["offset_mapping"].tolist()
        scores = self._forward(batch).logits.float().softmax(dim=-1)
        best, labels = scores.max(dim=-1)
        names = self.network.config.id2label
        out = np.empty(len(texts), dtype=object)
        for row, ids in enumerate(batch["input_ids"].tolist()):
            found = []
            for index in range(len(ids)):
                label = str(names.get(labels[row, index].item(), labels[row, index].item()))
                if special[row][index] or label == "O":
                    continue
                start, end = offsets[row][index]
                found.append(
                    {
                        "entity": label,
                        "score": round(float(best[row, index]), 6),
                        "index": index,
                        "word": texts[row][start:end],
                        "start": start,
                        "end": end,
                    }
                )
            out[row] = json.dumps(found)
        return out

    def _fill(self, texts: list[str]) -> dict[str, Any]:
        mask = self.tokenizer.mask_token_id
        batch = self._encode(texts)
        ids = batch["input_ids"]
        missing = [i for i, row in enumerate(ids.tolist()) if mask not in row]
        if missing:
            raise InvalidInput(
                f"Model '{self.name}' fills masks: text {missing[0]} has no "
                f"{self.tokenizer.mask_token} (write {self.tokenizer.mask_token} where a word "
                "is missing)"
            )
        probabilities = self._forward(batch).logits.float().softmax(dim=-1)
        filled = ids.clone()
        sequences = np.empty(len(texts), dtype=object)
        predictions = np.empty(len(texts), dtype=object)
        for row in range(len(texts)):
            per_mask = []
            for position in (ids[row] == mask).nonzero().flatten().tolist():
                top = torch_topk(probabilities[row, position], FILL_MASK_TOP)
                filled[row, position] = top[0][0]
                per_mask.append(
                    [
                        {"token": token, "token_str": self.token_text(token), "score": score}
                        for token, score in top
                    ]
                )
            predictions[row] = json.dumps(per_mask)
            with self._lock:
                sequences[row] = self.tokenizer.decode(filled[row], skip_special_tokens=True)
        return {"sequence": sequences, "predictions": predictions}

    def _embed(self, texts: list[str]) -> dict[str, Any]:
        batch = self._encode(texts)
        hidden = self._forward(batch).last_hidden_state.float()
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "cls":
            vectors = hidden[:, 0]
        elif self.pooling == "max":
            vectors = hidden.masked_fill(mask == 0, float("-inf")).max(dim=1).values
        else:
            vectors = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        if self.normalize:
            vectors = vectors / vectors.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        counts = batch["attention_mask"].sum(dim=1)
        return {
            EMBEDDING: vectors.cpu().numpy(),
            TOKEN_COUNT: counts.cpu().numpy().astype(np.int64),
        }

    # -- generation -----------------------------------------------------------------------------

    def chat_prompt(self, messages: list[dict[str, Any]]) -> str:
        if not getattr(self.tokenizer, "chat_template", None):
            raise InvalidInput(f"Model '{self.name}' has no chat template; use completions")
        try:
            with self._lock:
                prompt = self.tokenizer.apply_chat_template(
                    messages, add_generation_prompt=True, tokenize=False
                )
        except Exception as exc:  # the template's own checks (roles, order) raise
            raise InvalidInput(f"The chat template refused the messages: {exc}") from None
        return str(prompt)

    def generate(self, job: Generation, emit: Callable[[Chunk], None]) -> None:
        from .generation import write

        write(self, job, emit)

    def _write_all(self, prompts: Prompts) -> np.ndarray:
        """Each prompt's whole text (a v2 request), one after the other."""
        out = np.empty(len(prompts.texts), dtype=object)
        params = prompts.params
        if params.n != 1:
            raise InvalidInput("'n' is for OpenAI's completions; a v2 request writes one text")
        for row, text in enumerate(prompts.texts):
            chunks: list[Chunk] = []
            self.generate(Generation(text, params), chunks.append)
            out[row] = "".join(chunk.text for chunk in chunks)
        return out

    def decode(self, ids: list[int]) -> str:
        """Token ids as text, without special tokens."""
        with self._lock:
            return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def token_text(self, token: int) -> str:
        """One token as text (as log probabilities name it)."""
        with self._lock:
            return str(self.tokenizer.decode([token]))

    # -- description ---------------------------------------------------------------------------

    def inputs_metadata(self) -> list[dict[str, Any]]:
        return [tensor_spec(INPUT, "BYTES", [-1])]

    def metadata_parameters(self) -> dict[str, Any]:
        import torch

        facts: dict[str, Any] = {
            "task": self.task,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "max_model_len": self.max_length,
            "torch": torch.__version__,
        }
        if self.task == "text_embedding":
            facts.update(pooling=self.pooling, normalize=self.normalize)
        return facts

    def release(self) -> None:
        cuda = self.device.type == "cuda"
        del self.network
        if cuda:
            import torch

            torch.cuda.empty_cache()


def torch_topk(probabilities: Any, k: int) -> list[tuple[int, float]]:
    values, ids = probabilities.topk(min(k, probabilities.shape[-1]))
    return [
        (int(i), round(float(v), 6)) for i, v in zip(ids.tolist(), values.tolist(), strict=True)
    ]


def _cuda_problem() -> str | None:
    import torch

    if torch.version.cuda is None:
        return f"this torch {torch.__version__} is a CPU build; it {CUDA_NEEDS}"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU; it {CUDA_NEEDS}"
    return None


def _dtype(name: str, device: Any) -> Any:
    """The torch dtype for ``--dtype`` on ``device``; one the device cannot run is refused."""
    import torch

    name = DTYPES.get(name, name)
    if name == "auto":
        name = "float16" if device.type == "cuda" else "float32"
    if name == "bfloat16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ModelLoadError(
            f"--dtype bfloat16: this GPU ({torch.cuda.get_device_name(device)}) does not support "
            "it; use float16 or float32"
        )
    return getattr(torch, name)

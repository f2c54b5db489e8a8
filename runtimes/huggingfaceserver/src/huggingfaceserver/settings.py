"""huggingfaceserver's flags: the shared ones, ``--device``, and KServe's huggingfaceserver's.

KServe's names and meanings are kept, so an InferenceService written for
KServe's runtime starts this one unchanged. Its flags that choose another
engine (``--backend vllm`` or ``triton``) are refused at startup, and those
that only tune its request logger are accepted and change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from modelserver import DeviceSettings, setting

from .tasks import Task


@dataclass
class HuggingFaceSettings(DeviceSettings):
    """Where the model comes from, which task it serves, and how its text is tokenized."""

    model_id: str | None = setting(
        None,
        "a local model directory, or a Hub id already in the local Hugging Face cache "
        "(nothing is downloaded); replaces --model_dir",
    )
    model_revision: str | None = setting(None, "the cached revision of --model_id to serve")
    tokenizer_revision: str | None = setting(None, "the cached revision of the tokenizer")
    task: Task | None = setting(  # noqa: RUF009 (a Literal alias: ruff cannot tell it is one)
        None, "the task to serve (default: from the model's config)"
    )
    max_model_len: int | None = setting(
        None,
        "most tokens a text (prompt and generation) may have (default: the model's)",
        aliases=["--max_length"],
        minimum=1,
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16", "float", "half"] = setting(
        "auto", "the weights' dtype (auto: float16 on CUDA, float32 on the CPU)"
    )
    trust_remote_code: bool = setting(
        False, "run the model's own Python code from its directory (only for models you trust)"
    )
    tensor_input_names: str | None = setting(
        None, "comma-separated tokenizer outputs the model is given (default: all it takes)"
    )
    return_token_type_ids: bool = setting(False, "give the model token type ids")
    return_probabilities: bool = setting(
        False, "sequence classification: answer every label's probability by default too"
    )
    disable_lower_case: bool = setting(False, "do not lower-case text before tokenizing")
    disable_special_tokens: bool = setting(
        False, "do not add the tokenizer's special tokens ([CLS], [SEP], ...) to texts"
    )
    pooling: Literal["auto", "mean", "cls", "max"] = setting(
        "auto",
        "text embeddings: how token vectors become one (auto: the sentence-transformers "
        "config in the model directory, else mean)",
    )
    normalize: bool | None = setting(
        None,
        "text embeddings: scale vectors to length 1 (default: as the sentence-transformers "
        "config says, else no)",
    )
    backend: Literal["auto", "huggingface", "vllm", "triton"] = setting(
        "auto", "the engine: transformers (auto, huggingface); vllm and triton are not available"
    )
    # KServe's huggingfaceserver's request logger: accepted, nothing to tune here.
    disable_log_requests: bool = setting(False, "unused (KServe's request logger)", hidden=True)
    max_log_len: int | None = setting(
        None, "unused (KServe's request logger)", aliases=["--max-log-len"], hidden=True
    )

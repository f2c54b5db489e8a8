"""Which task a model directory serves, read from its files before torch is imported.

A directory as ``save_pretrained`` writes it has ``config.json`` naming the
model's architectures (``BertForSequenceClassification``); the class's
suffix names the task, as KServe's huggingfaceserver reads it. A
sentence-transformers model (``modules.json`` beside the config) is a text
embedding model, pooled and normalised as its own modules say. ``--task``
overrides all of it. A config that is not JSON, or names no architecture
when no task is given, is a startup error that says so.
"""

from __future__ import annotations

import json
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from modelserver import ModelLoadError

CONFIG = "config.json"
#: Architecture class-name suffixes and the task each serves (KServe's table).
SUFFIXES = (
    ("ForSequenceClassification", "sequence_classification"),
    ("ForTokenClassification", "token_classification"),
    ("ForMaskedLM", "fill_mask"),
    ("ForCausalLM", "text_generation"),
    ("LMHeadModel", "text_generation"),
    ("ForConditionalGeneration", "text2text_generation"),
    ("MTModel", "text2text_generation"),
    ("EncoderDecoderModel", "text2text_generation"),
)
#: The tasks, as KServe's huggingfaceserver names them (``--task``).
Task = Literal[
    "sequence_classification",
    "token_classification",
    "fill_mask",
    "text_embedding",
    "text_generation",
    "text2text_generation",
]
TASKS: tuple[str, ...] = typing.get_args(Task)
GENERATIVE = frozenset({"text_generation", "text2text_generation"})
#: sentence-transformers' module types of a pooling and a normalising step.
POOLING_MODULE = "sentence_transformers.models.Pooling"
NORMALIZE_MODULE = "sentence_transformers.models.Normalize"


@dataclass(frozen=True)
class Described:
    """What the directory says: its config, its task, and for embeddings how to pool."""

    config: dict[str, Any]
    task: str
    #: sentence-transformers' pooling ("mean", "cls", "max"), when its config says.
    pooling: str | None = None
    #: sentence-transformers' Normalize module is in the pipeline.
    normalize: bool = False


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelLoadError(f"{path.name} in {path.parent} is not readable JSON: {exc}") from None


def describe(directory: Path, task: str | None) -> Described:
    """The config and task of the model in ``directory`` (``task``: ``--task``, if given)."""
    config = read_json(directory / CONFIG)
    if not isinstance(config, dict) or not config.get("model_type"):
        raise ModelLoadError(
            f"{CONFIG} in {directory} is not a transformers model config (it has no model_type)"
        )
    pooling, normalize = _sentence_transformers(directory)
    if task is None:
        task = "text_embedding" if pooling is not None else _task_of(config, directory)
    return Described(config, task, pooling, normalize)


def _task_of(config: dict[str, Any], directory: Path) -> str:
    architectures = config.get("architectures") or []
    for architecture in architectures:
        for suffix, task in SUFFIXES:
            if str(architecture).endswith(suffix):
                return task
    named = ", ".join(map(str, architectures)) or "no architecture"
    raise ModelLoadError(
        f"Cannot tell the task of the model in {directory}: its {CONFIG} names {named}; "
        f"pass --task (one of {', '.join(TASKS)})"
    )


def _sentence_transformers(directory: Path) -> tuple[str | None, bool]:
    """(pooling, normalize) from sentence-transformers' ``modules.json``, if there is one."""
    modules_file = directory / "modules.json"
    if not modules_file.is_file():
        return None, False
    modules = read_json(modules_file)
    if not isinstance(modules, list):
        raise ModelLoadError(f"modules.json in {directory} is not a list of modules")
    pooling = "mean"
    normalize = False
    for module in modules:
        kind = module.get("type") if isinstance(module, dict) else None
        if kind == NORMALIZE_MODULE:
            normalize = True
        elif kind == POOLING_MODULE:
            pooling = _pooling_mode(directory / str(module.get("path", "")) / CONFIG)
    return pooling, normalize


def _pooling_mode(path: Path) -> str:
    if not path.is_file():
        return "mean"
    modes = read_json(path)
    for key, mode in (
        ("pooling_mode_cls_token", "cls"),
        ("pooling_mode_max_tokens", "max"),
        ("pooling_mode_mean_tokens", "mean"),
    ):
        if isinstance(modes, dict) and modes.get(key):
            return mode
    raise ModelLoadError(
        f"{path} asks for a pooling this server does not do (it does cls, max and mean tokens)"
    )

"""Warm-up: requests run through a model's whole pipeline before it reports ready.

Frameworks do work on their first calls that later calls do not: pmml4s's
JVM loads and compiles classes, torch and ONNX Runtime plan their kernels,
scikit-learn and pandas import lazily. A server that reports ready before
that makes its first clients pay it. With ``--warmup`` (on by default) each
model, at startup and on every repository (re)load, answers a few requests
through ``ServedModel``'s pipeline (preprocess, compute, pack; no codec, no
cache, no statistics or metrics) before it becomes READY.

The requests come from ``warmup.json`` beside the model when there is one,
else from the model's metadata:

* ``warmup.json`` (Triton's idea of warm-up samples, in the v2 protocol's own
  words): a JSON list of v2 inference request bodies, each exactly as it
  would be POSTed to ``/v2/models/{name}/infer`` (``inputs`` with ``name``,
  ``datatype``, ``shape`` and ``data``; ``outputs`` and ``parameters`` if
  wanted). It is the user's statement of what a valid request is, so a file
  that is not such a list, or a request of it that the model refuses, stops
  the load with the reason.
* metadata: one row of every declared input (each ``-1`` dimension 1), zeros
  for numbers, ``false`` for BOOL and a short string for BYTES; asked once
  for the default outputs and once for every declared output, so each
  output's code runs. A model may not take such a row (a category it never
  saw): that request is logged and skipped, and the model loads anyway. A
  model that declares no inputs is not warmed up.

Each request runs ``ROUNDS`` times.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from ..codecs import v2_rest
from ..datatypes import dtype_of
from ..errors import ModelLoadError, ModelServerError
from ..model.base import Model
from ..model.discovery import WARMUP_FILE
from ..types import InferRequest, RequestedOutput, Tensor

logger = logging.getLogger(__name__)

#: How many times each warm-up request runs.
ROUNDS = 3


@dataclass(frozen=True, slots=True)
class Plan:
    """The requests to warm a model with, and whether each must succeed."""

    requests: list[InferRequest]
    #: Where they come from, for the log: the file, or "metadata".
    source: str
    #: A failing request stops the load (the user's warmup.json), else it is skipped.
    required: bool
    #: Why there are none, when there are none.
    reason: str = ""


def plan(model: Model, name: str, version: str, model_dir: Path | None) -> Plan:
    """The model's warm-up: its ``warmup.json``, else requests built from its metadata."""
    path = model_dir / WARMUP_FILE if model_dir is not None else None
    if path is not None and path.is_file():
        return Plan(from_file(path, name, version), str(path.name), True)
    requests, reason = from_metadata(model, name)
    return Plan(requests, "metadata", False, reason)


def from_file(path: Path, name: str, version: str) -> list[InferRequest]:
    """The v2 requests of a ``warmup.json``; ModelLoadError saying what is wrong with it."""
    try:
        bodies = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path}: cannot read warm-up requests: {exc}") from None
    if not isinstance(bodies, list) or not bodies:
        raise ModelLoadError(
            f"{path}: expected a non-empty JSON list of v2 inference request bodies"
        )
    requests = []
    for index, body in enumerate(bodies):
        if not isinstance(body, dict):
            raise ModelLoadError(f"{path}: request {index} is not a JSON object")
        try:
            requests.append(v2_rest.decode_infer_request(orjson.dumps(body), None, name, version))
        except ModelServerError as exc:
            raise ModelLoadError(f"{path}: request {index}: {exc.message}") from None
    return requests


def from_metadata(model: Model, name: str) -> tuple[list[InferRequest], str]:
    """One row of every declared input, for the default outputs and for all of them."""
    specs = model.inputs_metadata()
    if not specs:
        return [], "the model declares no inputs"
    tensors = []
    for spec in specs:
        tensor = _tensor(spec, model.warmup_text.encode())
        if tensor is None:
            return [], f"input '{spec.get('name')}' has datatype {spec.get('datatype')!r}"
        tensors.append(tensor)
    requests = [InferRequest(name, tensors, id="warmup-defaults")]
    outputs = model.outputs
    if not outputs.dynamic and set(outputs.names) != set(outputs.defaults()):
        asked = [RequestedOutput(n) for n in outputs.names]
        requests.append(InferRequest(name, tensors, id="warmup-all-outputs", outputs=asked))
    return requests, ""


def _tensor(spec: dict[str, Any], text: bytes) -> Tensor | None:
    datatype = str(spec.get("datatype", ""))
    dtype = dtype_of(datatype)
    if dtype is None:
        return None
    shape = tuple(1 if int(d) < 0 else int(d) for d in spec.get("shape", ()))
    if datatype == "BYTES":
        data = np.empty(shape, dtype=object)
        data.fill(text)
    else:
        data = np.zeros(shape, dtype=dtype)
    return Tensor(str(spec["name"]), datatype, shape, data)

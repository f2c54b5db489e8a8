"""Models with named, typed tensor inputs and outputs (ONNX, Paddle inference).

Graph runtimes declare every input and output with a datatype and a shape
(``-1`` for a dynamic dimension). Their requests are not one table but a set
of named tensors, so this base hands ``run`` a ``{name: ndarray}`` mapping
matched and checked against the declaration, and asks it for exactly the
outputs the request selected (all of them by default) in one call.

Checks, each answered 400 with the reason:
- an input the model does not have, or a declared input the request lacks
  (a single-input model takes a single tensor under any name, which is how
  v1 ``instances`` and clients that do not know the name reach it);
- a datatype that cannot become the declared one without changing kind
  (FP64 → FP32 and INT64 → FP32 are cast; FP32 → INT64 or BYTES → FP32 are
  refused), so JSON clients need not know the model's precision;
- a rank or a fixed dimension that differs from the declaration.

A graph may offer several named entry points (a SavedModel's signatures):
each is a TensorModel of its own in ``signatures``, and a request picks one
by name (the ``signature_name`` parameter, or the protocol's own field), the
default when it names none.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..datatypes import dtype_of
from ..errors import InvalidInput
from ..types import InferRequest, Tensor
from .base import Model
from .inputs import tensor_spec

Feeds = dict[str, np.ndarray]

logger = logging.getLogger(__name__)

#: TF Serving's method names: what a signature computes, and which API calls it.
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
#: The signature a request that names none gets.
DEFAULT_SIGNATURE = "serving_default"
#: The request parameter that selects a signature.
SIGNATURE_PARAMETER = "signature_name"


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One declared input or output: OIP datatype and shape (-1 = dynamic)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def metadata(self) -> dict[str, Any]:
        return tensor_spec(self.name, self.datatype, list(self.shape))


def _fits(declared: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    return len(declared) == len(shape) and all(
        want < 0 or want == got for want, got in zip(declared, shape, strict=True)
    )


def _check_shape(spec: TensorSpec, data: np.ndarray, model: str) -> np.ndarray:
    declared = spec.shape
    if not declared:
        return data
    if data.ndim == len(declared) - 1 and declared[0] == -1:
        one_example = (1, *data.shape)
        if _fits(declared, one_example) or declared[-1] != 1:
            # One example without its batch dimension: add it.
            data = data.reshape(one_example)
        else:
            # N single values (a v1 list of numbers) for an input of rows of one value.
            data = data.reshape((*data.shape, 1))
    if data.ndim != len(declared):
        raise InvalidInput(
            f"Model '{model}' input '{spec.name}' expects shape {list(declared)}, "
            f"got {list(data.shape)}"
        )
    for want, got in zip(declared, data.shape, strict=True):
        if want >= 0 and want != got:
            raise InvalidInput(
                f"Model '{model}' input '{spec.name}' expects shape {list(declared)}, "
                f"got {list(data.shape)}"
            )
    return data


def _convert(spec: TensorSpec, tensor: Tensor, model: str) -> np.ndarray:
    data = tensor.data
    if spec.datatype == "BYTES":
        if tensor.datatype != "BYTES":
            raise InvalidInput(
                f"Model '{model}' input '{spec.name}' is BYTES, got {tensor.datatype}"
            )
        return data
    want = dtype_of(spec.datatype)
    if want is None or data.dtype == want:
        return data
    if tensor.datatype == "BYTES" or not np.can_cast(data.dtype, want, "same_kind"):
        raise InvalidInput(
            f"Model '{model}' input '{spec.name}' is {spec.datatype}, got {tensor.datatype}; "
            "send that datatype (or one that converts to it without changing kind)"
        )
    return data.astype(want)


class TensorModel(Model):
    """Base of runtimes whose model is a graph of named tensors.

    ``load`` ends with ``declare(inputs, outputs)``; ``run`` computes the
    named outputs from the matched feeds in one framework call.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.input_specs: list[TensorSpec] = []
        self.output_specs: list[TensorSpec] = []
        #: Named signatures, each with its own inputs and outputs; empty: this
        #: model is its only one.
        self.signatures: dict[str, TensorModel] = {}
        self.default_signature = DEFAULT_SIGNATURE
        #: What this signature computes, in TF Serving's words (classify and
        #: regress signatures take serialized tf.Examples).
        self.method_name = PREDICT_METHOD
        #: The model's own SignatureDef, serialized, when it has one: TF
        #: Serving's metadata shows it as it is (graph tensor names included).
        self.signature_def = b""

    @abc.abstractmethod
    def run(self, feeds: Feeds, names: Sequence[str]) -> Sequence[Any]:
        """The outputs ``names``, in that order, for ``feeds`` (one framework call)."""

    def declare(self, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> None:
        """Record the graph's inputs and outputs: every output selectable, all the default.

        Requests can be stacked into one call only when every tensor's first
        dimension is the batch (dynamic); otherwise the model is not batched.
        """
        self.input_specs = list(inputs)
        self.output_specs = list(outputs)
        self.outputs.clear()
        for spec in self.output_specs:
            self.outputs.add(spec.name, spec.datatype, spec.shape)
        self.batchable = all(
            spec.shape and spec.shape[0] == -1 for spec in self.input_specs + self.output_specs
        )
        if not self.batchable:
            logger.info(
                "model %s cannot be batched: not every input and output has a dynamic first "
                "(batch) dimension",
                self.name,
            )

    def predict(self, inputs: Feeds) -> Any:
        """All outputs for ``inputs``, as a mapping (used by custom callers)."""
        names = [spec.name for spec in self.output_specs]
        return dict(zip(names, self.run(inputs, names), strict=True))

    def compute(self, inputs: Feeds, names: list[str]) -> dict[str, Any]:
        return dict(zip(names, self.run(inputs, names), strict=True))

    def preprocess(self, request: InferRequest) -> Feeds:
        specs = {spec.name: spec for spec in self.input_specs}
        tensors = request.inputs
        if len(tensors) == 1 and len(specs) == 1 and tensors[0].name not in specs:
            only = next(iter(specs.values()))
            return {only.name: _check_shape(only, _convert(only, tensors[0], self.name), self.name)}
        feeds: Feeds = {}
        for tensor in tensors:
            spec = specs.get(tensor.name)
            if spec is None:
                raise InvalidInput(
                    f"Model '{self.name}' has no input named '{tensor.name}'; "
                    f"inputs: {', '.join(specs)}"
                )
            feeds[spec.name] = _check_shape(spec, _convert(spec, tensor, self.name), self.name)
        missing = [name for name in specs if name not in feeds]
        if missing:
            raise InvalidInput(
                f"Model '{self.name}' is missing input {', '.join(repr(n) for n in missing)}"
            )
        return feeds

    def inputs_metadata(self) -> list[dict[str, Any]]:
        return [spec.metadata() for spec in self.input_specs]

    def signature(self, name: str | None) -> TensorModel:
        """The signature called ``name`` (None or "": the default); 400 naming those there are."""
        key = name or self.default_signature
        found = self.signatures.get(key) if self.signatures else None
        if found is not None:
            return found
        if not self.signatures and key == self.default_signature:
            return self
        known = ", ".join(sorted(self.signatures or [self.default_signature]))
        raise InvalidInput(
            f'Serving signature name: "{key}" not found in signature def of model '
            f"'{self.name}'; signatures: {known}"
        )

    def for_request(self, request: InferRequest) -> TensorModel:
        """The signature the request's ``signature_name`` parameter names (default: the default)."""
        if not self.signatures:
            return self
        name = request.parameters.get(SIGNATURE_PARAMETER)
        if name is not None and not isinstance(name, str):
            raise InvalidInput(f"Parameter '{SIGNATURE_PARAMETER}' must be a string")
        return self.signature(name)


def specs_from(pairs: Mapping[str, tuple[str, Sequence[int | None]]]) -> list[TensorSpec]:
    """Specs from ``{name: (datatype, dims)}`` where a dim may be None (dynamic)."""
    return [
        TensorSpec(name, datatype, tuple(-1 if d is None or d < 0 else int(d) for d in dims))
        for name, (datatype, dims) in pairs.items()
    ]

"""The runtime interface: a model loads itself and predicts on numpy or pandas.

A runtime subclasses ``Model`` and implements ``load`` and ``predict``. The
core turns every protocol's request into the model's input (one 2-D array for
a single input; a DataFrame with one column per named input when there are
several) and turns what predict returns back into output tensors, so a
runtime never sees JSON, protobuf or HTTP.
"""

from __future__ import annotations

import abc
import enum
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from . import metrics, policy, tracing
from .batching import Batcher, batch_key
from .datatypes import datatype_of
from .disconnect import abandon_on_disconnect
from .errors import InferenceError, InvalidInput, ModelLoadError, ModelServerError
from .execution import PredictRunner
from .metrics import ModelMetrics
from .types import InferRequest, InferResponse, Tensor

logger = logging.getLogger(__name__)

ModelInput = Any  # np.ndarray or pandas.DataFrame; pandas is imported only when used


class ModelState(enum.StrEnum):
    """Lifecycle states, named as the repository extension reports them."""

    LOADING = "LOADING"
    READY = "READY"
    UNAVAILABLE = "UNAVAILABLE"
    FAILED = "FAILED"


def tensor_spec(name: str, datatype: str, shape: list[int]) -> dict[str, Any]:
    """One entry of model metadata's ``inputs`` or ``outputs``."""
    return {"name": name, "datatype": datatype, "shape": list(shape)}


class Model(abc.ABC):
    """Base class of every served model.

    Subclasses set ``extensions`` (the file suffixes they load), implement
    ``load`` and ``predict``, and may add named outputs to ``output_methods``
    (for example ``predict_proba``) and describe themselves through
    ``inputs_metadata`` and ``outputs_metadata``.

    A custom model written the KServe way overrides ``preprocess`` (per
    request) and ``postprocess`` (per predict call) around ``predict`` and
    names postprocess's outputs in ``output_names``.
    """

    #: File suffixes this runtime loads, used by model discovery.
    extensions: tuple[str, ...] = ()
    #: Reported as ``platform`` in model metadata.
    platform: str = ""
    #: True when predict returns a mapping of output name -> array whose names
    #: are only known per request (e.g. one output per input); requested
    #: outputs are then picked from that mapping.
    dynamic_outputs: bool = False
    #: Exceptions from predict that mean the input was wrong (answered 400).
    input_errors: tuple[type[BaseException], ...] = (ValueError, TypeError, KeyError, IndexError)
    #: Outputs ``postprocess`` returns by name, all from one predict pass; each
    #: is selectable, all are the default. Empty: outputs are ``output_methods``.
    output_names: tuple[str, ...] = ()

    def __init__(
        self,
        name: str,
        model_dir: str | Path | None = None,
        version: str = "1",
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.version = version
        self.options: dict[str, Any] = dict(options or {})
        self.state = ModelState.LOADING
        self.reason = ""
        #: Named outputs: name -> callable(model_input) returning array-like.
        self.output_methods: dict[str, Callable[[ModelInput], Any]] = {}
        #: Outputs returned when a request names none.
        self.default_outputs: list[str] = ["predict"]
        self.runner = PredictRunner(None, "inline")
        #: Set by the server when adaptive batching is on for this model.
        self.batcher: Batcher | None = None
        #: Set by the server: this model's pre-labelled Prometheus children.
        self.metrics: ModelMetrics | None = None
        #: Requests inside ``infer`` now; unload waits for them to finish.
        self.inflight = 0

    # -- what a runtime implements ---------------------------------------

    @abc.abstractmethod
    def load(self) -> None:
        """Find and load the model from ``model_dir``; raise to report failure."""

    @abc.abstractmethod
    def predict(self, inputs: ModelInput) -> Any:
        """The default output for ``inputs``: numpy in, numpy (or array-like) out."""

    def preprocess(self, request: InferRequest) -> ModelInput:
        """Per request, before batching: the request -> predict's input (KServe's preprocess).

        The default decodes the tensors (``decode_inputs``); override to check
        and transform, calling ``super().preprocess(request)`` for the decoded
        form. ``input_errors`` raised here are answered 400.
        """
        return self.decode_inputs(request)

    def postprocess(self, result: Any) -> Mapping[str, Any]:
        """Per predict call: predict's result -> ``{name: array}`` for ``output_names``."""
        return result

    def model_file(self) -> Path:
        """The one model file in ``model_dir``: this runtime's suffixes, discovery's rules."""
        from .discovery import find_model_file

        if self.model_dir is None:
            raise ModelLoadError(f"Model '{self.name}' has no model directory")
        return find_model_file(self.model_dir, self.extensions, self.accepts)

    @classmethod
    def accepts(cls, path: Path) -> bool:
        """Whether ``path`` (with one of ``extensions``) is a model; discovery skips others."""
        return True

    def inputs_metadata(self) -> list[dict[str, Any]]:
        """Input tensors for model metadata; override to describe the model."""
        return []

    def outputs_metadata(self) -> list[dict[str, Any]]:
        """Output tensors for model metadata; override to describe the model."""
        return []

    def metadata_parameters(self) -> dict[str, Any]:
        """Extra model-level facts (feature names, classes) for REST metadata."""
        return {}

    # -- lifecycle --------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.state is ModelState.READY

    def start(self) -> None:
        """Load the model and mark it ready, or FAILED with the reason."""
        self.state = ModelState.LOADING
        started = time.perf_counter()
        try:
            self.load()
        except BaseException as exc:
            self.state = ModelState.FAILED
            self.reason = str(exc) or type(exc).__name__
            raise
        if self.output_names:
            self.output_methods = {name: self._postprocessed(name) for name in self.output_names}
            if self.default_outputs == ["predict"]:
                self.default_outputs = list(self.output_names)
        else:
            self.output_methods.setdefault("predict", self.predict)
        self.state = ModelState.READY
        self.reason = ""
        metrics.MODEL_LOAD_SECONDS.labels(self.name).set(time.perf_counter() - started)

    def stop(self) -> None:
        """Mark the model unavailable; subclasses may also free resources."""
        self.state = ModelState.UNAVAILABLE
        self.reason = "unloaded"

    def release(self) -> None:
        """Free what ``load`` took, once no request uses the model.

        The base drops the runtime's references so the framework's memory can
        be reclaimed; a runtime holding other resources (a JVM, a GPU session)
        extends this.
        """
        self.output_methods = {}

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": self.name,
            "versions": [self.version] if self.version else [],
            "platform": self.platform,
            "inputs": [],
            "outputs": [],
        }
        if self.state is ModelState.READY:
            # Only a loaded model can describe itself.
            meta["inputs"] = self.inputs_metadata()
            meta["outputs"] = self.outputs_metadata()
            params = self.metadata_parameters()
            if params:
                meta["parameters"] = params
        else:
            meta["state"] = self.state.value
            if self.reason:
                meta["reason"] = self.reason
        return meta

    # -- the request path --------------------------------------------------

    def decode_inputs(self, request: InferRequest) -> ModelInput:
        """The model's input for a request: a 2-D array, or a DataFrame of named columns."""
        inputs = request.inputs
        if len(inputs) == 1 and request.parameters.get("content_type") != "pd":
            tensor = inputs[0]
            data = tensor.data
            if tensor.datatype == "BYTES":
                return _strings(data)
            if data.ndim == 1:
                return data.reshape(1, -1)
            if data.ndim == 0:
                return data.reshape(1, 1)
            return data
        return _dataframe(inputs)

    def select_outputs(self, request: InferRequest) -> list[str]:
        if not request.outputs or self.dynamic_outputs:
            return self.default_outputs
        names = [o.name for o in request.outputs]
        unknown = [n for n in names if n not in self.output_methods]
        if unknown:
            raise InvalidInput(
                f"Model '{self.name}' has no output named {', '.join(repr(n) for n in unknown)}; "
                f"available: {', '.join(self.output_methods)}"
            )
        return names

    def compute(self, inputs: ModelInput, names: list[str]) -> list[tuple[str, Any]]:
        """Run each selected output on the same input (in the runner's thread)."""
        if self.output_names:
            outputs = self.postprocess(self.predict(inputs))
            return [(name, outputs[name]) for name in names]
        return [(name, self.output_methods[name](inputs)) for name in names]

    def _postprocessed(self, name: str) -> Callable[[ModelInput], Any]:
        return lambda inputs: self.postprocess(self.predict(inputs))[name]

    def _served_error(self, exc: Exception, request: InferRequest) -> ModelServerError:
        """What the client gets for an exception of the model's own code."""
        if isinstance(exc, self.input_errors):
            return InvalidInput(f"Model '{self.name}' rejected the input: {exc}")
        logger.exception("model %s raised (request id %s)", self.name, request.id)
        return InferenceError(f"Model '{self.name}' failed: {type(exc).__name__}: {exc}")

    async def infer(self, request: InferRequest) -> InferResponse:
        """Decode, predict (inline, in the pool or in a batch) and encode one request."""
        self.inflight += 1
        try:
            return await self._infer(request)
        finally:
            self.inflight -= 1

    async def _infer(self, request: InferRequest) -> InferResponse:
        names = self.select_outputs(request)
        try:
            inputs = self.preprocess(request)
        except ModelServerError:
            raise
        except Exception as exc:
            raise self._served_error(exc, request) from exc
        key = batch_key(inputs, names) if self.batcher is not None else None
        queued_ns = time.time_ns()
        try:
            if key is not None:
                work = self.batcher.submit(inputs, names, key)  # type: ignore[union-attr]
            else:
                work = self.runner.run(self.compute, inputs, names, pool=policy.limited.get())
            if key is None and self.runner.inline and not policy.limited.get():
                results, start_ns, end_ns = await work
            else:
                results, start_ns, end_ns = await abandon_on_disconnect(work)
        except ModelServerError:
            raise
        except Exception as exc:
            raise self._served_error(exc, request) from exc
        if self.metrics is not None:
            self.metrics.queue.observe((start_ns - queued_ns) / 1e9)
            self.metrics.predict.observe((end_ns - start_ns) / 1e9)
        trace = tracing.current.get()
        if trace is not None:
            trace.phase("queue", queued_ns, start_ns)
            trace.phase("predict", start_ns, end_ns)
        outputs: list[Tensor] = []
        for name, value in results:
            if isinstance(value, Mapping):
                outputs.extend(to_tensor(str(k), v) for k, v in value.items())
            else:
                outputs.append(to_tensor(name, value))
        if self.dynamic_outputs and request.outputs:
            outputs = _pick(outputs, [o.name for o in request.outputs], self.name)
        return InferResponse(
            model_name=self.name,
            model_version=self.version,
            id=request.id,
            outputs=outputs,
        )


def _pick(outputs: list[Tensor], names: list[str], model: str) -> list[Tensor]:
    by_name = {t.name: t for t in outputs}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise InvalidInput(
            f"Model '{model}' has no output named {', '.join(repr(n) for n in missing)}; "
            f"available: {', '.join(by_name)}"
        )
    return [by_name[n] for n in names]


def _strings(data: np.ndarray) -> np.ndarray:
    """BYTES elements as Python strings, the form text models expect."""
    out = np.empty(data.shape, dtype=object)
    flat = out.reshape(-1)
    for i, item in enumerate(data.reshape(-1)):
        flat[i] = item.decode("utf-8", errors="replace") if isinstance(item, bytes) else item
    return out


def as_column(tensor: Tensor) -> np.ndarray:
    """A named input as one column of N values: shape [N], [N, 1] or a scalar."""
    data = tensor.data
    if data.ndim == 2 and data.shape[1] == 1:
        return data[:, 0]
    if data.ndim == 0:
        return data.reshape(1)
    if data.ndim != 1:
        raise InvalidInput(
            f"Input '{tensor.name}' has shape {list(tensor.shape)}; with several named "
            "inputs each one is a column and must have shape [N] or [N, 1]"
        )
    return data


def _dataframe(inputs: list[Tensor]) -> Any:
    import pandas as pd

    columns: dict[str, Any] = {}
    rows: int | None = None
    for tensor in inputs:
        data = as_column(tensor)
        if tensor.datatype == "BYTES":
            data = _strings(data)
        if rows is None:
            rows = len(data)
        elif len(data) != rows:
            raise InvalidInput(
                f"Input '{tensor.name}' has {len(data)} rows, the inputs before it have {rows}"
            )
        columns[tensor.name] = data
    return pd.DataFrame(columns)


def to_tensor(name: str, value: Any) -> Tensor:
    """An output tensor from whatever predict returned (array, list, Series, frame)."""
    if hasattr(value, "to_numpy"):
        value = value.to_numpy()
    arr = np.asarray(value)
    if arr.dtype.kind in "US":
        obj = np.empty(arr.shape, dtype=object)
        obj[...] = arr
        arr = obj
    try:
        datatype = datatype_of(arr.dtype)
    except TypeError as exc:
        raise InferenceError(f"Output '{name}': {exc}") from None
    return Tensor(name, datatype, tuple(arr.shape), arr)

"""PyTorch runtime: TorchScript, torch.export, AOTInductor and eager models as tensor graphs.

The model file in ``--model_dir`` is recognised by its content
(``formats.py``), loaded by its format's loader (``loaders.py``) and
declared with the inputs and outputs its format records (``signature.py``).
A request's tensors are matched and checked against that declaration by the
core (a contradicting shape or datatype is a 400 naming the input), become
torch tensors without a copy (a read-only request buffer is copied first:
a model may write into its input), move to the device once per call
(through pinned host memory on CUDA), and the model runs under
``torch.inference_mode()``; its answer is flattened into named outputs.

Errors torch raises on a request's tensors (a shape the graph cannot take,
a dtype an operator refuses, a guard of an exported program) are 400s with
torch's first line; out-of-memory and device errors stay 500s.
``--nthread`` sets ``torch.set_num_threads`` for the process. Predict runs
off the event loop while slow (torch releases the GIL while it computes).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from modelserver import (
    Feeds,
    InvalidInput,
    ModelLoadError,
    Outputs,
    TensorModel,
    TensorSpec,
    dtype_of,
)

from . import loaders
from .formats import EXTENSIONS, detect
from .settings import TorchSettings
from .signature import UNKNOWN, Signature, flatten, spec_of

logger = logging.getLogger(__name__)

#: Batch size of the one call that learns a traced module's outputs.
PROBE_ROWS = 7
#: Errors of the model's own resources, never the request's.
_NOT_INPUT_ERRORS: tuple[type[BaseException], ...] = (
    torch.OutOfMemoryError,
    getattr(torch, "AcceleratorError", torch.OutOfMemoryError),
)


def reason(exc: BaseException) -> str:
    """torch's message without its C++ stack (or, from TorchScript, the error it re-raised)."""
    text = str(exc).split("\nException raised from")[0]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith(("RuntimeError: ", "AssertionError: ")):
            return line.partition(": ")[2]
    return lines[0] if lines else type(exc).__name__


class TorchModel(TensorModel):
    """Serves one PyTorch model file; every output by name, all of them by default."""

    extensions = EXTENSIONS
    platform = "pytorch"
    server_name = "torchserver"
    settings_class = TorchSettings
    settings: TorchSettings

    def load(self) -> None:
        found = detect(self.model_file())
        if self.settings.nthread:
            torch.set_num_threads(self.settings.nthread)
        loaded = loaders.load(found, self.settings)
        self.path, self.loaded = found.path, loaded
        self.call: Signature = loaded.signature
        self._unknown = {s.name for s in self.call.inputs if s.datatype == UNKNOWN}
        outputs = self.call.outputs
        if outputs is None and not self._unknown:
            outputs = self._probe()
        self.declare(self.call.inputs, outputs or [])
        if outputs is None:
            # Names come with each answer; every one is a default, any can be asked for.
            self.outputs = Outputs(dynamic=True)
        logger.info(
            "model %s: %s (%s) on %s, torch %s, intra-op threads %d; inputs %s; outputs %s",
            self.name,
            found.path.name,
            loaded.kind,
            loaded.device,
            torch.__version__,
            torch.get_num_threads(),
            ", ".join(_describe(s) for s in self.input_specs),
            ", ".join(_describe(s) for s in self.output_specs) or "named when it answers",
        )

    def _probe(self) -> list[TensorSpec]:
        """A traced module's outputs, from one call on zeros of its example shapes."""
        zeros = {
            spec.name: np.zeros((PROBE_ROWS, *spec.shape[1:]), dtype=_numpy_dtype(spec))
            for spec in self.call.inputs
        }
        try:
            answer = self._call(zeros)
        except InvalidInput as exc:
            raise ModelLoadError(
                f"{self.path.name}: the traced module failed on zeros of its example shapes: "
                f"{exc.message}"
            ) from None
        specs = []
        for name, value in answer:
            if not isinstance(value, torch.Tensor):
                raise ModelLoadError(f"{self.path.name}: output '{name}' is not a tensor")
            batched = value.ndim > 0 and value.shape[0] == PROBE_ROWS
            shape = (-1, *value.shape[1:]) if batched else tuple(value.shape)
            specs.append(spec_of(name, value.dtype, shape, "output"))
        return specs

    # -- a call -----------------------------------------------------------------------

    def predict(self, inputs: Feeds) -> dict[str, Any]:
        """Every output for ``inputs`` (for callers that use the model in-process)."""
        return {name: _array(value) for name, value in self._call(inputs)}

    def run(self, feeds: Feeds, names: Sequence[str]) -> list[np.ndarray]:
        results = self.compute(feeds, list(names))
        return [results[name] for name in names]

    def compute(self, inputs: Feeds, names: list[str]) -> dict[str, Any]:
        results = self.predict(inputs)
        if self.outputs.dynamic:
            return results
        return {name: results[name] for name in names}

    def _call(self, feeds: Feeds) -> list[tuple[str, Any]]:
        tensors = {name: self._tensor(name, array) for name, array in feeds.items()}
        args, kwargs = self.call.arguments(tensors)
        with torch.inference_mode():
            try:
                answer = self.loaded.module(*args, **kwargs)
            except _NOT_INPUT_ERRORS:
                raise
            except (RuntimeError, AssertionError) as exc:
                raise InvalidInput(
                    f"Model '{self.name}' rejected the input: {reason(exc)}"
                ) from None
            return flatten(answer)

    def _tensor(self, name: str, array: np.ndarray) -> torch.Tensor:
        """One input as a tensor on the model's device, in the dtype the model takes."""
        if array.dtype == object:
            raise InvalidInput(
                f"Model '{self.name}' input '{name}' is BYTES; torch tensors hold numbers or "
                "booleans"
            )
        if name in self._unknown and array.dtype.kind == "f" and array.dtype != np.float32:
            array = array.astype(np.float32)
        if self.loaded.device == "cuda":
            host = torch.empty(array.shape, dtype=_torch_dtype(array.dtype), pin_memory=True)
            host.numpy()[...] = array
            tensor = host.to(self.loaded.device, non_blocking=True)
        else:
            tensor = torch.from_numpy(array if array.flags.writeable else array.copy())
        cast = self.call.casts.get(name)
        return tensor.to(cast) if cast is not None else tensor

    # -- description --------------------------------------------------------------------

    def inputs_metadata(self) -> list[dict[str, Any]]:
        """Inputs whose format records no datatype are declared FP32 (see signature.py)."""
        return [
            TensorSpec(s.name, s.datatype or "FP32", s.shape).metadata() for s in self.input_specs
        ]

    def metadata_parameters(self) -> dict[str, Any]:
        return {
            "format": self.loaded.kind,
            "model_file": self.path.name,
            "device": self.loaded.device,
            "torch": torch.__version__,
        }

    def release(self) -> None:
        cuda = self.loaded.device == "cuda"
        del self.loaded
        if cuda:
            torch.cuda.empty_cache()


def _describe(spec: TensorSpec) -> str:
    return f"{spec.name} {spec.datatype or 'FP32 (unchecked)'} {list(spec.shape) or '[?]'}"


def _numpy_dtype(spec: TensorSpec) -> np.dtype:
    return dtype_of(spec.datatype) or np.dtype(np.float32)


def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dtype=dtype)).dtype


def _array(value: Any) -> np.ndarray:
    """An output as numpy: bfloat16 widened to float32 (exact), copied off the device."""
    if isinstance(value, torch.Tensor):
        if value.dtype == torch.bfloat16:
            value = value.float()
        return value.detach().cpu().numpy()
    return np.asarray(value)

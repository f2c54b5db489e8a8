"""modelserver: the shared serving core of the per-framework runtimes.

Everything a runtime or a custom model needs is importable from here::

    from modelserver import Model, run

    class MyModel(Model):
        def load(self) -> None: ...
        def predict(self, inputs): ...

    if __name__ == "__main__":
        raise SystemExit(run(MyModel))

The layers below (``protocol``, ``codecs``, ``dataplane``, ``server``) are
the server's own; their names may change between releases.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .datatypes import datatype_of, dtype_of
from .device import Device, DeviceSettings, choose_device
from .errors import (
    InferenceError,
    InvalidInput,
    ModelLoadError,
    ModelNotFound,
    ModelNotReady,
    ModelServerError,
)
from .imports import without_optional
from .model import tabular
from .model.base import Model
from .model.discovery import find_model_file
from .model.generation import (
    EMBEDDING,
    TOKEN_COUNT,
    Chunk,
    Generation,
    SamplingParams,
    StopText,
    TextGenerator,
    TokenLogprob,
    sampling_params,
)
from .model.inputs import ModelInput, as_column, dataframe, default_inputs, strings, tensor_spec
from .model.outputs import Output, Outputs
from .model.tensor import Feeds, TensorModel, TensorSpec, specs_from
from .server.cli import run
from .settings import Settings, setting
from .types import InferRequest, InferResponse, RequestedOutput, Tensor

__all__ = [
    "EMBEDDING",
    "TOKEN_COUNT",
    "Chunk",
    "Device",
    "DeviceSettings",
    "Feeds",
    "Generation",
    "InferRequest",
    "InferResponse",
    "InferenceError",
    "InvalidInput",
    "Model",
    "ModelInput",
    "ModelLoadError",
    "ModelNotFound",
    "ModelNotReady",
    "ModelServerError",
    "Output",
    "Outputs",
    "RequestedOutput",
    "SamplingParams",
    "Settings",
    "StopText",
    "Tensor",
    "TensorModel",
    "TensorSpec",
    "TextGenerator",
    "TokenLogprob",
    "__version__",
    "as_column",
    "choose_device",
    "dataframe",
    "datatype_of",
    "default_inputs",
    "dtype_of",
    "find_model_file",
    "run",
    "sampling_params",
    "setting",
    "specs_from",
    "strings",
    "tabular",
    "tensor_spec",
    "without_optional",
]

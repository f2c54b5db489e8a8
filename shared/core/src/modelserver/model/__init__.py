"""The runtime interface layer: ``Model``, its output table and the helpers runtimes share."""

from .base import Model
from .inputs import ModelInput, as_column, tensor_spec
from .outputs import Output, Outputs

__all__ = ["Model", "ModelInput", "Output", "Outputs", "as_column", "tensor_spec"]

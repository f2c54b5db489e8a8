"""onnxserver: ONNX models through ONNX Runtime on the modelserver core."""

from .model import ONNXModel

__all__ = ["ONNXModel"]

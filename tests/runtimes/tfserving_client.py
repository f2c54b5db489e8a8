"""A TF Serving gRPC client for the tests, built from the same protos as the server.

``tensorflow-serving-api`` does not install beside our pins (it requires the
``tensorflow`` distribution, which installs the same ``tensorflow`` module as
our ``tensorflow-cpu``), so the requests are the messages of
``modelserver.protos.tfserving`` sent over a plain grpcio channel with
TF Serving's method paths. Tensors go in and come out through TensorFlow's
own codec (``tf.make_tensor_proto`` / ``tf.make_ndarray`` on TensorFlow's
TensorProto), so what the server reads and writes is checked by TensorFlow.
"""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
from modelserver.protos import tfserving as tfs


def _tf() -> Any:
    import tensorflow as tf

    return tf


class TFServingClient:
    """PredictionService and ModelService calls by method name."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)

    def close(self) -> None:
        self.channel.close()

    def call(self, method: str, request: Any, service: str = "PredictionService") -> Any:
        descriptor = tfs.MODEL_SERVICE if service == "ModelService" else tfs.PREDICTION_SERVICE
        output = tfs.message_class(descriptor.methods_by_name[method].output_type.full_name)
        stub = self.channel.unary_unary(
            f"/tensorflow.serving.{service}/{method}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=output.FromString,
        )
        return stub(request, timeout=60)

    @staticmethod
    def spec(target: Any, model: str, version: int | None, label: str | None, signature: str):
        target.name = model
        if version is not None:
            target.version.value = version
        if label is not None:
            target.version_label = label
        target.signature_name = signature

    def predict(
        self,
        model: str,
        inputs: dict[str, Any],
        signature: str = "",
        version: int | None = None,
        label: str | None = None,
        output_filter: tuple[str, ...] = (),
    ) -> tuple[dict[str, np.ndarray], Any]:
        """Predict with numpy inputs (or ready TensorProtos); outputs as numpy, and the answer."""
        tf = _tf()
        request = tfs.PredictRequest(output_filter=list(output_filter))
        self.spec(request.model_spec, model, version, label, signature)
        for name, value in inputs.items():
            proto = value if hasattr(value, "SerializeToString") else tf.make_tensor_proto(value)
            request.inputs[name].MergeFromString(proto.SerializeToString())
        response = self.call("Predict", request)
        return {name: as_numpy(proto) for name, proto in response.outputs.items()}, response

    def examples(
        self,
        method: str,
        model: str,
        examples: list[Any],
        context: Any = None,
        signature: str = "",
    ) -> Any:
        """Classify or Regress over TensorFlow's own tf.train.Example messages."""
        request = (tfs.ClassificationRequest if method == "Classify" else tfs.RegressionRequest)()
        self.spec(request.model_spec, model, None, None, signature)
        if context is None:
            target = request.input.example_list
        else:
            target = request.input.example_list_with_context
            target.context.MergeFromString(context.SerializeToString())
        for example in examples:
            target.examples.add().MergeFromString(example.SerializeToString())
        return self.call(method, request)


def as_numpy(proto: Any) -> np.ndarray:
    """One of our TensorProtos read by TensorFlow's own parser and codec."""
    from tensorflow.core.framework import tensor_pb2

    array: np.ndarray = _tf().make_ndarray(
        tensor_pb2.TensorProto.FromString(proto.SerializeToString())
    )
    return array

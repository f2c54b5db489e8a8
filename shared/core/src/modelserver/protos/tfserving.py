"""TF Serving's gRPC message classes, built in a private descriptor pool.

The ``tensorflow`` package registers ``tensorflow.TensorProto`` and friends in
protobuf's default pool, and ``tensorflow-serving-api`` the
``tensorflow.serving`` messages; a private pool (see scripts/gen_protos.py)
lets the server share a process with either. The wire format and the full
names are TensorFlow's, so their parsers read what these classes write.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from ._tfserving_descriptor import FILE_DESCRIPTOR_SET

PREDICTION_SERVICE_NAME = "tensorflow.serving.PredictionService"
MODEL_SERVICE_NAME = "tensorflow.serving.ModelService"
#: The ``Any`` type URL of GetModelMetadataResponse.metadata["signature_def"].
SIGNATURE_DEF_MAP_URL = "type.googleapis.com/tensorflow.serving.SignatureDefMap"

_pool = descriptor_pool.DescriptorPool()
for _file in descriptor_pb2.FileDescriptorSet.FromString(FILE_DESCRIPTOR_SET).file:
    _pool.Add(_file)


def message_class(full_name: str) -> Any:
    """The class of a message of this pool by its full name."""
    return message_factory.GetMessageClass(_pool.FindMessageTypeByName(full_name))


def _serving(name: str) -> Any:
    return message_class(f"tensorflow.serving.{name}")


PREDICTION_SERVICE = _pool.FindServiceByName(PREDICTION_SERVICE_NAME)
MODEL_SERVICE = _pool.FindServiceByName(MODEL_SERVICE_NAME)

TensorProto = message_class("tensorflow.TensorProto")
TensorShapeProto = message_class("tensorflow.TensorShapeProto")
TensorInfo = message_class("tensorflow.TensorInfo")
SignatureDef = message_class("tensorflow.SignatureDef")
Example = message_class("tensorflow.Example")
Feature = message_class("tensorflow.Feature")
DataType = _pool.FindEnumTypeByName("tensorflow.DataType")
ErrorCode = _pool.FindEnumTypeByName("tensorflow.error.Code")

ModelSpec = _serving("ModelSpec")
PredictRequest = _serving("PredictRequest")
PredictResponse = _serving("PredictResponse")
Input = _serving("Input")
ClassificationRequest = _serving("ClassificationRequest")
ClassificationResponse = _serving("ClassificationResponse")
RegressionRequest = _serving("RegressionRequest")
RegressionResponse = _serving("RegressionResponse")
SignatureDefMap = _serving("SignatureDefMap")
GetModelMetadataRequest = _serving("GetModelMetadataRequest")
GetModelMetadataResponse = _serving("GetModelMetadataResponse")
GetModelStatusRequest = _serving("GetModelStatusRequest")
GetModelStatusResponse = _serving("GetModelStatusResponse")
ModelVersionStatus = _serving("ModelVersionStatus")

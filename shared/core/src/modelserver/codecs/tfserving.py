"""What TF Serving's REST and gRPC APIs share: data types, tf.Examples, results, metadata, status.

TF Serving describes everything in protobuf (its REST bodies are those
messages in JSON), so the shared pieces are built here once from the
messages of ``modelserver.protos.tfserving``: the DT_* names of our
datatypes, the serialized tf.Examples that classify and regress feed to a
signature, the classification and regression results TF Serving makes of a
signature's outputs (with its checks and its words), the SignatureDefMap of
model metadata and the ModelVersionStatus of each version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
from google.protobuf import json_format

from ..errors import InvalidInput
from ..protos import tfserving as tfs
from ..types import Tensor

#: TensorFlow's DT_* names of the Open Inference Protocol datatypes.
DATATYPE_TO_DT: dict[str, str] = {
    "FP32": "DT_FLOAT",
    "FP64": "DT_DOUBLE",
    "FP16": "DT_HALF",
    "INT8": "DT_INT8",
    "INT16": "DT_INT16",
    "INT32": "DT_INT32",
    "INT64": "DT_INT64",
    "UINT8": "DT_UINT8",
    "UINT16": "DT_UINT16",
    "UINT32": "DT_UINT32",
    "UINT64": "DT_UINT64",
    "BOOL": "DT_BOOL",
    "BYTES": "DT_STRING",
}
DT_TO_DATATYPE: dict[str, str] = {dt: datatype for datatype, dt in DATATYPE_TO_DT.items()}

PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
#: The aliases classify and regress signatures use (TF's signature_constants).
EXAMPLES_INPUT = "inputs"
CLASSES = "classes"
SCORES = "scores"
REGRESSION_OUTPUT = "outputs"
#: The one metadata field TF Serving serves.
SIGNATURE_DEF_FIELD = "signature_def"

#: Our model states as TF Serving's ModelVersionStatus states.
STATES = {"LOADING": "LOADING", "READY": "AVAILABLE", "UNAVAILABLE": "END", "FAILED": "END"}


class SpecLike(Protocol):
    """A declared tensor (``modelserver.TensorSpec``)."""

    @property
    def name(self) -> str: ...
    @property
    def datatype(self) -> str: ...
    @property
    def shape(self) -> tuple[int, ...]: ...


class SignatureLike(Protocol):
    """One signature of a model (a ``TensorModel``): what metadata and the checks read."""

    method_name: str
    signature_def: bytes
    input_specs: list[Any]
    output_specs: list[Any]


def dt_name(datatype: str) -> str:
    """TensorFlow's name of a datatype (DT_INVALID for one TF lacks)."""
    return DATATYPE_TO_DT.get(datatype, "DT_INVALID")


# -- tf.Examples (classify, regress) -------------------------------------------------


def serialized_examples(input_message: Any) -> np.ndarray:
    """The examples of a TF Serving ``Input`` as the [N] string tensor a signature takes.

    With a context, each example is the context's bytes followed by its own:
    protobuf merges the two on parsing, which is how TF Serving joins them.
    """
    kind = input_message.WhichOneof("kind")
    context = b""
    if kind == "example_list":
        examples = input_message.example_list.examples
    elif kind == "example_list_with_context":
        examples = input_message.example_list_with_context.examples
        context = input_message.example_list_with_context.context.SerializeToString()
    else:
        examples = []
    if not examples:
        raise InvalidInput("Input is empty.")
    out = np.empty(len(examples), dtype=object)
    out[:] = [context + example.SerializeToString() for example in examples]
    return out


def examples_signature(kind: str, signature: SignatureLike) -> tuple[str, list[str]]:
    """For ``classify`` or ``regress``: the input alias and the output aliases to compute.

    InvalidInput with TF Serving's words when the signature is not of that kind.
    """
    method = CLASSIFY_METHOD if kind == "classify" else REGRESS_METHOD
    noun = "classification" if kind == "classify" else "regression"
    if signature.method_name != method:
        raise InvalidInput(
            f"Expected {noun} signature method_name to be {method}. Was: {signature.method_name}"
        )
    inputs = [spec.name for spec in signature.input_specs]
    outputs = [spec.name for spec in signature.output_specs]
    if len(inputs) != 1:
        raise InvalidInput("Expected one input Tensor.")
    if EXAMPLES_INPUT not in inputs:
        raise InvalidInput(f"No {noun} inputs found in SignatureDef: inputs are {inputs}")
    if kind == "classify":
        if len(outputs) not in (1, 2):
            raise InvalidInput(f"Expected one or two output Tensors, found {len(outputs)}")
        wanted = [name for name in (CLASSES, SCORES) if name in outputs]
        if not wanted:
            raise InvalidInput(
                'Expected classification signature outputs to contain at least one of "classes" '
                f'or "scores". Outputs were: {outputs}'
            )
        return inputs[0], wanted
    if len(outputs) != 1:
        raise InvalidInput(f"Expected one output Tensor, found {len(outputs)}")
    if REGRESSION_OUTPUT not in outputs:
        raise InvalidInput(f"No regression outputs found in SignatureDef: outputs are {outputs}")
    return inputs[0], [REGRESSION_OUTPUT]


def _dims(tensor: Tensor) -> str:
    return "[" + ",".join(str(d) for d in tensor.shape) + "]"


def classifications(outputs: Mapping[str, Tensor], count: int) -> list[list[tuple[str, float]]]:
    """Per example, its (label, score) pairs from ``classes`` and ``scores`` [N, K].

    A missing ``classes`` gives empty labels and a missing ``scores`` zero
    scores, as in TF Serving's ClassificationResult.
    """
    classes, scores = outputs.get(CLASSES), outputs.get(SCORES)
    width = 0
    for tensor, datatype in ((classes, "BYTES"), (scores, "FP32")):
        if tensor is None:
            continue
        if len(tensor.shape) != 2:
            raise InvalidInput(
                f"Expected Tensor shape: [batch_size num_classes] but got {_dims(tensor)}"
            )
        if tensor.datatype != datatype:
            raise InvalidInput(
                f"Expected {tensor.name} Tensor of {dt_name(datatype)}. "
                f"Got: {dt_name(tensor.datatype)}"
            )
        if tensor.shape[0] != count:
            raise InvalidInput(
                f"Expected {tensor.name} output batch size of {count}. Got: {tensor.shape[0]}"
            )
        width = tensor.shape[1]
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise InvalidInput(
            "Tensors class and score should match in dim_size(1). "
            f"Got {classes.shape[1]} vs. {scores.shape[1]}"
        )
    labels = (
        [[_text(v) for v in row] for row in classes.data.tolist()]
        if classes is not None
        else [[""] * width for _ in range(count)]
    )
    values = (
        scores.data.astype(np.float32).tolist()
        if scores is not None
        else [[0.0] * width for _ in range(count)]
    )
    return [
        list(zip(row_labels, row_scores, strict=True))
        for row_labels, row_scores in zip(labels, values, strict=True)
    ]


def regressions(outputs: Mapping[str, Tensor], count: int) -> list[float]:
    """Per example, its value from ``outputs`` [N] or [N, 1] (FP32), as TF Serving checks it."""
    tensor = outputs[REGRESSION_OUTPUT]
    if tensor.datatype != "FP32":
        raise InvalidInput(f"Expected output Tensor of DT_FLOAT.  Got: {dt_name(tensor.datatype)}")
    shape = tensor.shape
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or shape[0] != count:
        raise InvalidInput(
            f"Expected output Tensor shape to be either [batch_size] or [batch_size, 1] "
            f"but got {_dims(tensor)}"
        )
    values: list[float] = tensor.data.reshape(-1).astype(np.float32).tolist()
    return values


def _text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


# -- metadata and status ---------------------------------------------------------------


def signature_def(signature: SignatureLike) -> Any:
    """A signature as a SignatureDef: the model's own when it has one, else from its specs."""
    message = tfs.SignatureDef()
    if signature.signature_def:
        message.ParseFromString(signature.signature_def)
        return message
    message.method_name = signature.method_name
    sides = ((message.inputs, signature.input_specs), (message.outputs, signature.output_specs))
    for target, specs in sides:
        for spec in specs:
            info = target[spec.name]
            info.name = spec.name
            info.dtype = tfs.DataType.values_by_name[dt_name(spec.datatype)].number
            for size in spec.shape:
                info.tensor_shape.dim.add(size=size)
    return message


def signature_def_map(signatures: Mapping[str, SignatureLike]) -> Any:
    """The SignatureDefMap of model metadata, signatures in name order."""
    message = tfs.SignatureDefMap()
    for name in sorted(signatures):
        message.signature_def[name].CopyFrom(signature_def(signatures[name]))
    return message


def version_status(version: str, state: str, reason: str) -> Any:
    """One ModelVersionStatus: AVAILABLE, LOADING, or END (with the reason when it failed)."""
    message = tfs.ModelVersionStatus(version=_number(version))
    message.state = tfs.ModelVersionStatus.State.Value(STATES.get(state, "UNKNOWN"))
    failed = state == "FAILED"
    message.status.error_code = tfs.ErrorCode.values_by_name["UNKNOWN" if failed else "OK"].number
    message.status.error_message = reason if failed else ""
    return message


def model_status(versions: Sequence[tuple[str, str, str]]) -> Any:
    """GetModelStatusResponse of (version, state, reason): newest first, as TF Serving lists."""
    message = tfs.GetModelStatusResponse()
    for version, state, reason in sorted(versions, key=lambda v: _number(v[0]), reverse=True):
        message.model_version_status.append(version_status(version, state, reason))
    return message


def _number(version: str) -> int:
    """A version as TF Serving's int64 (0 for a version that is not a number)."""
    return int(version) if version.isascii() and version.isdigit() else 0


def as_json_dict(message: Any) -> dict[str, Any]:
    """A message as TF Serving's REST API prints it: proto field names, every field present."""
    result: dict[str, Any] = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return result

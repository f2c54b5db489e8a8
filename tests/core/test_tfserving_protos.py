"""TF Serving's protos: private, beside TensorFlow's own, and field for field TensorFlow's.

The TensorFlow messages our service definitions carry (TensorProto,
TensorShapeProto, TensorInfo, SignatureDef, tf.Example and its features, the
DataType and error-code enums) must have TensorFlow's numbers and types, so
that every client reads them; they live in a private pool, so that the
server and ``tensorflow`` (or ``tensorflow-serving-api``) share a process.
TF Serving's own messages are checked against the field numbers of its
published protos in test_tfserving_codecs and the runtime's tests (its
Python package cannot be installed beside tensorflow-cpu).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pool
from modelserver.protos import tfserving as tfs

ROOT = Path(__file__).resolve().parents[2]

tf = pytest.importorskip("tensorflow", reason="tfserver's tensorflow-cpu is not installed")
from tensorflow.core.example import example_pb2, feature_pb2  # noqa: E402
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2  # noqa: E402
from tensorflow.core.protobuf import error_codes_pb2, meta_graph_pb2  # noqa: E402

THEIRS = [
    tensor_pb2.TensorProto,
    tensor_shape_pb2.TensorShapeProto,
    meta_graph_pb2.TensorInfo,
    meta_graph_pb2.SignatureDef,
    example_pb2.Example,
    feature_pb2.Features,
    feature_pb2.Feature,
    feature_pb2.BytesList,
    feature_pb2.FloatList,
    feature_pb2.Int64List,
]


def _signature(field: Any) -> tuple[Any, ...]:
    message = field.message_type.full_name if field.message_type else None
    enum = field.enum_type.full_name if field.enum_type else None
    oneof = field.containing_oneof.name if field.containing_oneof else None
    return (field.number, field.type, field.is_repeated, message, enum, oneof)


@pytest.mark.parametrize("theirs", THEIRS, ids=[m.DESCRIPTOR.full_name for m in THEIRS])
def test_every_field_is_tensorflows(theirs: Any) -> None:
    ours = tfs.message_class(theirs.DESCRIPTOR.full_name).DESCRIPTOR
    for field in ours.fields:
        other = theirs.DESCRIPTOR.fields_by_name.get(field.name)
        assert other is not None, f"{ours.full_name}.{field.name} is not TensorFlow's"
        assert _signature(field) == _signature(other), field.name
    for nested in ours.nested_types:
        if not nested.GetOptions().map_entry:
            mine = {f.name: _signature(f) for f in nested.fields}
            their = theirs.DESCRIPTOR.nested_types_by_name[nested.name]
            assert mine == {f.name: _signature(f) for f in their.fields if f.name in mine}


def test_enums_have_tensorflows_numbers() -> None:
    for ours, theirs in (
        (tfs.DataType, types_pb2.DataType.DESCRIPTOR),
        (tfs.ErrorCode, error_codes_pb2.Code.DESCRIPTOR),
    ):
        their_values = {v.name: v.number for v in theirs.values}
        assert {v.name: v.number for v in ours.values} == {
            name: their_values[name] for name in (v.name for v in ours.values)
        }


def test_messages_live_in_a_private_pool() -> None:
    default = descriptor_pool.Default()
    ours = tfs.TensorProto.DESCRIPTOR
    assert ours.file.pool is not default
    assert default.FindMessageTypeByName("tensorflow.TensorProto") is not ours
    assert tfs.PREDICTION_SERVICE.full_name == "tensorflow.serving.PredictionService"
    assert [m.name for m in tfs.PREDICTION_SERVICE.methods] == [
        "Classify",
        "Regress",
        "Predict",
        "GetModelMetadata",
    ]
    assert [m.name for m in tfs.MODEL_SERVICE.methods] == ["GetModelStatus"]


@pytest.mark.parametrize(
    "imports",
    [
        "import tensorflow; from modelserver.protos import tfserving",
        "from modelserver.protos import tfserving; import tensorflow",
    ],
    ids=["tensorflow-first", "modelserver-first"],
)
def test_imports_in_either_order(imports: str) -> None:
    code = (
        "import os; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'\n"
        f"{imports}\n"
        "from modelserver.protos import tfserving as ours\n"
        "from tensorflow.core.framework import tensor_pb2\n"
        "import numpy as np\n"
        "proto = tensorflow.make_tensor_proto(np.arange(6, dtype=np.float32).reshape(2, 3))\n"
        "mine = ours.TensorProto.FromString(proto.SerializeToString())\n"
        "back = tensor_pb2.TensorProto.FromString(mine.SerializeToString())\n"
        "assert tensorflow.make_ndarray(back).tolist() == [[0, 1, 2], [3, 4, 5]]\n"
        "print('ok')\n"
    )
    code = code.replace("tensorflow.make", "__import__('tensorflow').make")
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=180, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")

"""TF Serving's codecs against TensorFlow's own: TensorProto, JSON tensors, tf.Examples.

Every TensorProto the codec writes is read back by ``tf.make_ndarray`` (on
TensorFlow's own TensorProto class), every one TensorFlow writes is read by
the codec, and TensorFlow's fill rules (one value fills the shape, fewer
values are padded with the last, none means zeros) are compared with
TensorFlow's answer on the same message. The JSON decoders are total: any
body gives tensors or an InvalidInput.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import orjson
import pytest
from codec_strategies import DATATYPES, FUZZ, ROUND_TRIP, arrays, assert_same_tensor_data
from hypothesis import given
from hypothesis import strategies as st
from modelserver.codecs import tfs_grpc, tfs_rest
from modelserver.codecs import tfserving as codec
from modelserver.errors import InvalidInput
from modelserver.protos import tfserving as tfs
from modelserver.types import InferResponse, Tensor

tf = pytest.importorskip("tensorflow", reason="tfserver's tensorflow-cpu is not installed")
from tensorflow.core.example import example_pb2  # noqa: E402
from tensorflow.core.framework import tensor_pb2  # noqa: E402


def tf_reads(proto: Any) -> np.ndarray:
    """Our TensorProto as TensorFlow reads it."""
    array: np.ndarray = tf.make_ndarray(
        tensor_pb2.TensorProto.FromString(proto.SerializeToString())
    )
    return array


def ours_reads(tf_proto: Any) -> Tensor:
    return tfs_grpc.tensor_from_proto("t", tfs.TensorProto.FromString(tf_proto.SerializeToString()))


# -- TensorProto ----------------------------------------------------------------------------


@pytest.mark.parametrize("datatype", DATATYPES)
@pytest.mark.parametrize("raw", [True, False], ids=["tensor_content", "typed"])
@ROUND_TRIP
@given(data=st.data())
def test_tensorflow_reads_what_we_write(datatype: str, raw: bool, data: st.DataObject) -> None:
    arr = data.draw(arrays(datatype, json_safe=False))
    proto = tfs.TensorProto()
    tfs_grpc.tensor_to_proto(Tensor("t", datatype, arr.shape, arr), proto, raw)
    got = tf_reads(proto)
    if datatype == "BYTES":
        assert got.reshape(-1).tolist() == arr.reshape(-1).tolist()
        assert got.shape == arr.shape
    else:
        assert_same_tensor_data(arr, got, datatype, exact_nan=raw)


@pytest.mark.parametrize("datatype", DATATYPES)
@ROUND_TRIP
@given(data=st.data())
def test_we_read_what_tensorflow_writes(datatype: str, data: st.DataObject) -> None:
    arr = data.draw(arrays(datatype, json_safe=False))
    tensor = ours_reads(tf.make_tensor_proto(arr))
    assert tensor.datatype == datatype
    assert tensor.shape == arr.shape
    assert_same_tensor_data(arr, tensor.data, datatype, exact_nan=True)


@pytest.mark.parametrize("values", [[], [2.5], [1.0, 2.0], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
def test_typed_fields_fill_the_shape_as_tensorflow_does(values: list[float]) -> None:
    proto = tensor_pb2.TensorProto(dtype=1, float_val=values)
    for size in (2, 3):
        proto.tensor_shape.dim.add(size=size)
    np.testing.assert_array_equal(ours_reads(proto).data, tf.make_ndarray(proto))


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda p: p.float_val.extend([1.0] * 7), "holds 7 values"),
        (lambda p: setattr(p, "tensor_content", b"\x00" * 5), "needs 24 bytes"),
        (lambda p: setattr(p, "dtype", 8), "DT_COMPLEX64 is not supported"),
        (lambda p: setattr(p, "dtype", 99), "dtype 99 is not supported"),
        (lambda p: p.tensor_shape.dim.add(size=-1), "negative dimension"),
        (lambda p: setattr(p.tensor_shape, "unknown_rank", True), "unknown rank"),
    ],
)
def test_bad_tensor_protos_are_invalid_input(build: Any, reason: str) -> None:
    proto = tfs.TensorProto(dtype=1)
    for size in (2, 3):
        proto.tensor_shape.dim.add(size=size)
    build(proto)
    with pytest.raises(InvalidInput, match=reason):
        tfs_grpc.tensor_from_proto("t", proto)


def test_narrow_integers_out_of_range_are_refused() -> None:
    proto = tfs.TensorProto(dtype=tfs.DataType.values_by_name["DT_INT8"].number, int_val=[300])
    proto.tensor_shape.dim.add(size=1)
    with pytest.raises(InvalidInput, match="outside"):
        tfs_grpc.tensor_from_proto("t", proto)


# -- REST JSON ------------------------------------------------------------------------------

SPECS = {"x": "FP32", "n": "INT64", "s": "BYTES", "b": "BOOL"}


def _decode(body: Any, specs: dict[str, str] = SPECS) -> tfs_rest.PredictBody:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return tfs_rest.decode_predict(raw, lambda name: specs)


def test_rows_and_columns_give_the_same_tensors() -> None:
    rows = [
        {"x": [1.5, 2.0], "n": 3, "s": "a", "b": True},
        {"x": [0.0, -1.0], "n": -4, "s": {"b64": base64.b64encode(b"\xff").decode()}, "b": False},
    ]
    columns = {
        "x": [[1.5, 2.0], [0.0, -1.0]],
        "n": [3, -4],
        "s": ["a", {"b64": "/w=="}],
        "b": [True, False],
    }
    by_rows, by_columns = _decode({"instances": rows}), _decode({"inputs": columns})
    assert by_rows.rows and not by_columns.rows
    for a, b in zip(by_rows.inputs, by_columns.inputs, strict=True):
        assert (a.name, a.datatype, a.shape) == (b.name, b.datatype, b.shape)
        assert a.data.tolist() == b.data.tolist()
    strings = {t.name: t for t in by_rows.inputs}["s"].data
    assert strings.tolist() == [b"a", b"\xff"]
    assert {t.name: t for t in by_rows.inputs}["x"].data.dtype == np.float32


def test_one_input_takes_a_plain_list_and_a_scalar() -> None:
    specs = {"x": "FP32"}
    assert _decode({"instances": [1.0, 2.0]}, specs).inputs[0].shape == (2,)
    assert _decode({"inputs": 3.5}, specs).inputs[0].shape == ()
    assert _decode({"inputs": {"b64": "YQ=="}}, {"s": "BYTES"}).inputs[0].data.tolist() == b"a"


def test_nan_and_infinity_are_accepted() -> None:
    got = _decode(b'{"inputs": [NaN, Infinity, -Infinity, 1]}', {"x": "FP32"}).inputs[0].data
    assert np.isnan(got[0]) and got[1] == np.inf and got[2] == -np.inf


def test_numbers_beyond_float32_are_refused_infinity_is_not() -> None:
    with pytest.raises(InvalidInput, match="without loss of precision"):
        _decode(b'{"inputs": [1.0, 1e39]}', {"x": "FP32"})
    with pytest.raises(InvalidInput, match="without loss of precision"):
        _decode(b'{"inputs": [[70000.0]]}', {"x": "FP16"})
    assert _decode(b'{"inputs": [-Infinity, 3.4e38]}', {"x": "FP32"}).inputs[0].data[0] == -np.inf


def _response(*tensors: Tensor) -> InferResponse:
    return InferResponse("m", list(tensors))


def test_outputs_in_rows_and_columns() -> None:
    y = Tensor("y", "FP32", (2, 2), np.array([[0.1, 2.0], [3.0, 4.0]], dtype=np.float32))
    k = Tensor("k", "INT64", (2,), np.array([5, 6]))
    assert json.loads(tfs_rest.encode_predict(_response(y), rows=True)) == {
        "predictions": [[0.1, 2.0], [3.0, 4.0]]
    }
    assert json.loads(tfs_rest.encode_predict(_response(y, k), rows=True)) == {
        "predictions": [{"y": [0.1, 2.0], "k": 5}, {"y": [3.0, 4.0], "k": 6}]
    }
    assert json.loads(tfs_rest.encode_predict(_response(y, k), rows=False)) == {
        "outputs": {"y": [[0.1, 2.0], [3.0, 4.0]], "k": [5, 6]}
    }
    # float32 values keep their shortest form, as TF Serving writes them.
    assert b"0.1," in tfs_rest.encode_predict(_response(y), rows=True)


def test_string_outputs_and_the_bytes_suffix() -> None:
    data = np.array([b"caf\xc3\xa9", b"\xff\x00"], dtype=object)
    text = json.loads(tfs_rest.encode_predict(_response(Tensor("t", "BYTES", (2,), data)), True))
    assert text == {"predictions": ["caf\u00e9", {"b64": "/wA="}]}
    raw = json.loads(
        tfs_rest.encode_predict(_response(Tensor("t_bytes", "BYTES", (2,), data)), True)
    )
    assert raw == {"predictions": [{"b64": "Y2Fmw6k="}, {"b64": "/wA="}]}


def test_non_finite_outputs_are_written_as_tf_serving_writes_them() -> None:
    y = Tensor("y", "FP32", (3,), np.array([np.nan, np.inf, 0.1], dtype=np.float32))
    body = tfs_rest.encode_predict(_response(y), rows=False)
    assert body == b'{"outputs":[NaN,Infinity,0.1]}'


def test_rows_need_one_batch_size() -> None:
    a = Tensor("a", "FP32", (2,), np.zeros(2, np.float32))
    b = Tensor("b", "FP32", (3,), np.zeros(3, np.float32))
    with pytest.raises(InvalidInput, match="inconsistent batch size"):
        tfs_rest.encode_predict(_response(a, b), rows=True)
    scalar = Tensor("s", "FP32", (), np.zeros((), np.float32))
    with pytest.raises(InvalidInput, match="no shape information"):
        tfs_rest.encode_predict(_response(scalar), rows=True)
    assert json.loads(tfs_rest.encode_predict(_response(scalar), rows=False)) == {"outputs": 0.0}


@FUZZ
@given(
    body=st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=4)),
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.dictionaries(
                st.sampled_from(["instances", "inputs", "signature_name", "x", "s", "b64", "n"]),
                children,
                max_size=3,
            ),
        ),
        max_leaves=12,
    )
)
def test_predict_decoding_is_total(body: Any) -> None:
    raw = json.dumps(body).encode()
    try:
        decoded = _decode(raw, {"x": "FP32", "s": "BYTES"})
    except InvalidInput:
        return
    assert all(isinstance(t.data, np.ndarray) for t in decoded.inputs)


# -- tf.Examples ------------------------------------------------------------------------------


def test_json_examples_are_tensorflows_examples() -> None:
    body = {
        "context": {"query": "pizza"},
        "examples": [
            {"x": 1.5, "ids": [1, 2], "flag": True, "image": {"b64": "AAE="}},
            {"x": [0.25, 2.0], "ids": 7},
        ],
    }
    decoded = tfs_rest.decode_examples(orjson.dumps(body), "classify")
    serialized = codec.serialized_examples(decoded.input)
    context = tf.train.Example(
        features=tf.train.Features(
            feature={"query": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"pizza"]))}
        )
    )
    want = [
        {
            "x": tf.train.Feature(float_list=tf.train.FloatList(value=[1.5])),
            "ids": tf.train.Feature(int64_list=tf.train.Int64List(value=[1, 2])),
            "flag": tf.train.Feature(int64_list=tf.train.Int64List(value=[1])),
            "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"\x00\x01"])),
        },
        {
            "x": tf.train.Feature(float_list=tf.train.FloatList(value=[0.25, 2.0])),
            "ids": tf.train.Feature(int64_list=tf.train.Int64List(value=[7])),
        },
    ]
    for got, features in zip(serialized, want, strict=True):
        example = tf.train.Example(features=tf.train.Features(feature=features))
        example.MergeFrom(context)  # each example carries the context's features
        assert example_pb2.Example.FromString(got) == example


@FUZZ
@given(
    body=st.dictionaries(
        st.sampled_from(["examples", "context", "signature_name"]),
        st.recursive(
            st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=4)),
            lambda c: st.one_of(
                st.lists(c, max_size=3), st.dictionaries(st.text(max_size=3), c, max_size=3)
            ),
            max_leaves=10,
        ),
    )
)
def test_examples_decoding_is_total(body: dict[str, Any]) -> None:
    try:
        decoded = tfs_rest.decode_examples(json.dumps(body).encode(), "regress")
        codec.serialized_examples(decoded.input)
    except InvalidInput:
        return


def test_classification_and_regression_checks() -> None:
    classes = Tensor("classes", "BYTES", (1, 2), np.array([[b"a", b"b"]], dtype=object))
    scores = Tensor("scores", "FP32", (1, 2), np.array([[0.25, 0.75]], dtype=np.float32))
    assert codec.classifications({"classes": classes, "scores": scores}, 1) == [
        [("a", 0.25), ("b", 0.75)]
    ]
    assert codec.classifications({"scores": scores}, 1) == [[("", 0.25), ("", 0.75)]]
    assert codec.classifications({"classes": classes}, 1) == [[("a", 0.0), ("b", 0.0)]]
    with pytest.raises(InvalidInput, match="batch size of 2"):
        codec.classifications({"scores": scores}, 2)
    flat = Tensor("outputs", "FP32", (2,), np.array([1.0, 2.0], np.float32))
    column = Tensor("outputs", "FP32", (2, 1), np.array([[1.0], [2.0]], np.float32))
    assert codec.regressions({"outputs": flat}, 2) == codec.regressions({"outputs": column}, 2)
    wide = Tensor("outputs", "FP32", (2, 2), np.zeros((2, 2), np.float32))
    with pytest.raises(InvalidInput, match=r"\[batch_size\] or \[batch_size, 1\]"):
        codec.regressions({"outputs": wide}, 2)

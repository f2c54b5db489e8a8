"""Open Inference Protocol v2 over gRPC: round trips, errors, and totality fuzzing."""

from __future__ import annotations

import math
import struct
import tracemalloc
from typing import Any

import numpy as np
import pytest
from codec_strategies import (
    DATATYPES,
    EXPECTED_DTYPE,
    FUZZ,
    ROUND_TRIP,
    arrays,
    assert_same_tensor_data,
    huge_dims,
    mixed_shapes,
    object_array,
    tensors,
)
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st
from modelserver import protos as pb
from modelserver.codecs import v2_grpc
from modelserver.errors import InvalidInput
from modelserver.types import InferResponse, Tensor

#: The typed field each datatype travels in, written out from the specification.
TYPED_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
CONTENT_FIELDS = sorted(set(TYPED_FIELD.values()))

grpc_params = st.dictionaries(
    st.text(min_size=1, max_size=6),
    st.one_of(
        st.booleans(),
        st.integers(-(2**63), 2**64 - 1),
        st.floats(allow_nan=False),  # infinities are fine in a protobuf double
        st.text(max_size=6),
    ),
    max_size=3,
)


def typed(params: dict[str, Any]) -> dict[str, tuple[type, Any]]:
    """Parameters with their types, so True and 1 do not compare equal."""
    return {k: (type(v), v) for k, v in params.items()}


def response_to_request(msg: Any) -> Any:
    """The request a client would build from a response, sent through the wire format."""
    req = pb.ModelInferRequest(
        model_name=msg.model_name, model_version=msg.model_version, id=msg.id
    )
    for key, value in msg.parameters.items():
        req.parameters[key].CopyFrom(value)
    for out in msg.outputs:
        inp = req.inputs.add(name=out.name, datatype=out.datatype, shape=out.shape)
        for key, value in out.parameters.items():
            inp.parameters[key].CopyFrom(value)
        if out.HasField("contents"):
            inp.contents.CopyFrom(out.contents)
    req.raw_input_contents.extend(msg.raw_output_contents)
    return pb.ModelInferRequest.FromString(req.SerializeToString())


def check_round_trip(outs: list[Tensor], raw: bool, data: st.DataObject) -> None:
    response_id = data.draw(st.text(max_size=5))
    response = InferResponse(
        "m", outs, id=response_id, model_version="7", parameters=data.draw(grpc_params)
    )

    msg = v2_grpc.encode_infer_response(response, raw=raw)

    expect_raw = raw or any(t.datatype == "FP16" for t in outs)
    assert msg.model_name == "m"
    assert msg.model_version == "7"
    assert msg.id == response_id
    assert [o.name for o in msg.outputs] == [t.name for t in outs]
    assert [list(o.shape) for o in msg.outputs] == [list(t.shape) for t in outs]
    assert [o.datatype for o in msg.outputs] == [t.datatype for t in outs]
    if expect_raw:
        assert len(msg.raw_output_contents) == len(outs)
        assert not any(o.HasField("contents") for o in msg.outputs)
    else:
        assert len(msg.raw_output_contents) == 0
        for o, t in zip(msg.outputs, outs, strict=True):
            for field in CONTENT_FIELDS:
                want = t.data.size if field == TYPED_FIELD[t.datatype] else 0
                assert len(getattr(o.contents, field)) == want, (t.datatype, field)

    request = v2_grpc.decode_infer_request(response_to_request(msg))

    assert request.model_name == "m"
    assert request.model_version == "7"
    assert request.id == (response_id or None)
    assert typed(request.parameters) == typed(response.parameters)
    assert [t.name for t in request.inputs] == [t.name for t in outs]
    for got, want in zip(request.inputs, outs, strict=True):
        assert got.datatype == want.datatype
        assert got.shape == tuple(want.shape)
        assert typed(got.parameters) == typed(want.parameters)
        # Typed fp32/fp64 fields go through Python floats: NaN payloads may change.
        assert_same_tensor_data(want.data, got.data, want.datatype, exact_nan=expect_raw)


@ROUND_TRIP
@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
@pytest.mark.parametrize("datatype", DATATYPES)
@given(data=st.data())
def test_round_trip_every_datatype(datatype: str, raw: bool, data: st.DataObject) -> None:
    tensor = data.draw(tensors("out", datatype, json_safe=False))
    tensor.parameters = data.draw(grpc_params)
    check_round_trip([tensor], raw, data)


@settings(ROUND_TRIP, max_examples=150)
@given(data=st.data(), raw=st.booleans())
def test_round_trip_several_outputs(data: st.DataObject, raw: bool) -> None:
    names = data.draw(
        st.lists(st.text(min_size=1, max_size=4), min_size=1, max_size=4, unique=True)
    )
    outs = [data.draw(tensors(name, json_safe=False)) for name in names]
    check_round_trip(outs, raw, data)


def test_fp16_forces_raw_for_the_whole_response() -> None:
    outs = [
        Tensor("h", "FP16", (1,), np.array([1.5], dtype=np.float16)),
        Tensor("i", "INT32", (2,), np.array([1, 2], dtype=np.int32)),
    ]
    msg = v2_grpc.encode_infer_response(InferResponse("m", outs), raw=False)
    assert list(msg.raw_output_contents) == [struct.pack("<e", 1.5), struct.pack("<2i", 1, 2)]
    assert not msg.outputs[1].HasField("contents")


def test_typed_response_by_hand() -> None:
    outs = [
        Tensor("b", "BYTES", (2,), object_array([b"x", "é"], (2,))),
        Tensor("u", "UINT8", (2, 1), np.array([[0], [255]], dtype=np.uint8)),
    ]
    msg = v2_grpc.encode_infer_response(InferResponse("m", outs, id="r9"), raw=False)
    assert msg.id == "r9"
    assert list(msg.outputs[0].contents.bytes_contents) == [b"x", "é".encode()]
    assert list(msg.outputs[1].contents.uint_contents) == [0, 255]
    assert list(msg.outputs[1].shape) == [2, 1]
    assert len(msg.raw_output_contents) == 0


def test_empty_id_is_left_unset() -> None:
    msg = v2_grpc.encode_infer_response(
        InferResponse("m", [Tensor("x", "BOOL", (0,), np.zeros(0, bool))], id=None)
    )
    assert msg.id == ""
    assert msg.model_version == ""


def test_parameters_to_proto_choices() -> None:
    msg = pb.ModelInferResponse()
    v2_grpc.parameters_to_proto(
        msg.parameters, {"b": True, "i": -5, "big": 2**63, "f": 0.25, "s": "v"}
    )
    which = {k: v.WhichOneof("parameter_choice") for k, v in msg.parameters.items()}
    assert which == {
        "b": "bool_param",
        "i": "int64_param",
        "big": "uint64_param",
        "f": "double_param",
        "s": "string_param",
    }
    assert v2_grpc.parameters_from_proto(msg.parameters) == {
        "b": True,
        "i": -5,
        "big": 2**63,
        "f": 0.25,
        "s": "v",
    }


def test_parameter_without_a_value_is_none() -> None:
    msg = pb.ModelInferRequest()
    msg.parameters["empty"].SetInParent()
    assert v2_grpc.parameters_from_proto(msg.parameters) == {"empty": None}


# -- decoding requests ---------------------------------------------------------------------


def request(*inputs: dict[str, Any], raw: list[bytes] | None = None, **fields: Any) -> Any:
    msg = pb.ModelInferRequest(model_name="m", **fields)
    for item in inputs:
        item = dict(item)
        contents = item.pop("contents", None)
        t = msg.inputs.add(**item)
        if contents:
            for field, values in contents.items():
                getattr(t.contents, field).extend(values)
    if raw is not None:
        msg.raw_input_contents.extend(raw)
    return msg


def test_decode_typed_request_with_everything() -> None:
    msg = request(
        {
            "name": "a",
            "datatype": "INT16",
            "shape": [2, 2],
            "contents": {"int_contents": [1, -2, 3, -32768]},
        },
        {"name": "s", "datatype": "BYTES", "shape": [1], "contents": {"bytes_contents": [b"q"]}},
        id="rid",
        model_version="3",
    )
    msg.parameters["p"].int64_param = 4
    msg.inputs[0].parameters["content_type"].string_param = "np"
    out = msg.outputs.add(name="y")
    out.parameters["binary_data"].bool_param = True

    req = v2_grpc.decode_infer_request(msg)

    assert (req.model_name, req.model_version, req.id) == ("m", "3", "rid")
    assert req.parameters == {"p": 4}
    assert [(o.name, o.parameters) for o in req.outputs] == [("y", {"binary_data": True})]
    a, s = req.inputs
    assert a.data.dtype == np.int16
    assert a.data.tolist() == [[1, -2], [3, -32768]]
    assert a.parameters == {"content_type": "np"}
    assert s.data.tolist() == [b"q"]


def test_decode_raw_request() -> None:
    msg = request(
        {"name": "a", "datatype": "FP16", "shape": [2]},
        {"name": "b", "datatype": "BYTES", "shape": [2]},
        raw=[struct.pack("<2e", 0.5, -2.0), b"\x01\x00\x00\x00z\x00\x00\x00\x00"],
    )
    a, b = v2_grpc.decode_infer_request(msg).inputs
    assert a.data.dtype == np.float16
    assert a.data.tolist() == [0.5, -2.0]
    assert b.data.tolist() == [b"z", b""]
    req = v2_grpc.decode_infer_request(
        request({"name": "a", "datatype": "INT8", "shape": [1]}, raw=[b"\xff"])
    )
    assert req.id is None
    assert req.model_version is None
    assert req.outputs is None
    assert req.inputs[0].data.tolist() == [-1]


BAD_REQUESTS: dict[str, tuple[Any, str]] = {
    "no inputs": (request(), "at least one input"),
    "no name": (
        request({"datatype": "FP32", "shape": [1], "contents": {"fp32_contents": [1]}}),
        "must have a name",
    ),
    "duplicate names": (
        request(
            {"name": "a", "datatype": "INT64", "shape": [1], "contents": {"int64_contents": [1]}},
            {"name": "a", "datatype": "INT64", "shape": [1], "contents": {"int64_contents": [2]}},
        ),
        "more than once",
    ),
    "unknown datatype": (
        request({"name": "a", "datatype": "FLOAT", "shape": [1]}),
        "unsupported datatype",
    ),
    "empty datatype": (request({"name": "a", "shape": [1]}), "unsupported datatype"),
    "negative dim": (request({"name": "a", "datatype": "FP32", "shape": [-1]}), "negative"),
    "too many dims": (
        request({"name": "a", "datatype": "FP32", "shape": [1] * 33}),
        "more than 32",
    ),
    "fewer values than shape": (
        request(
            {"name": "a", "datatype": "FP32", "shape": [3], "contents": {"fp32_contents": [1, 2]}}
        ),
        "has 2",
    ),
    "more values than shape": (
        request(
            {"name": "a", "datatype": "FP64", "shape": [1], "contents": {"fp64_contents": [1, 2]}}
        ),
        "has 2",
    ),
    "values in the wrong field": (
        request(
            {"name": "a", "datatype": "FP32", "shape": [1], "contents": {"fp64_contents": [1]}}
        ),
        "has 0",
    ),
    "typed FP16": (
        request(
            {"name": "a", "datatype": "FP16", "shape": [1], "contents": {"fp32_contents": [1]}}
        ),
        "raw_input_contents",
    ),
    "256 for UINT8": (
        request(
            {"name": "a", "datatype": "UINT8", "shape": [1], "contents": {"uint_contents": [256]}}
        ),
        "outside \\[0, 255\\]",
    ),
    "70000 for UINT16": (
        request(
            {
                "name": "a",
                "datatype": "UINT16",
                "shape": [1],
                "contents": {"uint_contents": [70000]},
            }
        ),
        "outside",
    ),
    "-129 for INT8": (
        request(
            {"name": "a", "datatype": "INT8", "shape": [2], "contents": {"int_contents": [0, -129]}}
        ),
        "outside",
    ),
    "40000 for INT16": (
        request(
            {"name": "a", "datatype": "INT16", "shape": [1], "contents": {"int_contents": [40000]}}
        ),
        "outside",
    ),
    "raw count below inputs": (
        request(
            {"name": "a", "datatype": "INT8", "shape": [1]},
            {"name": "b", "datatype": "INT8", "shape": [1]},
            raw=[b"\x00"],
        ),
        "1 entries for 2 inputs",
    ),
    "raw count above inputs": (
        request({"name": "a", "datatype": "INT8", "shape": [1]}, raw=[b"\x00", b"\x00"]),
        "2 entries for 1 inputs",
    ),
    "contents and raw": (
        request(
            {"name": "a", "datatype": "INT8", "shape": [1], "contents": {"int_contents": [1]}},
            raw=[b"\x01"],
        ),
        "both contents and raw",
    ),
    "raw size disagrees": (
        request({"name": "a", "datatype": "FP32", "shape": [2]}, raw=[b"\x00" * 4]),
        "needs 8 bytes, got 4",
    ),
    "raw trailing byte": (
        request({"name": "a", "datatype": "INT16", "shape": [1]}, raw=[b"\x00" * 3]),
        "needs 2 bytes, got 3",
    ),
    "raw BYTES count disagrees": (
        request({"name": "a", "datatype": "BYTES", "shape": [2]}, raw=[b"\x00\x00\x00\x00"]),
        "expected 2 BYTES",
    ),
    "raw BYTES truncated": (
        request({"name": "a", "datatype": "BYTES", "shape": [1]}, raw=[b"\x09\x00\x00\x00abc"]),
        "runs past",
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_invalid_requests(case: str) -> None:
    msg, match = BAD_REQUESTS[case]
    with pytest.raises(InvalidInput, match=match):
        v2_grpc.decode_infer_request(msg)


@pytest.mark.parametrize(
    ("shape", "raw", "contents"),
    [
        ([2**40, 2**40], None, {"fp32_contents": [1.0, 2.0]}),
        ([2**28], None, {"fp64_contents": [1.0]}),
        ([2**28], None, {"bytes_contents": [b"a"]}),
        ([2**31, 2**31, 2**31], [b"\x00" * 8], None),
        ([2**28], [b"\x00\x00\x00\x00"], None),
    ],
)
def test_huge_shape_fails_fast(
    shape: list[int], raw: list[bytes] | None, contents: dict[str, list[Any]] | None
) -> None:
    datatype = (
        {"fp32_contents": "FP32", "fp64_contents": "FP64", "bytes_contents": "BYTES"}[
            next(iter(contents))
        ]
        if contents
        else "BYTES"
    )
    msg = request(
        {"name": "a", "datatype": datatype, "shape": shape, "contents": contents}, raw=raw
    )
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInput):
            v2_grpc.decode_infer_request(msg)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


@pytest.mark.parametrize(
    ("datatype", "shape", "raw"),
    [
        ("FP64", [0, 2**62], False),
        ("BYTES", [2**62, 0], False),
        ("UINT8", [0, 2**62, 2**62], True),
        ("FP16", [0, 2**63 - 1], True),
    ],
)
def test_zero_size_shape_with_huge_dims_grpc(datatype: str, shape: list[int], raw: bool) -> None:
    msg = request({"name": "a", "datatype": datatype, "shape": shape}, raw=[b""] if raw else None)
    with pytest.raises(InvalidInput):
        v2_grpc.decode_infer_request(msg)


@pytest.mark.parametrize(("datatype", "raw"), [("FP64", False), ("INT64", True), ("BYTES", False)])
def test_zero_size_shape_at_the_extent_limit_grpc(datatype: str, raw: bool) -> None:
    msg = request(
        {"name": "a", "datatype": datatype, "shape": [0, 2**60]}, raw=[b""] if raw else None
    )
    try:
        req = v2_grpc.decode_infer_request(msg)
    except InvalidInput:
        return
    assert req.inputs[0].data.shape == (0, 2**60)


def test_zero_size_shapes_that_numpy_can_hold_decode() -> None:
    for raw in (None, [b""]):
        msg = request({"name": "a", "datatype": "FP32", "shape": [0, 2**40]}, raw=raw)
        assert v2_grpc.decode_infer_request(msg).inputs[0].data.shape == (0, 2**40)


# -- totality fuzzing ------------------------------------------------------------------------

grpc_dims = st.one_of(
    st.integers(0, 3),
    st.integers(-3, -1),
    st.sampled_from([2**31, 2**32, 2**40, 2**62, 2**63 - 1, -(2**63)]),
    st.integers(-(2**63), 2**63 - 1),
)
FIELD_VALUES = {
    "bool_contents": st.booleans(),
    "int_contents": st.integers(-(2**31), 2**31 - 1),
    "int64_contents": st.integers(-(2**63), 2**63 - 1),
    "uint_contents": st.integers(0, 2**32 - 1),
    "uint64_contents": st.integers(0, 2**64 - 1),
    "fp32_contents": st.floats(width=32),
    "fp64_contents": st.floats(),
    "bytes_contents": st.binary(max_size=6),
}


@st.composite
def infer_requests(draw: st.DrawFn) -> Any:
    """ModelInferRequests from consistent to random, field by field.

    Hypothesis favours the first of several choices, so each ``sampled_from``
    lists the well-formed choice first: most messages get deep into decoding.
    """
    msg = pb.ModelInferRequest(
        model_name=draw(st.text(max_size=3)),
        model_version=draw(st.text(max_size=2)),
        id=draw(st.text(max_size=3)),
    )
    for key, value in draw(grpc_params).items():
        v2_grpc.parameters_to_proto(msg.parameters, {key: value})
    use_raw = draw(st.booleans())
    raws: list[bytes] = []
    names = draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=3, max_size=3, unique=True))
    for index in range(draw(st.sampled_from([1, 2, 3, 1, 2, 3, 0]))):
        broken = draw(st.sets(st.sampled_from(["shape", "contents", "datatype", "name"])))
        t = msg.inputs.add(
            name=draw(st.sampled_from(["a", ""]) | st.text()) if "name" in broken else names[index],
            datatype=draw(
                st.sampled_from(["", "FP8", "fp32", "STRING", *DATATYPES]) | st.text(max_size=4)
            )
            if "datatype" in broken
            else draw(st.sampled_from(DATATYPES)),
        )
        if "shape" not in broken:
            shape = draw(st.lists(st.integers(0, 3), max_size=3))
        else:
            shape = draw(
                st.lists(grpc_dims, max_size=4) | mixed_shapes(st.integers(0, 2), huge_dims)
            )
        t.shape.extend(shape)
        small = all(0 <= d <= 3 for d in shape)
        count = math.prod(shape) if small else 0
        if use_raw:
            if small and t.datatype in EXPECTED_DTYPE and draw(st.sampled_from([True, False])):
                arr = draw(
                    arrays(t.datatype, json_safe=False, shape=tuple(shape), any_layout=False)
                )
                if t.datatype == "BYTES":
                    raws.append(b"".join(struct.pack("<I", len(b)) + b for b in arr.reshape(-1)))
                else:
                    raws.append(arr.tobytes())
            else:
                raws.append(draw(st.binary(max_size=24)))
        if not use_raw or draw(st.integers(0, 9)) == 0:
            if small and t.datatype in TYPED_FIELD and draw(st.sampled_from([True, False])):
                field = TYPED_FIELD[t.datatype]
                values = draw(st.lists(FIELD_VALUES[field], min_size=count, max_size=count))
                getattr(t.contents, field).extend(values)
            if "contents" in broken:
                for field in draw(st.lists(st.sampled_from(CONTENT_FIELDS), max_size=2)):
                    getattr(t.contents, field).extend(
                        draw(st.lists(FIELD_VALUES[field], max_size=3))
                    )
        for key, value in draw(grpc_params).items():
            v2_grpc.parameters_to_proto(t.parameters, {key: value})
    if use_raw:
        extra = draw(st.sampled_from([0, 0, 0, -1, 1]))
        raws = raws[: max(0, len(raws) + extra)] if extra < 0 else raws + [b""] * extra
        msg.raw_input_contents.extend(raws)
    for name in draw(st.lists(st.text(max_size=3), max_size=2)):
        msg.outputs.add(name=name)
    return msg


def assert_total(msg: Any) -> None:
    try:
        req = v2_grpc.decode_infer_request(msg)
    except InvalidInput as exc:
        assert exc.message
        return
    assert req.inputs
    assert len({t.name for t in req.inputs}) == len(req.inputs)
    for tensor, source in zip(req.inputs, msg.inputs, strict=True):
        assert tensor.name == source.name
        assert tensor.shape == tuple(source.shape)
        assert tensor.data.shape == tensor.shape
        assert tensor.data.dtype == EXPECTED_DTYPE[tensor.datatype]
        if tensor.datatype == "BYTES":
            assert all(isinstance(x, bytes) for x in tensor.data.reshape(-1))


@FUZZ
@given(msg=infer_requests())
def test_total_on_random_messages(msg: Any) -> None:
    assert_total(msg)


@FUZZ
@given(
    datatype=st.sampled_from(DATATYPES),
    shape=st.lists(grpc_dims, max_size=4) | mixed_shapes(st.integers(0, 2), huge_dims),
    values=st.integers(0, 2),
    raw=st.sampled_from([None, b"", b"\x00" * 8]),
)
def test_total_on_declared_shapes(
    datatype: str, shape: list[int], values: int, raw: bytes | None
) -> None:
    """Any declared shape against a little data: huge, overflowing, zero-size, negative."""
    msg = request(
        {"name": "x", "datatype": datatype, "shape": shape}, raw=None if raw is None else [raw]
    )
    if raw is None and datatype in TYPED_FIELD:
        getattr(msg.inputs[0].contents, TYPED_FIELD[datatype]).extend(
            [b"a" if datatype == "BYTES" else True if datatype == "BOOL" else 1] * values
        )
    assert_total(msg)


@FUZZ
@given(data=st.binary(max_size=200))
def test_total_on_random_wire_bytes(data: bytes) -> None:
    try:
        msg = pb.ModelInferRequest.FromString(data)
    except DecodeError:
        return
    assert_total(msg)


@FUZZ
@given(msg=infer_requests(), data=st.data())
def test_total_on_corrupted_wire_bytes(msg: Any, data: st.DataObject) -> None:
    wire = bytearray(msg.SerializeToString())
    for _ in range(data.draw(st.integers(1, 4))):
        where = data.draw(st.integers(0, len(wire)))
        action = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if action == "flip" and where < len(wire):
            wire[where] ^= data.draw(st.integers(1, 255))
        elif action == "insert":
            wire[where:where] = data.draw(st.binary(min_size=1, max_size=4))
        elif action == "delete":
            del wire[where : where + data.draw(st.integers(1, 4))]
        else:
            del wire[where:]
    try:
        parsed = pb.ModelInferRequest.FromString(bytes(wire))
    except DecodeError:
        return
    assert_total(parsed)


def test_decode_does_not_touch_request_fields_it_does_not_own() -> None:
    msg = request(
        {
            "name": "a",
            "datatype": "UINT32",
            "shape": [1],
            "contents": {"uint_contents": [2**32 - 1]},
        }
    )
    before = msg.SerializeToString()
    req = v2_grpc.decode_infer_request(msg)
    assert req.inputs[0].data.tolist() == [2**32 - 1]
    assert msg.SerializeToString() == before

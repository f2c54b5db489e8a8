"""Open Inference Protocol v2 over REST: round trips, errors, and totality fuzzing."""

from __future__ import annotations

import struct
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.http as httpclient
from codec_strategies import (
    DATATYPES,
    EXPECTED_DTYPE,
    FUZZ,
    ROUND_TRIP,
    arrays,
    assert_same_tensor_data,
    json_values,
    object_array,
    param_dicts,
    tensors,
    to_json_bytes,
    weird_datatypes,
    weird_shapes,
    weird_sizes,
    weird_values,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from modelserver.codecs import v2_rest
from modelserver.errors import InvalidInput
from modelserver.types import InferRequest, InferResponse, RequestedOutput, Tensor


def decode(body: bytes, header: str | int | None = None) -> InferRequest:
    """Decode as the REST transport does: header value first, then the body."""
    length = v2_rest.parse_header_length(None if header is None else str(header), len(body))
    return v2_rest.decode_infer_request(body, length, "m", None)


def body_of(*inputs: dict[str, Any], **top: Any) -> bytes:
    return to_json_bytes({"inputs": list(inputs), **top})


def as_request(body: bytes, header_length: int | None) -> bytes:
    """An encoded response turned into the request a client would send back.

    Only the key ``"outputs":`` changes, to ``"inputs": `` of the same length,
    so the encoder's header length must still be exactly right. The pattern
    cannot occur inside a JSON string (quotes there are escaped), and the
    tests keep "outputs" out of every parameter dict that comes before it.
    """
    end = len(body) if header_length is None else header_length
    header = body[:end]
    assert b'"outputs":' in header
    return header.replace(b'"outputs":', b'"inputs": ', 1) + body[end:]


def assert_decodes_to(request: InferRequest, expected: list[Tensor], *, exact_nan: bool) -> None:
    assert [t.name for t in request.inputs] == [t.name for t in expected]
    for got, want in zip(request.inputs, expected, strict=True):
        assert got.datatype == want.datatype
        assert got.shape == tuple(want.shape)
        assert got.parameters == want.parameters
        assert_same_tensor_data(want.data, got.data, want.datatype, exact_nan=exact_nan)


json_params = st.dictionaries(
    st.text(min_size=1, max_size=6).filter(
        lambda k: k not in ("binary_data_size", "binary_data", "binary_data_output", "outputs")
    ),
    st.one_of(
        st.booleans(),
        st.integers(-(2**63), 2**64 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=6),
    ),
    max_size=3,
)


# -- round trips -----------------------------------------------------------------------


@ROUND_TRIP
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("datatype", DATATYPES)
@given(data=st.data())
def test_round_trip_every_datatype(datatype: str, binary: bool, data: st.DataObject) -> None:
    tensor = data.draw(tensors("out", datatype, json_safe=not binary))
    tensor.parameters = data.draw(json_params)
    response_id = data.draw(st.none() | st.text(max_size=5))
    response = InferResponse("m", [tensor], id=response_id, parameters=data.draw(json_params))
    request = InferRequest("m", [], parameters={"binary_data_output": True}) if binary else None

    body, header_length = v2_rest.encode_infer_response(response, request)

    if binary:
        assert header_length is not None
        header = orjson.loads(body[:header_length])
        size = header["outputs"][0]["parameters"]["binary_data_size"]
        assert size == len(body) - header_length
        if datatype != "BYTES":
            assert size == tensor.data.size * EXPECTED_DTYPE[datatype].itemsize
    else:
        assert header_length is None
        header = orjson.loads(body)
        assert "binary_data_size" not in header["outputs"][0].get("parameters", {})
        assert len(header["outputs"][0]["data"]) == tensor.data.size
    assert header["model_name"] == "m"
    assert header["outputs"][0]["shape"] == list(tensor.shape)
    assert header["outputs"][0]["datatype"] == datatype
    if response_id is None:
        assert "id" not in header
    else:
        assert header["id"] == response_id

    decoded = decode(as_request(body, header_length), header_length)
    assert decoded.id == response_id
    assert decoded.parameters == response.parameters
    assert_decodes_to(decoded, [tensor], exact_nan=True)


@settings(ROUND_TRIP, max_examples=150)
@given(data=st.data())
def test_round_trip_mixed_binary_and_json_outputs(data: st.DataObject) -> None:
    names = data.draw(
        st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=4, unique=True)
    )
    default = data.draw(st.sampled_from([None, False, True]))
    overrides = data.draw(st.dictionaries(st.sampled_from(names), st.booleans()))
    # Outputs the client names without choosing binary_data follow the default.
    plain = data.draw(st.lists(st.sampled_from(names), unique=True))
    wants = {name: overrides.get(name, bool(default)) for name in names}
    outputs = [RequestedOutput(n, {"binary_data": b}) for n, b in overrides.items()]
    outputs += [RequestedOutput(n, {"other": 1}) for n in plain if n not in overrides]
    request = InferRequest(
        "m",
        [],
        parameters={} if default is None else {"binary_data_output": default},
        outputs=outputs or None,
    )
    outs = [data.draw(tensors(name, json_safe=not wants[name])) for name in names]
    for t in outs:
        t.parameters = data.draw(json_params)

    body, header_length = v2_rest.encode_infer_response(InferResponse("m", outs), request)

    assert (header_length is None) == (not any(wants.values()))
    header = orjson.loads(body if header_length is None else body[:header_length])
    sizes = []
    for out in header["outputs"]:
        is_binary = "binary_data_size" in out.get("parameters", {})
        assert is_binary == wants[out["name"]], out["name"]
        assert is_binary != ("data" in out)
        if is_binary:
            sizes.append(out["parameters"]["binary_data_size"])
    assert sum(sizes) == len(body) - (header_length or len(body))

    decoded = decode(as_request(body, header_length), header_length)
    assert_decodes_to(decoded, outs, exact_nan=True)


@pytest.mark.parametrize(
    ("datatype", "values"),
    [
        ("FP64", [0.1, -0.0, 5e-324, 1.7976931348623157e308, -2.2250738585072014e-308]),
        ("FP32", [0.1, -0.0, 1e-45, 3.4028234663852886e38, 1 / 3]),
        ("FP16", [0.1, -0.0, 6e-08, 65504.0, 1 / 3]),
    ],
)
def test_json_floats_round_trip_exactly(datatype: str, values: list[float]) -> None:
    arr = np.array(values, dtype=EXPECTED_DTYPE[datatype])
    body, header_length = v2_rest.encode_infer_response(
        InferResponse("m", [Tensor("x", datatype, arr.shape, arr)])
    )
    assert header_length is None
    got = decode(as_request(body, None)).inputs[0].data
    uint = f"<u{arr.dtype.itemsize}"
    assert got.view(uint).tolist() == arr.view(uint).tolist()


# -- interoperability with tritonclient's own HTTP codec ---------------------------------


@ROUND_TRIP
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("datatype", DATATYPES)
@given(data=st.data())
def test_decodes_what_tritonclient_sends(datatype: str, binary: bool, data: st.DataObject) -> None:
    arr = data.draw(arrays(datatype, json_safe=not binary, any_layout=False))
    other = np.arange(3, dtype=np.int32)
    x = httpclient.InferInput("x", list(arr.shape), datatype)
    x.set_data_from_numpy(arr, binary_data=binary)
    y = httpclient.InferInput("y", [3], "INT32")
    y.set_data_from_numpy(other, binary_data=not binary)
    wanted = [httpclient.InferRequestedOutput("out", binary_data=binary)]
    body, json_size = httpclient.InferenceServerClient.generate_request_body(
        [x, y], outputs=wanted, request_id="req-1", parameters={"custom": "v"}
    )

    request = decode(body, json_size)

    assert request.id == "req-1"
    assert request.parameters == {"custom": "v"}
    assert [(o.name, o.parameters) for o in request.outputs] == [("out", {"binary_data": binary})]
    assert [t.name for t in request.inputs] == ["x", "y"]
    assert request.inputs[0].shape == arr.shape
    assert_same_tensor_data(arr, request.inputs[0].data, datatype, exact_nan=True)
    assert request.inputs[1].data.tolist() == [0, 1, 2]


@ROUND_TRIP
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("datatype", DATATYPES)
@given(data=st.data())
def test_tritonclient_reads_what_we_send(datatype: str, binary: bool, data: st.DataObject) -> None:
    arr = data.draw(arrays(datatype, json_safe=not binary))
    response = InferResponse("m", [Tensor("out", datatype, arr.shape, arr)], id="abc")
    request = InferRequest("m", [], parameters={"binary_data_output": binary})
    body, header_length = v2_rest.encode_infer_response(response, request)

    result = httpclient.InferenceServerClient.parse_response_body(body, header_length=header_length)

    assert result.get_response()["id"] == "abc"
    got = result.as_numpy("out")
    assert got.shape == arr.shape
    if datatype == "BYTES":
        items = got.reshape(-1).tolist()
        if not binary:  # tritonclient leaves JSON strings as str
            items = [s.encode() for s in items]
        assert items == arr.reshape(-1).tolist()
    else:
        assert_same_tensor_data(
            arr, got.astype(got.dtype.newbyteorder("<")), datatype, exact_nan=True
        )


# -- encoder details ---------------------------------------------------------------------


def test_encoder_echoes_id_version_and_parameters() -> None:
    out = Tensor("y", "INT64", (2,), np.array([3, 4]), {"content_type": "np"})
    response = InferResponse("m", [out], id="req-7", model_version="3", parameters={"k": 1})
    body, header_length = v2_rest.encode_infer_response(response)
    assert header_length is None
    assert orjson.loads(body) == {
        "model_name": "m",
        "model_version": "3",
        "id": "req-7",
        "parameters": {"k": 1},
        "outputs": [
            {
                "name": "y",
                "datatype": "INT64",
                "shape": [2],
                "parameters": {"content_type": "np"},
                "data": [3, 4],
            }
        ],
    }


def test_encoder_without_id_or_version_leaves_them_out() -> None:
    body, _ = v2_rest.encode_infer_response(
        InferResponse("m", [Tensor("y", "BOOL", (1,), np.array([True]))])
    )
    obj = orjson.loads(body)
    assert "id" not in obj
    assert "model_version" not in obj
    assert obj["outputs"][0]["data"] == [True]


def test_binary_output_layout_by_hand() -> None:
    a = Tensor("a", "INT32", (2,), np.array([1, -2], dtype=np.int32))
    b = Tensor("b", "BYTES", (1,), object_array([b"hi"], (1,)))
    c = Tensor("c", "FP32", (1,), np.array([0.5], dtype=np.float32))
    request = InferRequest(
        "m",
        [],
        outputs=[
            RequestedOutput("a", {"binary_data": True}),
            RequestedOutput("b", {"binary_data": True}),
        ],
    )
    body, header_length = v2_rest.encode_infer_response(InferResponse("m", [a, b, c]), request)
    assert header_length is not None
    header = orjson.loads(body[:header_length])
    assert [o.get("parameters") for o in header["outputs"]] == [
        {"binary_data_size": 8},
        {"binary_data_size": 6},
        None,
    ]
    assert header["outputs"][2]["data"] == [0.5]
    assert body[header_length:] == struct.pack("<2i", 1, -2) + b"\x02\x00\x00\x00hi"


def test_per_output_binary_data_false_beats_binary_data_output() -> None:
    a = Tensor("a", "INT8", (1,), np.array([7], dtype=np.int8))
    request = InferRequest(
        "m",
        [],
        parameters={"binary_data_output": True},
        outputs=[RequestedOutput("a", {"binary_data": False})],
    )
    body, header_length = v2_rest.encode_infer_response(InferResponse("m", [a]), request)
    assert header_length is None
    assert orjson.loads(body)["outputs"][0]["data"] == [7]


# -- decoding valid requests ---------------------------------------------------------------


def test_decode_keeps_id_parameters_and_outputs() -> None:
    body = body_of(
        {
            "name": "x",
            "datatype": "FP32",
            "shape": [2, 2],
            "data": [[1, 2], [3, 4]],
            "parameters": {"content_type": "np"},
        },
        id="r-1",
        parameters={"binary_data_output": True, "n": 3},
        outputs=[{"name": "p"}, {"name": "q", "parameters": {"binary_data": False}}],
    )
    request = v2_rest.decode_infer_request(body, None, "iris", "2")
    assert request.model_name == "iris"
    assert request.model_version == "2"
    assert request.id == "r-1"
    assert request.parameters == {"binary_data_output": True, "n": 3}
    assert [(o.name, o.parameters) for o in request.outputs] == [
        ("p", {}),
        ("q", {"binary_data": False}),
    ]
    (x,) = request.inputs
    assert x.parameters == {"content_type": "np"}
    assert x.data.dtype == np.float32
    assert x.data.tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_decode_without_optional_fields() -> None:
    request = decode(body_of({"name": "x", "datatype": "BYTES", "shape": [], "data": "hey"}))
    assert request.id is None
    assert request.outputs is None
    assert request.parameters == {}
    assert request.inputs[0].shape == ()
    assert request.inputs[0].data.item() == b"hey"


def test_decode_binary_inputs_in_order_beside_json_input() -> None:
    header = to_json_bytes(
        {
            "inputs": [
                {
                    "name": "a",
                    "datatype": "INT32",
                    "shape": [2],
                    "parameters": {"binary_data_size": 8},
                },
                {"name": "j", "datatype": "UINT8", "shape": [1], "data": [9]},
                {
                    "name": "b",
                    "datatype": "UINT8",
                    "shape": [3],
                    "parameters": {"binary_data_size": 3, "keep": "me"},
                },
                {
                    "name": "e",
                    "datatype": "FP64",
                    "shape": [0],
                    "parameters": {"binary_data_size": 0},
                },
            ]
        }
    )
    body = header + struct.pack("<2i", 5, -6) + b"\x01\x02\xff"
    request = decode(body, len(header))
    a, j, b, e = request.inputs
    assert a.data.tolist() == [5, -6]
    assert j.data.tolist() == [9]
    assert b.data.tolist() == [1, 2, 255]
    assert b.parameters == {"keep": "me"}  # binary_data_size is consumed
    assert a.parameters == {}
    assert e.data.shape == (0,)


def test_header_length_equal_to_body_means_no_binary() -> None:
    body = body_of({"name": "x", "datatype": "INT8", "shape": [1], "data": [1]})
    assert decode(body, len(body)).inputs[0].data.tolist() == [1]


# -- errors ----------------------------------------------------------------------------------

X = {"name": "x", "datatype": "FP32", "shape": [2], "data": [1.0, 2.0]}


def without(key: str, item: dict[str, Any] = X) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k != key}


def but(item: dict[str, Any] = X, **changes: Any) -> dict[str, Any]:
    return {**item, **changes}


BAD_BODIES: dict[str, tuple[bytes, str]] = {
    "empty body": (b"", "Empty"),
    "malformed json": (b'{"inputs": [', "Malformed JSON"),
    "not utf-8": (b'{"inputs": "\xff"}', "Malformed JSON"),
    "trailing garbage": (body_of(X) + b"}", "Malformed JSON"),
    "nan literal": (
        b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[NaN]}]}',
        "Malformed JSON",
    ),
    "array at top": (b"[]", "must be a JSON object"),
    "string at top": (b'"inputs"', "must be a JSON object"),
    "no inputs": (to_json_bytes({"id": "1"}), "non-empty 'inputs'"),
    "empty inputs": (body_of(), "non-empty 'inputs'"),
    "inputs not a list": (to_json_bytes({"inputs": X}), "non-empty 'inputs'"),
    "input not an object": (body_of([1, 2]), "must be a JSON object"),
    "no name": (body_of(without("name")), "non-empty string 'name'"),
    "empty name": (body_of(but(name="")), "non-empty string 'name'"),
    "name not a string": (body_of(but(name=3)), "non-empty string 'name'"),
    "no datatype": (body_of(without("datatype")), "missing 'datatype'"),
    "no shape": (body_of(without("shape")), "missing 'shape'"),
    "no data": (body_of(without("data")), "missing 'data'"),
    "datatype not a string": (body_of(but(datatype=11)), "must be a string"),
    "unknown datatype": (body_of(but(datatype="FLOAT32")), "unsupported datatype 'FLOAT32'"),
    "lowercase datatype": (body_of(but(datatype="fp32")), "unsupported datatype"),
    "shape not a list": (body_of(but(shape=2)), "list of integers"),
    "shape of strings": (body_of(but(shape=["2"])), "only integers"),
    "shape of floats": (body_of(but(shape=[2.0])), "only integers"),
    "shape of bools": (body_of(but(shape=[True, True])), "only integers"),
    "negative dim": (body_of(but(shape=[-2])), "negative"),
    "negative dim beside zero": (body_of(but(shape=[0, -1], data=[])), "negative"),
    "too many dims": (body_of(but(shape=[1] * 33, data=[1.0])), "more than 32"),
    "more data than shape": (body_of(but(data=[1, 2, 3])), "needs 2 elements, data has 3"),
    "less data than shape": (body_of(but(data=[1])), "needs 2 elements, data has 1"),
    "ragged data": (body_of(but(shape=[2, 2], data=[[1, 2], [3]])), "regular array"),
    "overflowing shape": (body_of(but(shape=[2**32, 2**32], data=[1, 2])), "too large|needs"),
    "strings for numbers": (body_of(but(data=["1", "2"])), "strings where numbers belong"),
    "null for numbers": (body_of(but(data=[1, None])), "must hold numbers"),
    "floats for INT32": (body_of(but(datatype="INT32", data=[1.5, 2])), "fractional"),
    "integral floats for INT8": (body_of(but(datatype="INT8", data=[1.0, 2.0])), "fractional"),
    "256 for UINT8": (body_of(but(datatype="UINT8", data=[1, 256])), "outside \\[0, 255\\]"),
    "-1 for UINT8": (body_of(but(datatype="UINT8", data=[-1, 0])), "outside \\[0, 255\\]"),
    "128 for INT8": (body_of(but(datatype="INT8", data=[128, 0])), "outside \\[-128, 127\\]"),
    "-129 for INT8": (body_of(but(datatype="INT8", data=[-129, 0])), "outside \\[-128, 127\\]"),
    "2**63 for INT64": (body_of(but(datatype="INT64", data=[2**63, 0])), "outside"),
    "numbers for BOOL": (body_of(but(datatype="BOOL", data=[1, 0])), "true/false"),
    "numbers for BYTES": (body_of(but(datatype="BYTES", data=[1, 2])), "must hold strings"),
    "duplicate names": (body_of(X, but(shape=[1], data=[3.0])), "more than once"),
    "id not a string": (body_of(X, id=5), "'id' must be a string"),
    "parameters not an object": (body_of(X, parameters=[1]), "'parameters' of the request"),
    "input parameters not an object": (body_of(but(parameters="x")), "'parameters' of input"),
    "outputs not a list": (body_of(X, outputs={"name": "y"}), "'outputs' must be a list"),
    "output without name": (body_of(X, outputs=[{}]), "string 'name'"),
    "output name not a string": (body_of(X, outputs=[{"name": 1}]), "string 'name'"),
    "output parameters not an object": (
        body_of(X, outputs=[{"name": "y", "parameters": 2}]),
        "'parameters' of output",
    ),
    "binary size without binary data": (
        body_of(without("data", but(parameters={"binary_data_size": 8}))),
        "runs past",
    ),
    "binary size and data": (body_of(but(parameters={"binary_data_size": 0})), "both 'data'"),
    "binary size negative": (
        body_of(without("data", but(parameters={"binary_data_size": -8}))),
        "non-negative integer",
    ),
    "binary size float": (
        body_of(without("data", but(parameters={"binary_data_size": 8.0}))),
        "non-negative integer",
    ),
    "binary size bool": (
        body_of(without("data", but(parameters={"binary_data_size": True}))),
        "non-negative integer",
    ),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_invalid_json_requests(case: str) -> None:
    body, match = BAD_BODIES[case]
    with pytest.raises(InvalidInput, match=match):
        decode(body)


def binary_body(
    size: Any, blob: bytes, shape: list[int] | None = None, datatype: str = "FP32"
) -> tuple[bytes, int]:
    header = body_of(
        {
            "name": "x",
            "datatype": datatype,
            "shape": shape or [2],
            "parameters": {"binary_data_size": size},
        }
    )
    return header + blob, len(header)


@pytest.mark.parametrize(
    ("size", "blob", "match"),
    [
        (4, b"\x00" * 4, "needs 8 bytes, got 4"),  # size disagrees with the shape
        (12, b"\x00" * 12, "needs 8 bytes, got 12"),
        (16, b"\x00" * 8, "runs past the binary data"),  # size past the end of the body
        (8, b"\x00" * 9, "9 bytes but"),  # one trailing unused byte
        (0, b"", "needs 8 bytes, got 0"),
    ],
)
def test_invalid_binary_requests(size: int, blob: bytes, match: str) -> None:
    body, header_length = binary_body(size, blob)
    with pytest.raises(InvalidInput, match=match):
        decode(body, header_length)


def test_binary_bytes_elements_disagreeing_with_shape() -> None:
    blob = b"\x01\x00\x00\x00a" * 3
    body, header_length = binary_body(len(blob), blob, shape=[2], datatype="BYTES")
    with pytest.raises(InvalidInput, match="expected 2 BYTES elements"):
        decode(body, header_length)


def test_binary_data_without_header_length_is_malformed_json() -> None:
    body, _ = binary_body(8, b"\x00" * 8)
    with pytest.raises(InvalidInput, match="Malformed JSON"):
        decode(body)


@pytest.mark.parametrize(
    "value",
    ["-1", "+5", "1000", "abc", "", "1.5", "0x10", " 12 ", "1_0", "\u0661\u0662", "12\n", "1e2"],
)
def test_bad_header_length_values(value: str) -> None:
    body = body_of(X)
    with pytest.raises(InvalidInput, match="Inference-Header-Content-Length"):
        v2_rest.parse_header_length(value, len(body))


def test_header_length_shorter_than_the_json() -> None:
    body = body_of(X)
    with pytest.raises(InvalidInput, match="Malformed JSON"):
        decode(body, len(body) - 1)
    with pytest.raises(InvalidInput, match="Empty"):
        decode(body, 0)


@pytest.mark.parametrize("value", ["9" * 5000, "0" * 4300 + "5", "1" + "0" * 30])
def test_header_length_with_thousands_of_digits(value: str) -> None:
    # int() of more than 4300 digits raises Python's own ValueError: must not leak.
    with pytest.raises(InvalidInput, match="Inference-Header-Content-Length"):
        v2_rest.parse_header_length(value, len(body_of(X)))


def test_header_length_absent_and_present() -> None:
    assert v2_rest.parse_header_length(None, 10) is None
    assert v2_rest.parse_header_length("10", 10) == 10
    assert v2_rest.parse_header_length("0", 10) == 0


# -- huge declared shapes fail before anything is allocated -----------------------------

MiB = 1 << 20


def peak_memory_of_failure(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInput):
            fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    ("datatype", "shape", "data"),
    [
        ("FP64", [2**40, 2**40], [1.0, 2.0]),
        ("FP64", [2**28], [1.0]),  # 2 GiB if the shape were allocated
        ("UINT8", [2**31], []),
        ("BYTES", [2**28], ["a"]),
        ("BOOL", [2**20, 2**20], [True]),
    ],
)
def test_huge_json_shape_fails_fast(datatype: str, shape: list[int], data: list[Any]) -> None:
    body = body_of({"name": "x", "datatype": datatype, "shape": shape, "data": data})
    assert peak_memory_of_failure(lambda: decode(body)) < 8 * MiB


@pytest.mark.parametrize(
    ("datatype", "shape", "blob"),
    [
        ("FP64", [2**40, 2**40], b"\x00" * 16),
        ("FP32", [2**28], b"\x00" * 4),
        ("BYTES", [2**28], b"\x00\x00\x00\x00" * 3),
        ("BYTES", [2**40, 2**40], b"\x01\x00\x00\x00z"),
    ],
)
def test_huge_binary_shape_fails_fast(datatype: str, shape: list[int], blob: bytes) -> None:
    body, header_length = binary_body(len(blob), blob, shape=shape, datatype=datatype)
    assert peak_memory_of_failure(lambda: decode(body, header_length)) < 8 * MiB


# -- shapes numpy cannot describe, even with zero elements -------------------------------


@pytest.mark.parametrize(
    ("datatype", "shape", "binary"),
    [
        ("FP64", [0, 2**62], False),
        ("FP32", [0, 2**63], False),
        ("BYTES", [0, 2**63], False),
        ("INT8", [2**31, 0, 2**31, 2**31], False),
        ("UINT8", [0, 2**62, 2**62], True),
        ("BYTES", [2**62, 0, 4], True),
        ("FP16", [0, 2**63 - 1], True),
    ],
)
def test_zero_size_shape_with_huge_dims(datatype: str, shape: list[int], binary: bool) -> None:
    if binary:
        body, header_length = binary_body(0, b"", shape=shape, datatype=datatype)
    else:
        body = body_of({"name": "x", "datatype": datatype, "shape": shape, "data": []})
        header_length = None
    with pytest.raises(InvalidInput):
        decode(body, header_length)


@pytest.mark.parametrize("datatype", ["UINT8", "FP32", "BYTES"])
def test_zero_size_shape_numpy_can_describe(datatype: str) -> None:
    body = body_of({"name": "x", "datatype": datatype, "shape": [0, 2**40], "data": []})
    data = decode(body).inputs[0].data
    assert data.shape == (0, 2**40)
    assert data.size == 0


@pytest.mark.parametrize(
    ("datatype", "shape", "binary"),
    [
        ("FP64", [0, 2**60], False),
        ("BYTES", [0, 2**60], False),
        ("INT64", [2**30, 0, 2**30], False),
        ("UINT64", [0, 2**60], True),
    ],
)
def test_zero_size_shape_at_the_extent_limit(datatype: str, shape: list[int], binary: bool) -> None:
    if binary:
        body, header_length = binary_body(0, b"", shape=shape, datatype=datatype)
    else:
        body = body_of({"name": "x", "datatype": datatype, "shape": shape, "data": []})
        header_length = None
    try:
        request = decode(body, header_length)
    except InvalidInput:
        return
    assert request.inputs[0].data.shape == tuple(shape)


def test_deeply_nested_bytes_data() -> None:
    depth = 1010  # past Python's recursion limit, within orjson's nesting limit of 1024
    data = b"[" * depth + b'"x"' + b"]" * depth
    body = b'{"inputs":[{"name":"x","datatype":"BYTES","shape":[1],"data":' + data + b"}]}"
    assert orjson.loads(body)
    with pytest.raises(InvalidInput):
        decode(body)


def test_moderately_nested_bytes_data() -> None:
    nested: Any = ["a", "b"]
    for _ in range(9):
        nested = [nested]
    body = body_of({"name": "x", "datatype": "BYTES", "shape": [2], "data": nested})
    assert decode(body).inputs[0].data.tolist() == [b"a", b"b"]


def test_deeply_nested_numeric_data_is_invalid() -> None:
    depth = 1010
    data = b"[" * depth + b"1" + b"]" * depth
    body = b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":' + data + b"}]}"
    with pytest.raises(InvalidInput):
        decode(body)


@pytest.mark.parametrize(
    "values",
    [[1, 2**64 - 1], [2**63, 0, 5], [[2**64 - 1], [0]], [0, 2**63 - 1], [2**63, 2**64 - 1]],
)
def test_uint64_json_is_exact_across_2_63(values: list[Any]) -> None:
    flat = [v for row in values for v in (row if isinstance(row, list) else [row])]
    shape = [len(values), 1] if isinstance(values[0], list) else [len(values)]
    body = body_of({"name": "x", "datatype": "UINT64", "shape": shape, "data": values})
    data = decode(body).inputs[0].data
    assert data.dtype == np.uint64
    assert data.reshape(-1).tolist() == flat


@pytest.mark.parametrize(
    ("datatype", "data", "match"),
    [
        # orjson reads integers beyond 64 bits as floats, hence "fractional".
        ("UINT64", [1, 2**64], "outside|fractional"),
        ("UINT64", [-1, 2**64 - 1], "outside"),
        ("INT64", [-1, 2**63], "outside"),
        ("INT64", [-(2**63) - 1, 0], "outside|fractional"),
        ("UINT64", [2**64 - 1, 1.5], "fractional"),
        ("UINT64", [2**64 - 1, None], "not integers"),
        ("INT8", [2**64 - 1, 1], "outside"),
    ],
)
def test_big_json_integers_out_of_range_or_mixed(
    datatype: str, data: list[Any], match: str
) -> None:
    body = body_of({"name": "x", "datatype": datatype, "shape": [2], "data": data})
    with pytest.raises(InvalidInput, match=match):
        decode(body)


# -- totality fuzzing -------------------------------------------------------------------------


def assert_total(body: bytes, header: Any) -> None:
    """Decoding gives a consistent request or InvalidInput, nothing else."""
    try:
        length = v2_rest.parse_header_length(header, len(body))
        request = v2_rest.decode_infer_request(body, length, "m")
    except InvalidInput as exc:
        assert isinstance(exc.message, str)
        assert exc.message
        return
    assert request.inputs
    names = [t.name for t in request.inputs]
    assert len(set(names)) == len(names)
    for tensor in request.inputs:
        assert isinstance(tensor.name, str)
        assert tensor.name
        assert tensor.data.dtype == EXPECTED_DTYPE[tensor.datatype]
        assert tensor.data.shape == tensor.shape
        assert all(type(d) is int and d >= 0 for d in tensor.shape)
        # A null binary_data_size counts as absent (and stays in the parameters).
        assert tensor.parameters.get("binary_data_size") is None
        if tensor.datatype == "BYTES":
            assert all(isinstance(x, bytes) for x in tensor.data.reshape(-1))


header_values = st.one_of(
    st.none(),
    st.integers(-3, 3000).map(str),
    st.text(max_size=4),
    st.text(alphabet="0123456789", min_size=1, max_size=40),
    st.sampled_from(["", " 1", "1e3", "0x10", "9" * 30, "-0", "+1", "1_0"]),
)


@FUZZ
@given(body=st.binary(max_size=200), header=header_values)
def test_total_on_arbitrary_bytes(body: bytes, header: str | None) -> None:
    assert_total(body, header)


@FUZZ
@given(value=json_values, header=header_values)
def test_total_on_arbitrary_json(value: Any, header: str | None) -> None:
    assert_total(to_json_bytes(value), header)
    assert_total(to_json_bytes({"inputs": value}), header)
    assert_total(to_json_bytes({"inputs": [value]}), header)


def _json_data(arr: np.ndarray, datatype: str, nested: bool) -> Any:
    if datatype == "BYTES":
        flat = [b.decode() for b in arr.reshape(-1).tolist()]
        return np.asarray(flat, dtype=object).reshape(arr.shape).tolist() if nested else flat
    return arr.tolist() if nested else arr.reshape(-1).tolist()


@st.composite
def near_valid_requests(draw: st.DrawFn, mutate: bool = True) -> tuple[bytes, str | None, Any]:
    """A valid request (JSON, binary or both); with ``mutate``, then broken at random."""
    inputs: list[dict[str, Any]] = []
    raws: list[bytes | None] = []  # per input: its binary data, None when it is JSON
    count = draw(st.integers(1, 3))
    names = draw(
        st.lists(
            st.sampled_from(["a", "b", "c"]) | st.text(min_size=1, max_size=3),
            min_size=count,
            max_size=count,
            unique=True,
        )
    )
    for name in names:
        datatype = draw(st.sampled_from(DATATYPES))
        arr = draw(arrays(datatype, json_safe=True, any_layout=False))
        item: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(arr.shape)}
        if draw(st.booleans()):
            if datatype == "BYTES":
                raw = b"".join(struct.pack("<I", len(b)) + b for b in arr.reshape(-1).tolist())
            else:
                raw = arr.tobytes()
            item["parameters"] = {"binary_data_size": len(raw)}
            raws.append(raw)
        else:
            item["data"] = _json_data(arr, datatype, nested=draw(st.booleans()))
            raws.append(None)
        inputs.append(item)
    obj: dict[str, Any] = {"inputs": inputs}
    if draw(st.booleans()):
        obj["id"] = draw(st.text(max_size=4))
    if draw(st.booleans()):
        obj["outputs"] = [{"name": draw(st.text(max_size=3)), "parameters": draw(param_dicts)}]
    if not mutate:
        header = to_json_bytes(obj)
        blobs = b"".join(r for r in raws if r is not None)
        return header + blobs, str(len(header)) if blobs else None, obj

    for _ in range(draw(st.integers(1, 3))):
        index = draw(st.integers(0, len(inputs)))  # len(inputs): the request itself
        target = inputs[index] if index < len(inputs) else obj
        # Hypothesis favours the first choices: the most interesting come first.
        key = draw(
            st.sampled_from(
                ["shape", "datatype", "data", "parameters", "name", "id", "outputs", "inputs"]
            )
        )
        action = draw(st.sampled_from(["replace", "size", "delete"]))
        if action == "delete":
            target.pop(key, None)
        elif action == "size" and target is not obj:
            target["parameters"] = {"binary_data_size": draw(weird_sizes)}
        elif key == "shape":
            target[key] = draw(weird_shapes)
            if target is not obj and draw(st.booleans()):
                # Keep the data consistent with a shape of zero elements.
                if "data" in target:
                    target["data"] = []
                else:
                    target["parameters"] = {"binary_data_size": 0}
                    raws[index] = b""
        elif key == "datatype":
            target[key] = draw(weird_datatypes)
        else:
            target[key] = draw(weird_values)

    header = to_json_bytes(obj)
    tail = draw(st.sampled_from([b"", b"", b"\x00", b"\x00" * 8]))
    blobs = b"".join(r for r in raws if r is not None) + tail
    body = header + blobs
    which = draw(st.sampled_from(["right", "right", "none", "random"]))
    if which == "right":
        length: str | None = str(len(header)) if blobs else None
    elif which == "none":
        length = None
    else:
        length = str(draw(st.integers(-2, len(body) + 2)))
    return body, length, obj


@FUZZ
@given(case=near_valid_requests())
def test_total_on_mutated_valid_requests(case: tuple[bytes, str | None, Any]) -> None:
    body, header, _ = case
    assert_total(body, header)


@FUZZ
@given(
    datatype=st.sampled_from(DATATYPES),
    shape=weird_shapes,
    data=st.sampled_from([[], [[]], [1], [0.5], [True], ["a"], [[1, 2]], 7]),
    blob=st.sampled_from([None, b"", b"\x00" * 8, b"\x00\x00\x00\x00"]),
)
def test_total_on_declared_shapes(datatype: str, shape: Any, data: Any, blob: bytes | None) -> None:
    """Any declared shape against a little data: huge, overflowing, zero-size, negative."""
    item = {"name": "x", "datatype": datatype, "shape": shape}
    if blob is None:
        assert_total(body_of({**item, "data": data}), None)
    else:
        header = body_of({**item, "parameters": {"binary_data_size": len(blob)}})
        assert_total(header + blob, str(len(header)))


@FUZZ
@given(case=near_valid_requests(mutate=False))
def test_unmutated_requests_decode(case: tuple[bytes, str | None, Any]) -> None:
    """The generator's requests before mutation are valid, and decode to what they hold."""
    body, header, obj = case
    request = decode(body, header)
    assert request.id == obj.get("id")
    assert [t.name for t in request.inputs] == [i["name"] for i in obj["inputs"]]
    for tensor, item in zip(request.inputs, obj["inputs"], strict=True):
        assert list(tensor.shape) == item["shape"]
        assert tensor.datatype == item["datatype"]
        if "data" in item:
            flat = item["data"] if isinstance(item["data"], list) else [item["data"]]
            while flat and isinstance(flat[0], list):
                flat = [x for row in flat for x in row]
            got = tensor.data.reshape(-1).tolist()
            if tensor.datatype == "BYTES":
                got = [b.decode() for b in got]
            assert got == flat


def test_binary_data_size_null_is_refused() -> None:
    body = body_of(
        {"name": "x", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": None}}
    )
    with pytest.raises(InvalidInput, match="binary_data_size"):
        decode(body, len(body))

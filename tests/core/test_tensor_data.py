"""Datatype table and the tensor data helpers every codec shares."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
import tritonclient.utils as triton_utils
from codec_strategies import (
    DATATYPES,
    EXPECTED_DTYPE,
    FUZZ,
    ROUND_TRIP,
    arrays,
    assert_same_tensor_data,
    object_array,
)
from hypothesis import given
from hypothesis import strategies as st
from modelserver import datatypes
from modelserver.codecs import tensor_data as td
from modelserver.errors import InvalidInput

# -- the datatype table ----------------------------------------------------------


def test_table_covers_exactly_the_oip_datatypes() -> None:
    assert set(datatypes.DATATYPE_TO_DTYPE) == set(DATATYPES)
    for name, dtype in EXPECTED_DTYPE.items():
        assert datatypes.dtype_of(name) == dtype, name
    assert datatypes.dtype_of("FP8") is None
    assert datatypes.dtype_of("fp32") is None


@pytest.mark.parametrize("name", [d for d in DATATYPES if d != "BYTES"])
def test_fixed_size_datatypes_are_little_endian_and_map_back(name: str) -> None:
    dtype = datatypes.DATATYPE_TO_DTYPE[name]
    assert dtype.byteorder in ("<", "|", "=")
    assert datatypes.datatype_of(dtype) == name
    # A big-endian array is still the same OIP datatype.
    assert datatypes.datatype_of(dtype.newbyteorder(">")) == name
    assert datatypes.element_size(name) == EXPECTED_DTYPE[name].itemsize


def test_element_sizes_by_hand() -> None:
    expected = {
        "BOOL": 1,
        "UINT8": 1,
        "INT8": 1,
        "UINT16": 2,
        "INT16": 2,
        "FP16": 2,
        "UINT32": 4,
        "INT32": 4,
        "FP32": 4,
        "UINT64": 8,
        "INT64": 8,
        "FP64": 8,
        "BYTES": 0,
    }
    assert {d: datatypes.element_size(d) for d in DATATYPES} == expected


@pytest.mark.parametrize("dtype", [np.dtype(object), np.dtype("U3"), np.dtype("S2")])
def test_text_and_objects_are_bytes(dtype: np.dtype) -> None:
    assert datatypes.datatype_of(dtype) == "BYTES"


@pytest.mark.parametrize(
    "dtype",
    [
        np.dtype("c16"),
        np.dtype("M8[s]"),
        np.dtype("m8[s]"),
        np.dtype("f16") if hasattr(np, "float128") else np.dtype("V4"),
    ],
)
def test_dtypes_without_oip_datatype_raise_type_error(dtype: np.dtype) -> None:
    with pytest.raises(TypeError):
        datatypes.datatype_of(dtype)


# -- check_datatype / check_shape ---------------------------------------------------


@pytest.mark.parametrize("bad", ["FP8", "", "fp32", "FLOAT32", "STRING", None, 3, ["FP32"]])
def test_check_datatype_rejects(bad: object) -> None:
    with pytest.raises(InvalidInput, match="'t'"):
        td.check_datatype(bad, "t")


@pytest.mark.parametrize(
    ("shape", "count"),
    [([], 1), ((), 1), ([0], 0), ([3, 0, 2], 0), ([2, 3], 6), ((4,), 4), ([1] * 32, 1)],
)
def test_check_shape_accepts(shape: list[int], count: int) -> None:
    assert td.check_shape(shape, "t") == (tuple(shape), count)


def test_check_shape_counts_with_python_ints() -> None:
    # Large but describable shapes pass with their exact count (no int64 wrap-around);
    # the data then has to match it.
    assert td.check_shape([2**20, 2**20], "t") == ((2**20, 2**20), 2**40)
    assert td.check_shape([2**10] * 5, "t")[1] == 2**50
    assert td.check_shape([0, 2**40], "t")[1] == 0


@pytest.mark.parametrize(
    "shape",
    [
        [2**40, 2**40],
        [2**32, 2**32],
        [2**64],
        [2**63],
        [0, 2**62],
        [2**62, 0],
        [0, 2**63],
        [2**31, 0, 2**31, 2**31],
        [2**16] * 5,
    ],
)
def test_check_shape_rejects_shapes_numpy_cannot_describe(shape: list[int]) -> None:
    with pytest.raises(InvalidInput, match="too large"):
        td.check_shape(shape, "t")


@pytest.mark.parametrize(
    "shape",
    [None, 3, "3", {"0": 1}, [-1], [2, -3], [1.0], ["2"], [True], [None], [[2]], [1] * 33],
)
def test_check_shape_rejects(shape: object) -> None:
    with pytest.raises(InvalidInput):
        td.check_shape(shape, "t")


# -- JSON data -----------------------------------------------------------------------


def test_array_from_json_flat_and_nested() -> None:
    flat = td.array_from_json([1, 2, 3, 4], "INT32", (2, 2), 4, "t")
    nested = td.array_from_json([[1, 2], [3, 4]], "INT32", (2, 2), 4, "t")
    for arr in (flat, nested):
        assert arr.dtype == np.dtype("<i4")
        assert arr.tolist() == [[1, 2], [3, 4]]


def test_array_from_json_scalar_data_for_scalar_shape() -> None:
    arr = td.array_from_json(2.5, "FP32", (), 1, "t")
    assert arr.shape == ()
    assert arr.item() == 2.5


def test_array_from_json_bytes_encodes_text_as_utf8() -> None:
    arr = td.array_from_json(["é", ["", "a\x00b"]], "BYTES", (3,), 3, "t")
    assert arr.dtype == object
    assert arr.tolist() == ["é".encode(), b"", b"a\x00b"]


@pytest.mark.parametrize(
    ("data", "datatype", "count", "match"),
    [
        ([1, 2, 3], "INT32", 2, "needs 2 elements, data has 3"),
        ([1], "INT32", 2, "needs 2 elements, data has 1"),
        (["a", "b"], "BYTES", 3, "needs 3 elements, data has 2"),
        ([[1, 2], [3]], "FP32", 3, "regular array"),
        (["1", "2"], "FP32", 2, "strings"),
        ([1.5, 2], "INT32", 2, "fractional"),
        ([1.0, 2.0], "INT64", 2, "fractional"),
        ([256], "UINT8", 1, "outside"),
        ([-1], "UINT8", 1, "outside"),
        ([128], "INT8", 1, "outside"),
        ([-129], "INT8", 1, "outside"),
        ([65536], "UINT16", 1, "outside"),
        ([2**31], "INT32", 1, "outside"),
        ([2**32], "UINT32", 1, "outside"),
        ([1, 0], "BOOL", 2, "true/false"),
        ([True, False], "INT32", 2, "not integers"),
        ([True], "FP32", 1, "numbers"),
        ([None], "FP64", 1, "numbers"),
        ([{"a": 1}], "INT8", 1, "not integers"),
        ([1], "BYTES", 1, "strings"),
        ([None], "BYTES", 1, "strings"),
    ],
)
def test_array_from_json_rejects(data: object, datatype: str, count: int, match: str) -> None:
    shape = (count,)
    with pytest.raises(InvalidInput, match=match):
        td.array_from_json(data, datatype, shape, count, "t")


@pytest.mark.parametrize("datatype", ["UINT8", "INT8", "INT16", "UINT16", "INT32", "UINT32"])
def test_array_from_json_accepts_the_whole_integer_range(datatype: str) -> None:
    info = np.iinfo(EXPECTED_DTYPE[datatype])
    arr = td.array_from_json([int(info.min), int(info.max)], datatype, (2,), 2, "t")
    assert arr.dtype == EXPECTED_DTYPE[datatype]
    assert arr.tolist() == [info.min, info.max]


# -- raw bytes -----------------------------------------------------------------------


def test_array_to_raw_is_little_endian_row_major() -> None:
    arr = np.array([[1, 2], [3, 4]], dtype=">i4").T  # big-endian and column-major
    assert td.array_to_raw(arr, "INT32") == struct.pack("<4i", 1, 3, 2, 4)
    assert td.array_to_raw(np.array([1.0], dtype=np.float64), "FP32") == struct.pack("<f", 1.0)
    assert td.array_to_raw(np.array([True, False]), "BOOL") == b"\x01\x00"


@ROUND_TRIP
@pytest.mark.parametrize("datatype", DATATYPES)
@given(data=st.data())
def test_raw_round_trip(datatype: str, data: st.DataObject) -> None:
    arr = data.draw(arrays(datatype, json_safe=False))
    raw = td.array_to_raw(arr, datatype)
    if datatype != "BYTES":
        assert len(raw) == arr.size * EXPECTED_DTYPE[datatype].itemsize
    back = td.array_from_raw(raw, datatype, arr.shape, arr.size, "t")
    assert_same_tensor_data(arr, back, datatype, exact_nan=True)
    # A memoryview slice of a larger buffer (as the REST decoder passes) works too.
    padded = memoryview(b"xx" + raw + b"yy")[2 : 2 + len(raw)]
    again = td.array_from_raw(padded, datatype, arr.shape, arr.size, "t")
    assert_same_tensor_data(arr, again, datatype, exact_nan=True)


@ROUND_TRIP
@pytest.mark.parametrize("datatype", [d for d in DATATYPES if d != "BYTES"])
@given(data=st.data())
def test_array_from_raw_rejects_every_wrong_length(datatype: str, data: st.DataObject) -> None:
    arr = data.draw(arrays(datatype, json_safe=False))
    raw = td.array_to_raw(arr, datatype)
    delta = data.draw(st.integers(-len(raw), 9).filter(lambda d: d != 0))
    wrong = raw[: len(raw) + delta] if delta < 0 else raw + b"\x00" * delta
    with pytest.raises(InvalidInput, match="needs"):
        td.array_from_raw(wrong, datatype, arr.shape, arr.size, "t")


def test_array_from_raw_huge_shape_is_rejected_before_allocating() -> None:
    shape = (2**40, 2**40)
    with pytest.raises(InvalidInput):
        td.array_from_raw(b"\x00" * 8, "FP64", shape, math.prod(shape), "t")
    with pytest.raises(InvalidInput):
        td.array_from_raw(b"\x00\x00\x00\x00", "BYTES", shape, math.prod(shape), "t")


# -- BYTES framing -------------------------------------------------------------------


def test_bytes_framing_by_hand() -> None:
    arr = object_array([b"ab", b"", "é"], (3,))
    expected = b"\x02\x00\x00\x00ab" + b"\x00\x00\x00\x00" + b"\x02\x00\x00\x00\xc3\xa9"
    assert td.serialize_bytes_elements(arr) == expected
    assert td.parse_bytes_elements(expected, 3, "t").tolist() == [b"ab", b"", "é".encode()]


@FUZZ
@given(items=st.lists(st.binary(max_size=300), max_size=12))
def test_bytes_framing_round_trip(items: list[bytes]) -> None:
    arr = object_array(items, (len(items),))
    framed = td.serialize_bytes_elements(arr)
    assert len(framed) == sum(4 + len(b) for b in items)
    back = td.parse_bytes_elements(framed, len(items), "t")
    assert back.dtype == object
    assert back.tolist() == items
    # Any other element count is an error, never a silent truncation.
    for other in {0, len(items) - 1, len(items) + 1} - {len(items)}:
        if other >= 0:
            with pytest.raises(InvalidInput):
                td.parse_bytes_elements(framed, other, "t")


@FUZZ
@given(items=st.lists(st.binary(max_size=40), min_size=1, max_size=6), data=st.data())
def test_bytes_framing_truncated_is_invalid(items: list[bytes], data: st.DataObject) -> None:
    framed = td.serialize_bytes_elements(object_array(items, (len(items),)))
    cut = data.draw(st.integers(1, len(framed)))
    truncated = framed[: len(framed) - cut]
    # Cutting at an element boundary gives fewer elements; elsewhere a broken one.
    with pytest.raises(InvalidInput):
        td.parse_bytes_elements(truncated, len(items), "t")


@pytest.mark.parametrize(
    ("buf", "match"),
    [
        (b"\x01\x00", "truncated BYTES element length"),
        (b"\x05\x00\x00\x00abc", "runs past the end"),
        (b"\xff\xff\xff\xff", "runs past the end"),
    ],
)
def test_parse_bytes_elements_malformed(buf: bytes, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        td.parse_bytes_elements(buf, 1, "t")


@FUZZ
@given(buf=st.binary(max_size=64), count=st.integers(0, 2**40))
def test_parse_bytes_elements_is_total(buf: bytes, count: int) -> None:
    try:
        arr = td.parse_bytes_elements(buf, count, "t")
    except InvalidInput:
        return
    assert arr.shape == (count,)
    assert td.serialize_bytes_elements(arr) == buf


@FUZZ
@given(items=st.lists(st.binary(max_size=30), max_size=8))
def test_bytes_framing_matches_tritonclient(items: list[bytes]) -> None:
    arr = object_array(items, (len(items),))
    theirs = triton_utils.serialize_byte_tensor(arr)
    theirs_bytes = theirs.item() if theirs.size else b""
    assert td.serialize_bytes_elements(arr) == theirs_bytes
    if items:
        assert td.parse_bytes_elements(theirs_bytes, len(items), "t").tolist() == list(
            triton_utils.deserialize_bytes_tensor(theirs_bytes)
        )


# -- JSON output data ------------------------------------------------------------------


def test_array_to_json_flattens_row_major_and_decodes_text() -> None:
    arr = np.arange(6, dtype=np.int16).reshape(2, 3).T
    out = td.array_to_json(arr, "INT16")
    assert isinstance(out, np.ndarray)
    assert out.flags.c_contiguous
    assert out.tolist() == [0, 3, 1, 4, 2, 5]
    assert td.array_to_json(object_array([b"a", "b", b"\xff"], (3,)), "BYTES") == [
        "a",
        "b",
        "\ufffd",
    ]

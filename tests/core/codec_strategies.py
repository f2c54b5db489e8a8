"""Hypothesis strategies and comparison helpers shared by the codec tests.

The expected numpy dtype of every OIP datatype is written out here by hand
(not read from ``modelserver.datatypes``) so the tests check the table instead
of trusting it.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from modelserver.types import Tensor

#: Every Open Inference Protocol datatype, with the numpy dtype it must map to.
EXPECTED_DTYPE: dict[str, np.dtype] = {
    "BOOL": np.dtype("bool"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
DATATYPES = list(EXPECTED_DTYPE)
FLOATS = ("FP16", "FP32", "FP64")
INTEGERS = ("UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64")

#: Settings of the property tests: enough examples to find boundary cases,
#: few enough that the whole suite stays well under a minute on two cores.
ROUND_TRIP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)


def _elements(datatype: str, json_safe: bool) -> st.SearchStrategy[Any] | None:
    """Element strategy for ``datatype``; None means hypothesis' full default range."""
    if datatype in FLOATS:
        width = {"FP16": 16, "FP32": 32, "FP64": 64}[datatype]
        # JSON has no NaN or infinity, so those only travel in binary.
        return st.floats(width=width, allow_nan=not json_safe, allow_infinity=not json_safe)
    return None


def object_array(items: list[Any], shape: tuple[int, ...]) -> np.ndarray:
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    return arr.reshape(shape)


@st.composite
def arrays(
    draw: st.DrawFn,
    datatype: str,
    *,
    json_safe: bool,
    shape: tuple[int, ...] | None = None,
    any_layout: bool = True,
) -> np.ndarray:
    """A numpy array for ``datatype``, in a random memory layout.

    ``json_safe`` limits the values to what JSON can carry: finite floats and
    UTF-8 text for BYTES.
    """
    if shape is None:
        shape = draw(shapes)
    if datatype == "BYTES":
        count = math.prod(shape)
        item = st.text(max_size=6).map(str.encode) if json_safe else st.binary(max_size=8)
        arr = object_array(draw(st.lists(item, min_size=count, max_size=count)), shape)
    else:
        elements = _elements(datatype, json_safe)
        arr = draw(hnp.arrays(EXPECTED_DTYPE[datatype], shape, elements=elements))
    if any_layout and arr.ndim:
        layout = draw(st.sampled_from(["C", "F", "reversed"]))
        if layout == "F":
            arr = np.asfortranarray(arr)
        elif layout == "reversed":
            # A negatively strided view with the same shape and flipped values.
            arr = np.ascontiguousarray(arr[::-1])[::-1]
    return arr


param_values = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
)
param_dicts = st.dictionaries(
    st.text(min_size=1, max_size=6).filter(lambda k: k not in ("binary_data_size", "binary_data")),
    param_values,
    max_size=3,
)


@st.composite
def tensors(draw: st.DrawFn, name: str, datatype: str | None = None, *, json_safe: bool) -> Tensor:
    if datatype is None:
        datatype = draw(st.sampled_from(DATATYPES))
    arr = draw(arrays(datatype, json_safe=json_safe))
    return Tensor(name, datatype, arr.shape, arr, draw(param_dicts))


def assert_same_tensor_data(
    expected: np.ndarray, actual: np.ndarray, datatype: str, exact_nan: bool
) -> None:
    """Same dtype, shape and values; floats compared bit for bit.

    With ``exact_nan`` NaNs must have the same bits too (raw bytes carry them
    unchanged); otherwise a NaN only has to stay a NaN.
    """
    assert actual.dtype == EXPECTED_DTYPE[datatype], (actual.dtype, datatype)
    assert actual.shape == expected.shape
    if datatype == "BYTES":
        assert all(isinstance(x, bytes) for x in actual.reshape(-1))
        assert actual.reshape(-1).tolist() == expected.reshape(-1).tolist()
        return
    np.testing.assert_array_equal(actual, expected)
    if datatype in FLOATS:
        uint = np.dtype(f"<u{expected.dtype.itemsize}")
        exp_bits = np.ascontiguousarray(expected).view(uint)
        act_bits = np.ascontiguousarray(actual).view(uint)
        nan = np.isnan(expected)
        np.testing.assert_array_equal(np.isnan(actual), nan)
        if exact_nan:
            np.testing.assert_array_equal(act_bits, exp_bits)
        else:
            # Signed zeros and every finite value keep their exact bits.
            np.testing.assert_array_equal(act_bits[~nan], exp_bits[~nan])


# -- JSON-ish values for the totality fuzzing ------------------------------------

REQUEST_KEYS = [
    "inputs",
    "outputs",
    "name",
    "datatype",
    "shape",
    "data",
    "parameters",
    "id",
    "binary_data_size",
    "binary_data",
    "instances",
    "signature_name",
    "output",
]
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**65), 2**65),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    st.sampled_from(DATATYPES + REQUEST_KEYS),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(REQUEST_KEYS) | st.text(max_size=4), children, max_size=4),
    ),
    max_leaves=16,
)

#: Values that break an otherwise valid field: wrong types, bad and huge numbers.
weird_values = st.one_of(
    st.sampled_from(
        [
            None,
            True,
            False,
            0,
            -1,
            1.5,
            1.0,
            "3",
            "",
            [],
            {},
            [[]],
            2**31,
            2**62,
            2**63,
            2**64 - 1,
            -(2**63),
            [-1],
            [2**62, 2**62],
            [2**40, 2**40],
            [0, 2**62],
            [0, 2**63],
            [1] * 33,
            [1.0],
            ["1"],
            [True],
            "FP32",
            "BYTES",
            "float32",
            "INT128",
        ]
    ),
    json_values,
)
dims = st.one_of(
    st.integers(0, 4),
    st.integers(-3, -1),
    st.sampled_from([2**31, 2**32, 2**40, 2**62, 2**63 - 1, 2**63, 2**64 - 1]),
)
huge_dims = st.sampled_from([2**31, 2**32, 2**40, 2**62, 2**63 - 1])


def mixed_shapes(small: st.SearchStrategy[int], huge: st.SearchStrategy[int]) -> st.SearchStrategy:
    """Shapes mixing small dimensions (zeros among them) with huge ones, in any order."""
    return st.tuples(
        st.lists(small, min_size=1, max_size=2), st.lists(huge, min_size=1, max_size=2)
    ).flatmap(lambda parts: st.permutations(parts[0] + parts[1]))


weird_shapes = st.one_of(
    st.lists(dims, max_size=5),
    mixed_shapes(st.integers(0, 2), huge_dims | st.sampled_from([2**63, 2**64 - 1])),
    weird_values,
)
weird_datatypes = st.one_of(
    st.sampled_from(DATATYPES),
    st.sampled_from(["", "FP8", "BF16", "fp32", "INT", "STRING", "bool", "UINT128"]),
    st.text(max_size=6),
    weird_values,
)
weird_sizes = st.one_of(st.integers(-2, 64), st.sampled_from([2**31, 2**63, 1.0, "8", True, None]))


def to_json_bytes(value: Any) -> bytes:
    """JSON text of ``value``; the stdlib encoder writes integers of any size."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8")

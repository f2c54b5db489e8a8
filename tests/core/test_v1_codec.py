"""KServe v1 REST (instances/inputs -> predictions): decoding, encoding, totality."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from codec_strategies import FUZZ, ROUND_TRIP, json_values, object_array, to_json_bytes
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from modelserver.codecs import v1
from modelserver.errors import InvalidInput
from modelserver.types import InferRequest, InferResponse, Tensor


def decode(obj: Any) -> InferRequest:
    return v1.decode_predict_request(to_json_bytes(obj), "m")


def as_text(values: list[Any]) -> list[str]:
    """BYTES elements as text, whether the codec keeps them as str or bytes."""
    return [v.decode() if isinstance(v, bytes) else v for v in values]


# -- decoding ------------------------------------------------------------------------------


def test_list_of_scalars_is_n_rows_of_one_value() -> None:
    """1-D, as KServe hands it over: a text pipeline takes strings this way."""
    (t,) = decode({"instances": [1, 2, 3]}).inputs
    assert t.name == "instances"
    assert (t.datatype, t.shape) == ("INT64", (3,))
    assert t.data.tolist() == [1, 2, 3]


def test_list_of_rows_keeps_its_shape() -> None:
    request = decode({"instances": [[5.1, 3.5, 1.4, 0.2], [6.2, 3.4, 5.4, 2.3]]})
    assert request.model_name == "m"
    assert request.id is None
    (t,) = request.inputs
    assert (t.datatype, t.shape) == ("FP64", (2, 4))
    assert t.data.tolist() == [[5.1, 3.5, 1.4, 0.2], [6.2, 3.4, 5.4, 2.3]]


def test_inputs_list_is_like_instances_but_named_inputs() -> None:
    (t,) = decode({"inputs": [[1, 2]]}).inputs
    assert (t.name, t.datatype, t.shape) == ("inputs", "INT64", (1, 2))


@pytest.mark.parametrize(
    ("rows", "datatype"),
    [([True, False], "BOOL"), ([[1, 2.5]], "FP64"), ([2**63], "UINT64"), ([-1, 2], "INT64")],
)
def test_datatypes_follow_the_json_values(rows: list[Any], datatype: str) -> None:
    (t,) = decode({"instances": rows}).inputs
    assert t.datatype == datatype
    assert t.data.reshape(-1).tolist() == np.asarray(rows).reshape(-1).tolist()


def test_strings_become_bytes_tensors() -> None:
    (t,) = decode({"instances": ["a", "é"]}).inputs
    assert (t.datatype, t.shape) == ("BYTES", (2,))
    assert t.data.dtype == object
    assert as_text(t.data.reshape(-1).tolist()) == ["a", "é"]


def test_rows_as_objects_become_one_tensor_per_column() -> None:
    request = decode(
        {
            "instances": [
                {"sepal": 5.1, "kind": "x", "n": 1, "ok": True},
                {"ok": False, "n": 2, "kind": "y", "sepal": 6},  # key order may differ
            ]
        }
    )
    by_name = {t.name: t for t in request.inputs}
    assert [t.name for t in request.inputs] == ["sepal", "kind", "n", "ok"]
    assert (by_name["sepal"].datatype, by_name["sepal"].data.tolist()) == ("FP64", [5.1, 6.0])
    assert by_name["kind"].datatype == "BYTES"
    assert as_text(by_name["kind"].data.tolist()) == ["x", "y"]
    assert (by_name["n"].datatype, by_name["n"].data.tolist()) == ("INT64", [1, 2])
    assert (by_name["ok"].datatype, by_name["ok"].data.tolist()) == ("BOOL", [True, False])
    assert all(t.shape == (2,) for t in request.inputs)


def test_rows_lacking_a_column_have_holes_as_pandas_would() -> None:
    """KServe's lgbserver takes such rows (a DataFrame with NaN); the holes are counted."""
    request = decode({"instances": [{"a": 1, "b": 2.5}, {"a": 3}, {"c": 4}]})
    by_name = {t.name: t for t in request.inputs}
    assert list(by_name) == ["a", "b", "c"]
    assert by_name["a"].data.tolist()[:2] == [1.0, 3.0] and np.isnan(by_name["a"].data[2])
    assert by_name["a"].parameters == {"missing_values": 1}
    assert by_name["b"].parameters == {"missing_values": 2}
    assert np.isnan(by_name["c"].data[:2]).all() and by_name["c"].data[2] == 4
    assert all(t.datatype == "FP64" and t.shape == (3,) for t in request.inputs)


@pytest.mark.parametrize(
    "body",
    [
        # each instance an object of columns by row label (pandas' to_dict())
        {"instances": [{"a": {"0": 1}, "b": {"0": 2}}, {"a": {"0": 3}, "b": {"0": 4}}]},
        {"inputs": [{"a": {"0": 1, "1": 3}, "b": {"0": 2, "1": 4}}]},
        # the whole table so
        {"instances": {"a": {"0": 1, "1": 3}, "b": {"0": 2, "1": 4}}},
        {"inputs": {"a": {"x": 1, "y": 3}, "b": {"x": 2, "y": 4}}},
        # each instance a list of row objects
        {"instances": [[{"a": 1, "b": 2}, {"a": 3, "b": 4}]]},
        {"instances": [[{"a": 1, "b": 2}], [{"a": 3, "b": 4}]]},
    ],
)
def test_kserve_dataframe_shapes(body: dict[str, Any]) -> None:
    request = decode(body)
    assert [(t.name, t.data.tolist()) for t in request.inputs] == [("a", [1, 3]), ("b", [2, 4])]


def test_row_objects_lists_with_one_column_each_are_rows_with_holes() -> None:
    """KServe's lgbserver test: each dict of the instance is a row of its own."""
    request = decode({"instances": [[{"a": 1.5}, {"b": 2.5}]]})
    a, b = request.inputs
    assert a.data[0] == 1.5 and np.isnan(a.data[1])
    assert np.isnan(b.data[0]) and b.data[1] == 2.5


def test_rows_as_objects_with_list_values() -> None:
    (t,) = decode({"instances": [{"v": [1, 2]}, {"v": [3, 4]}]}).inputs
    assert (t.name, t.shape) == ("v", (2, 2))


def test_columnar_inputs_object_is_one_tensor_per_column() -> None:
    request = decode(
        {"inputs": {"a": [1, 2], "b": ["x", "y"], "c": [0.5, 1], "d": [[1, 2], [3, 4]]}}
    )
    assert [(t.name, t.datatype, t.shape) for t in request.inputs] == [
        ("a", "INT64", (2,)),
        ("b", "BYTES", (2,)),
        ("c", "FP64", (2,)),
        ("d", "INT64", (2, 2)),
    ]
    assert request.inputs[2].data.tolist() == [0.5, 1.0]


def test_columnar_scalar_is_one_row() -> None:
    (t,) = decode({"inputs": {"a": 3}}).inputs
    assert (t.shape, t.data.tolist()) == ((1,), [3])


def test_parameters_are_kept_and_outputs_selected() -> None:
    request = decode({"instances": [[1]], "parameters": {"outputs": ["proba", "label"], "k": 2}})
    assert request.parameters == {"outputs": ["proba", "label"], "k": 2}
    assert [o.name for o in request.outputs] == ["proba", "label"]
    assert (
        decode({"instances": [[1]], "parameters": {"output": "label"}}).outputs[0].name == "label"
    )
    assert decode({"instances": [[1]]}).outputs is None
    assert decode({"instances": [[1]]}).parameters == {}


BAD: dict[str, tuple[Any, str]] = {
    "both keys": ({"instances": [1], "inputs": [1]}, "exactly one of"),
    "neither key": ({"data": [1]}, "exactly one of"),
    "empty instances": ({"instances": []}, "must not be empty"),
    "empty inputs object": ({"inputs": {}}, "at least one input"),
    "instances as object of lists": ({"instances": {"a": [1]}}, "must be a list"),
    "instances as scalar": ({"instances": 3}, "must be a list"),
    "inputs as string": ({"inputs": "x"}, "list or an object"),
    "ragged rows": ({"instances": [[1, 2], [3]]}, "not a regular array"),
    "ragged deeper": ({"instances": [[[1], [2]], [[3]]]}, "not a regular array"),
    "text with a hole": ({"instances": [{"a": "x"}, {"b": 2}]}, "'a' has no value in row 1"),
    "list values with a hole": ({"instances": [{"a": [1]}, {"b": 2}]}, "'a' has no value"),
    "object rows of non-objects": ({"instances": [[{"a": 1}, 2]]}, "mixes objects"),
    "objects then a list": ({"instances": [{"a": 1}, [1]]}, "mixes objects and non-objects"),
    "a list then objects": ({"instances": [[1], {"a": 1}]}, "not a regular array|mixes"),
    "null value": ({"instances": [1, None]}, "mixes values"),
    "object value among others": ({"instances": [{"a": {"b": 1}, "c": 1}]}, "mixes values"),
    "columns of different lengths": ({"inputs": {"a": [1, 2], "b": [1]}}, "different numbers"),
    "row columns of different lengths": ({"instances": [{"a": [1, 2]}, {"a": [3]}]}, "regular"),
    "parameters not an object": ({"instances": [1], "parameters": [1]}, "'parameters'"),
    "outputs not names": ({"instances": [1], "parameters": {"outputs": [1]}}, "outputs"),
    "outputs empty": ({"instances": [1], "parameters": {"outputs": []}}, "outputs"),
    "outputs a number": ({"instances": [1], "parameters": {"outputs": 3}}, "outputs"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_invalid_predict_requests(case: str) -> None:
    obj, match = BAD[case]
    with pytest.raises(InvalidInput, match=match):
        decode(obj)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"", "Empty"),
        (b"{", "Malformed JSON"),
        (b"[1, 2]", "JSON object"),
        (b"null", "JSON object"),
    ],
)
def test_invalid_predict_bodies(body: bytes, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        v1.decode_predict_request(body, "m")


# -- encoding ------------------------------------------------------------------------------


def test_single_output_rows() -> None:
    out = Tensor("p", "FP32", (2, 2), np.array([[0.25, 0.75], [1, 0]], dtype=np.float32))
    assert orjson.loads(v1.encode_predict_response(InferResponse("m", [out]))) == {
        "predictions": [[0.25, 0.75], [1.0, 0.0]]
    }


def test_single_bytes_output() -> None:
    out = Tensor("label", "BYTES", (2,), object_array([b"setosa", "virginica"], (2,)))
    assert orjson.loads(v1.encode_predict_response(InferResponse("m", [out]))) == {
        "predictions": ["setosa", "virginica"]
    }


def test_several_outputs_become_row_objects() -> None:
    outs = [
        Tensor("label", "INT64", (2,), np.array([0, 2])),
        Tensor("proba", "FP64", (2, 2), np.array([[0.9, 0.1], [0.2, 0.8]])),
        Tensor("name", "BYTES", (2, 1), object_array([b"a", b"b"], (2, 1))),
    ]
    assert orjson.loads(v1.encode_predict_response(InferResponse("m", outs))) == {
        "predictions": [
            {"label": 0, "proba": [0.9, 0.1], "name": ["a"]},
            {"label": 2, "proba": [0.2, 0.8], "name": ["b"]},
        ]
    }


@ROUND_TRIP
@pytest.mark.parametrize("datatype", ["INT64", "FP64", "BOOL", "BYTES", "INT8", "FP32"])
@given(data=st.data())
def test_predictions_read_back_as_instances(datatype: str, data: st.DataObject) -> None:
    """A client sending back the predictions it got gets the same rows."""
    shape = data.draw(hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=4))
    if datatype == "BYTES":
        # No NUL characters: numpy's str dtype drops trailing ones (reported).
        items = data.draw(
            st.lists(
                st.text(min_size=1, max_size=4).filter(lambda s: "\x00" not in s),
                min_size=int(np.prod(shape)),
                max_size=int(np.prod(shape)),
            )
        )
        arr = object_array([s.encode() for s in items], shape)
    else:
        floats = st.floats(
            width=32 if datatype == "FP32" else 64, allow_nan=False, allow_infinity=False
        )
        arr = data.draw(
            hnp.arrays(
                np.dtype(
                    {"INT64": "i8", "FP64": "f8", "BOOL": "?", "INT8": "i1", "FP32": "f4"}[datatype]
                ),
                shape,
                elements=floats if datatype.startswith("FP") else None,
            )
        )
    body = v1.encode_predict_response(InferResponse("m", [Tensor("out", datatype, shape, arr)]))
    predictions = orjson.loads(body)["predictions"]

    (t,) = decode({"instances": predictions}).inputs

    assert t.shape == shape
    # v1 JSON is untyped: integers come back as INT64, floats as FP64.
    widened = {"INT8": "INT64", "FP32": "FP64"}.get(datatype, datatype)
    assert t.datatype == widened
    if datatype == "BYTES":
        assert as_text(t.data.reshape(-1).tolist()) == items
    else:
        # FP32 travels as its shortest decimal, so compare in the original type.
        np.testing.assert_array_equal(t.data.astype(arr.dtype), arr)


def test_scalar_output() -> None:
    out = Tensor("n", "INT64", (), np.array(7))
    assert orjson.loads(v1.encode_predict_response(InferResponse("m", [out]))) == {"predictions": 7}


# -- totality fuzzing ------------------------------------------------------------------------


def assert_total(body: bytes) -> None:
    try:
        request = v1.decode_predict_request(body, "m")
    except InvalidInput as exc:
        assert exc.message
        return
    assert request.model_name == "m"
    assert isinstance(request.parameters, dict)
    rows = {t.shape[0] for t in request.inputs}
    assert len(rows) <= 1
    for t in request.inputs:
        assert t.data.shape == t.shape
        assert t.datatype in ("BOOL", "INT64", "UINT64", "FP64", "BYTES")
        if t.datatype == "BYTES":
            assert t.data.dtype == object
            assert all(isinstance(x, str | bytes) for x in t.data.reshape(-1))


@FUZZ
@given(body=st.binary(max_size=120))
def test_total_on_arbitrary_bytes(body: bytes) -> None:
    assert_total(body)


@FUZZ
@given(value=json_values, key=st.sampled_from(["instances", "inputs"]))
def test_total_on_arbitrary_json(value: Any, key: str) -> None:
    assert_total(to_json_bytes(value))
    assert_total(to_json_bytes({key: value}))
    assert_total(to_json_bytes({key: [value]}))
    assert_total(to_json_bytes({key: value, "parameters": value}))


scalars = st.one_of(
    st.integers(-(2**64), 2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.text(max_size=3),
    st.none(),
)
rows = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.lists(st.lists(scalars, max_size=2), max_size=2),
    st.dictionaries(
        st.sampled_from(["a", "b", "c"]), scalars | st.lists(scalars, max_size=2), max_size=3
    ),
)


@FUZZ
@given(
    instances=st.lists(rows, min_size=1, max_size=4),
    columns=st.dictionaries(
        st.text(max_size=2), scalars | st.lists(rows, max_size=3), min_size=1, max_size=3
    ),
    params=st.none()
    | st.dictionaries(st.sampled_from(["outputs", "output", "x"]), json_values, max_size=2),
)
def test_total_on_rows_and_columns(
    instances: list[Any], columns: dict[str, Any], params: Any
) -> None:
    extra = {} if params is None else {"parameters": params}
    assert_total(to_json_bytes({"instances": instances, **extra}))
    assert_total(to_json_bytes({"inputs": instances, **extra}))
    assert_total(to_json_bytes({"inputs": columns, **extra}))


def test_strings_keep_trailing_nul_and_refuse_mixed_values() -> None:
    req = v1.decode_predict_request(b'{"instances": ["a\\u0000", "b"]}', "m")
    assert req.inputs[0].data.reshape(-1).tolist() == ["a\x00", "b"]
    with pytest.raises(InvalidInput, match="mixes strings"):
        v1.decode_predict_request(b'{"instances": [["a", 1]]}', "m")


def test_rows_of_empty_objects_are_refused() -> None:
    with pytest.raises(InvalidInput, match="no keys"):
        v1.decode_predict_request(b'{"instances": [{}, {}]}', "m")


def test_outputs_of_different_row_counts_are_whole_columns() -> None:
    a = Tensor("a", "INT64", (2,), np.array([1, 2]))
    b = Tensor("b", "INT64", (3,), np.array([1, 2, 3]))
    got = orjson.loads(v1.encode_predict_response(InferResponse("m", [a, b])))
    assert got == {"predictions": {"a": [1, 2], "b": [1, 2, 3]}}

"""How a request's tensors reach predict: one array (1-D for N single values), a DataFrame,
MLServer's content types, and holes of KServe-style records."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import numpy as np
import pytest
from codec_strategies import object_array
from modelserver import tabular
from modelserver.codecs import v1
from modelserver.errors import InvalidInput
from modelserver.model.content_types import output_content_types
from modelserver.model.inputs import default_inputs
from modelserver.types import InferRequest, Tensor


def request(*tensors: Tensor, **parameters: Any) -> InferRequest:
    return InferRequest("m", list(tensors), parameters=parameters)


def text(name: str, values: list[str], shape: tuple[int, ...], **params: Any) -> Tensor:
    return Tensor(name, "BYTES", shape, object_array([v.encode() for v in values], shape), params)


def test_n_single_values_stay_1d_and_a_table_model_makes_them_rows() -> None:
    single = v1.decode_predict_request(b'{"instances": [1.5, 2.5, 3.5]}', "m")
    values = default_inputs(single)
    assert values.shape == (3,)
    assert tabular.check_feature_count("m", values, 1).shape == (3, 1)
    assert tabular.check_feature_count("m", values, None).shape == (3,)
    with pytest.raises(InvalidInput, match="a list of single values is one value per row"):
        tabular.check_feature_count("m", values, 4)
    strings = default_inputs(v1.decode_predict_request(b'{"instances": ["a b", "c"]}', "m"))
    assert strings.shape == (2,) and strings.tolist() == ["a b", "c"]


@pytest.mark.parametrize("where", ["input", "request"])
def test_str_content_type_gives_n_strings(where: str) -> None:
    """StringRequestCodec's [N, 1] BYTES: N strings, as MLServer hands them over."""
    params = {"content_type": "str"}
    tensor = text("t", ["héllo", "x"], (2, 1), **(params if where == "input" else {}))
    got = default_inputs(request(tensor, **(params if where == "request" else {})))
    assert got.shape == (2,) and got.tolist() == ["héllo", "x"]
    assert default_inputs(request(text("t", ["a", "b"], (2, 1)))).shape == (2, 1)  # unmarked


def test_base64_and_datetime_are_decoded() -> None:
    raw = [b"\x00\xff", b""]
    encoded = text("b", [base64.b64encode(r).decode() for r in raw], (2, 1), content_type="base64")
    assert default_inputs(request(encoded)).tolist() == raw
    when = text("d", ["2021-08-24T15:01:19"], (1, 1), content_type="datetime")
    assert default_inputs(request(when)).tolist() == [datetime(2021, 8, 24, 15, 1, 19)]


@pytest.mark.parametrize(
    ("tensor", "words"),
    [
        (text("b", ["not base64!"], (1,), content_type="base64"), "element 0 is not valid"),
        (text("d", ["yesterday"], (1,), content_type="datetime"), "element 0 is not valid"),
        (text("x", ["a"], (1,), content_type="tensorflow"), "Unknown content_type"),
        (Tensor("n", "FP32", (1,), np.ones(1, np.float32), {"content_type": "str"}), "BYTES"),
    ],
)
def test_bad_content(tensor: Tensor, words: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        default_inputs(request(tensor))


def test_pd_content_type_makes_a_frame_of_one_input() -> None:
    frame = default_inputs(request(text("size", ["s", "l"], (2, 1)), content_type="pd"))
    assert list(frame.columns) == ["size"] and frame["size"].tolist() == ["s", "l"]


def test_columns_with_content_types_make_a_frame() -> None:
    frame = default_inputs(
        request(
            text("name", ["a", "b"], (2, 1), content_type="str"),
            Tensor("x", "FP64", (2, 1), np.array([[1.0], [2.0]]), {"content_type": "np"}),
            content_type="pd",
        )
    )
    assert frame.to_dict(orient="list") == {"name": ["a", "b"], "x": [1.0, 2.0]}


def test_holes_reach_only_a_model_that_takes_missing_values() -> None:
    holed = v1.decode_predict_request(b'{"instances": [{"a": 1, "b": 2}, {"a": 3}]}', "m")
    frame = default_inputs(holed, missing_ok=True)
    assert np.isnan(frame["b"][1])
    with pytest.raises(InvalidInput, match="'b' has no value in row 1"):
        default_inputs(holed)


def test_absent_features_are_nan_only_where_missing_values_are_taken() -> None:
    import pandas as pd

    frame = pd.DataFrame({"b": [1.0], "a": [2.0]})
    filled = tabular.align_columns("m", frame, ["a", "b", "c"], fill_missing=True)
    assert list(filled.columns) == ["a", "b", "c"] and np.isnan(filled["c"][0])
    with pytest.raises(InvalidInput, match="needs feature 'c'"):
        tabular.align_columns("m", frame, ["a", "b", "c"])


def test_outputs_marked_only_for_requests_with_content_types() -> None:
    outputs = [Tensor("p", "INT64", (1,), np.ones(1, np.int64)), text("l", ["x"], (1,))]
    output_content_types(request(text("t", ["a"], (1,))), outputs)
    assert all(not o.parameters for o in outputs)
    output_content_types(request(text("t", ["a"], (1,)), content_type="np"), outputs)
    assert [o.parameters for o in outputs] == [{"content_type": "np"}, {"content_type": "str"}]

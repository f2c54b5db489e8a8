"""MLflow's scoring protocol codec: /invocations bodies in, ``{"predictions"}`` and errors out.

The bodies are what MLflow's own scoring client and ``mlflow models serve``
users send; the answers follow MLflow's ``predictions_to_json`` (a DataFrame
as records, an array as its values, a mapping as an object).
"""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd
import pytest
from modelserver.codecs import mlflow
from modelserver.errors import InvalidInput, UnsupportedMediaType
from modelserver.types import InferResponse, Tensor

JSON = "application/json"
FRAME = pd.DataFrame({"x": [1.5, 2.5], "size": ["small", "large"], "n": [1, 2]})


def _decode(obj: object, content_type: str = JSON):
    return mlflow.decode_invocations_request(orjson.dumps(obj), content_type, "m")


def _columns(request) -> dict[str, list]:
    return {t.name: t.data.reshape(-1).tolist() for t in request.inputs}


@pytest.mark.parametrize("orient", ["split", "records"])
def test_dataframe_forms_are_one_tensor_per_column(orient: str) -> None:
    payload = orjson.loads(FRAME.to_json(orient=orient))
    request = _decode({f"dataframe_{orient}": payload, "params": {"scale": 2.0}})
    assert _columns(request) == FRAME.to_dict(orient="list")
    assert [t.datatype for t in request.inputs] == ["FP64", "BYTES", "INT64"]
    assert request.parameters == {"scale": 2.0, "content_type": "pd"}


def test_nulls_in_a_number_column_are_missing_values() -> None:
    request = _decode({"dataframe_records": [{"x": 1.0}, {"x": None}]})
    (tensor,) = request.inputs
    assert tensor.datatype == "FP64" and np.isnan(tensor.data[1])


def test_csv_with_a_header_row() -> None:
    body = FRAME.to_csv(index=False).encode()
    request = mlflow.decode_invocations_request(body, "text/csv; charset=utf-8", "m")
    assert _columns(request) == FRAME.to_dict(orient="list")
    assert request.parameters == {"content_type": "pd"}


def test_instances_and_inputs_are_tensorflow_servings_forms() -> None:
    rows = _decode({"instances": [[1.0, 2.0], [3.0, 4.0]]})
    assert [(t.name, t.shape) for t in rows.inputs] == [("instances", (2, 2))]
    columns = _decode({"inputs": {"a": [1, 2], "b": ["x", "y"]}, "params": {"k": 1}})
    assert _columns(columns) == {"a": [1, 2], "b": ["x", "y"]}
    assert columns.parameters == {"k": 1}  # not a DataFrame: no content_type
    texts = _decode({"inputs": ["a b", "c"]})
    assert texts.inputs[0].shape == (2,)  # N values, one each (a text model's column)


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ({"columns": ["x"], "data": [[1]]}, "exactly one of the fields"),
        ({"instances": [[1]], "inputs": [[1]]}, "got the fields instances, inputs"),
        ({"dataframe_split": [[1]]}, "'dataframe_split' must be an object"),
        ({"dataframe_records": [1, 2]}, "list of objects"),
        ({"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}, "not a table"),
        ({"instances": [[1]], "params": [1]}, "'params' must be a JSON object"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_malformed_bodies_are_400(obj: object, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        _decode(obj)


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/json; charset=latin-1", "application/json; format=split"],
)
def test_other_content_types_are_415(content_type: str | None) -> None:
    with pytest.raises(UnsupportedMediaType):
        mlflow.decode_invocations_request(b"{}", content_type, "m")


def test_bad_csv_is_400() -> None:
    with pytest.raises(InvalidInput, match="CSV"):
        mlflow.decode_invocations_request(b"\xff\xfe", "text/csv", "m")


def _tensor(name: str, values: list) -> Tensor:
    data = np.asarray(values, dtype=object if isinstance(values[0], str) else None)
    datatype = "BYTES" if data.dtype == object else "FP64" if data.dtype.kind == "f" else "INT64"
    return Tensor(name, datatype, data.shape, data)


def _predictions(response: InferResponse):
    return orjson.loads(mlflow.encode_invocations_response(response))["predictions"]


def test_answers_take_mlflows_shapes() -> None:
    labels = _tensor("predict", [0, 2])
    assert _predictions(InferResponse("m", [labels])) == [0, 2]
    probs = Tensor("predict", "FP64", (2, 2), np.array([[0.25, 0.75], [1.0, 0.0]]))
    assert _predictions(InferResponse("m", [probs])) == [[0.25, 0.75], [1.0, 0.0]]
    table = [_tensor("score", [0.5, 1.5]), _tensor("band", ["low", "high"])]
    frame = InferResponse("m", table, parameters={"content_type": "pd"})
    assert _predictions(frame) == [{"score": 0.5, "band": "low"}, {"score": 1.5, "band": "high"}]
    one_column = InferResponse("m", table[:1], parameters={"content_type": "pd"})
    assert _predictions(one_column) == [{"score": 0.5}, {"score": 1.5}]
    assert _predictions(InferResponse("m", table)) == {"score": [0.5, 1.5], "band": ["low", "high"]}


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "BAD_REQUEST"),
        (404, "ENDPOINT_NOT_FOUND"),
        (413, "BAD_REQUEST"),
        (500, "INTERNAL_ERROR"),
        (503, "TEMPORARILY_UNAVAILABLE"),
        (504, "DEADLINE_EXCEEDED"),
    ],
)
def test_error_bodies(status: int, code: str) -> None:
    assert orjson.loads(mlflow.encode_error(status, "why")) == {
        "error_code": code,
        "message": "why",
    }

"""MLflow's scoring protocol (``mlflow models serve``): ``POST /invocations`` in and out.

A body is JSON with exactly one of ``dataframe_split``, ``dataframe_records``,
``instances`` or ``inputs`` (and optionally ``params``), or CSV with a header
row, as MLflow's scoring server reads them. The two DataFrame forms and CSV
become one tensor per column and the request parameter ``content_type: pd``
(the model gets a DataFrame); ``instances`` and ``inputs`` are TensorFlow
Serving's forms, decoded as v1 decodes them. ``params`` become the request's
parameters, which a model validates against its own schema.

Answers are ``{"predictions": ...}`` in the shape MLflow gives a model's
result: a DataFrame (a response with ``content_type: pd``) as records, one
output as its values, several as an object of outputs. Errors are MLflow's
``{"error_code": ..., "message": ...}``, the code chosen from the HTTP status
as MLflow's own exceptions choose it.
"""

from __future__ import annotations

import io
from typing import Any

import orjson

from ..datatypes import datatype_of
from ..errors import InvalidInput, UnsupportedMediaType
from ..types import InferRequest, InferResponse, Tensor
from .tensor_data import check_input_count
from .v1 import output_values, payload_tensors, records
from .v2_rest import JSON_DUMPS_OPTIONS, loads_object

JSON = "application/json"
CSV = "text/csv"
DATAFRAME_SPLIT, DATAFRAME_RECORDS = "dataframe_split", "dataframe_records"
#: The input fields of a JSON body, exactly one of which it must have.
FORMATS = (DATAFRAME_SPLIT, DATAFRAME_RECORDS, "instances", "inputs")
PARAMS = "params"

#: HTTP status -> MLflow error code, as ``mlflow.exceptions`` pairs them.
ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "ENDPOINT_NOT_FOUND",
    409: "RESOURCE_CONFLICT",
    429: "REQUEST_LIMIT_EXCEEDED",
    499: "CANCELLED",
    500: "INTERNAL_ERROR",
    501: "NOT_IMPLEMENTED",
    503: "TEMPORARILY_UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def media_type(content_type: str | None) -> str:
    """``application/json`` or ``text/csv`` from a Content-Type; 415 for anything else."""
    if not content_type:
        raise UnsupportedMediaType(
            f"Content-Type is required: {JSON} or {CSV} (MLflow's scoring protocol)"
        )
    mime, *pairs = (part.strip() for part in content_type.split(";"))
    mime = mime.lower()
    if mime not in (JSON, CSV):
        raise UnsupportedMediaType(
            f"/invocations reads {JSON} or {CSV}; got Content-Type '{content_type}'"
        )
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key.strip().lower() != "charset":
            raise UnsupportedMediaType(f"Unrecognized Content-Type parameter '{key.strip()}'")
        if value.strip().strip('"').lower() != "utf-8":
            raise UnsupportedMediaType("/invocations reads UTF-8 only")
    return mime


def decode_invocations_request(
    body: bytes, content_type: str | None, model_name: str, max_inputs: int | None = None
) -> InferRequest:
    """An ``/invocations`` body (JSON or CSV) as an InferRequest; 400 or 415 otherwise.

    A table of more than ``max_inputs`` columns is refused before its columns are built.
    """
    if media_type(content_type) == CSV:
        return _frame_request(model_name, _read_csv(body), {}, max_inputs)
    obj = loads_object(body, "invocations request")
    present = [key for key in FORMATS if key in obj]
    if len(present) != 1:
        raise InvalidInput(
            f"The input must be a JSON object with exactly one of the fields {', '.join(FORMATS)}"
            f"; got the fields {', '.join(map(str, obj)) or 'none'}"
        )
    params = obj.get(PARAMS)
    if params is None:
        params = {}
    elif not isinstance(params, dict):
        raise InvalidInput(f"'{PARAMS}' must be a JSON object, got {type(params).__name__}")
    key = present[0]
    if key in (DATAFRAME_SPLIT, DATAFRAME_RECORDS):
        frame = _frame(key, obj[key], max_inputs, model_name)
        return _frame_request(model_name, frame, params, max_inputs)
    return InferRequest(
        model_name=model_name,
        inputs=payload_tensors(key, obj[key], max_inputs, model_name),
        parameters=dict(params),
    )


def _frame(key: str, payload: Any, limit: int | None, model: str) -> Any:
    """The DataFrame ``dataframe_split`` or ``dataframe_records`` describes (pandas reads it).

    Its columns are counted against ``limit`` before pandas builds anything.
    """
    import pandas as pd

    try:
        if key == DATAFRAME_SPLIT:
            if not isinstance(payload, dict) or "data" not in payload:
                raise InvalidInput(
                    f"'{DATAFRAME_SPLIT}' must be an object with 'data' (and 'columns')"
                )
            columns = payload.get("columns")
            if isinstance(columns, list):
                check_input_count(len(columns), limit, model)
            return pd.DataFrame(payload["data"], columns=columns)
        if not isinstance(payload, list) or not all(isinstance(row, dict) for row in payload):
            raise InvalidInput(f"'{DATAFRAME_RECORDS}' must be a list of objects (one per row)")
        check_input_count(len({name for row in payload for name in row}), limit, model)
        return pd.DataFrame.from_records(payload)
    except (ValueError, TypeError, AssertionError) as exc:
        raise InvalidInput(f"'{key}' is not a table: {exc}") from None


def _read_csv(body: bytes) -> Any:
    import pandas as pd

    try:
        return pd.read_csv(io.BytesIO(body), encoding="utf-8")
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise InvalidInput(
            f"The CSV body is not a table with a header row (DataFrame.to_csv's form): {exc}"
        ) from None


def _frame_request(
    model_name: str, frame: Any, params: dict[str, Any], limit: int | None
) -> InferRequest:
    """One tensor per column, numbers as numbers and everything else as BYTES objects."""
    if frame.shape[1] == 0:
        raise InvalidInput("The input table has no columns")
    check_input_count(frame.shape[1], limit, model_name)
    tensors = []
    for column in frame.columns:
        values = frame[column].to_numpy()
        if values.dtype.kind not in "biuf":
            values = values.astype(object)
        tensors.append(Tensor(str(column), datatype_of(values.dtype), values.shape, values))
    return InferRequest(
        model_name=model_name, inputs=tensors, parameters={**params, "content_type": "pd"}
    )


def encode_invocations_response(response: InferResponse) -> bytes:
    """``{"predictions": ...}`` as MLflow answers the model's result."""
    outputs = response.outputs
    predictions: Any
    if response.parameters.get("content_type") == "pd":
        predictions = records(outputs)
    elif len(outputs) == 1:
        predictions = output_values(outputs[0])
    else:
        predictions = {t.name: output_values(t) for t in outputs}
    return orjson.dumps({"predictions": predictions}, option=JSON_DUMPS_OPTIONS)


def encode_error(status: int, message: str) -> bytes:
    """MLflow's error body for an HTTP status."""
    code = ERROR_CODES.get(status, "BAD_REQUEST" if 400 <= status < 500 else "INTERNAL_ERROR")
    return orjson.dumps({"error_code": code, "message": message})

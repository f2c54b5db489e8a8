"""Requests built with MLServer's codecs, over REST and MLServer's own gRPC client.

MLServer 1.7.1 runs in its own environment (see conftest.py). Each codec marks
its request with ``content_type`` (np, str, pd, base64, datetime); the model
gets what MLServer would hand it (checked by the model itself, or against
the estimator's own answer here), and the request codec decodes the answer,
whose outputs carry MLServer's content types. The gRPC calls go through
MLServer's stub and converters, which read the raw answers.
"""

from __future__ import annotations

from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from serverproc import ServerProcess

pytestmark = pytest.mark.e2e

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [6.7, 3.0, 5.2, 2.3]]
TRANSPORTS = ("rest", "grpc")


def _call(server: ServerProcess, transport: str, model: str, codec: str, payload: Any) -> Any:
    where = {"url": server.http_url} if transport == "rest" else {"address": server.grpc_address}
    return {"transport": transport, "model": model, "codec": codec, "payload": payload, **where}


def _run(client: Any, *calls: dict[str, Any]) -> list[Any]:
    answers = client({"calls": list(calls)})
    for answer in answers:
        assert "error" not in answer, answer
    return answers


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_numpy_request_codec(sklearn_server, sklearn_root, mlserver_client, transport) -> None:
    estimator = joblib.load(sklearn_root / "iris" / "model.joblib")
    payload = {"data": ROWS, "dtype": "float64"}
    (answer,) = _run(mlserver_client, _call(sklearn_server, transport, "iris", "numpy", payload))
    assert answer["decoded"] == estimator.predict(np.asarray(ROWS)).tolist()
    assert answer["outputs"][0]["parameters"] == {"content_type": "np"}
    assert answer["id"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_string_request_codec(sklearn_server, mlserver_client, text_pipeline, transport) -> None:
    """StringRequestCodec sends BYTES [N, 1] marked str: the pipeline gets N strings."""
    texts = [
        "sepallength medium sepalwidth short petallength medium petalwidth medium",
        "sepallength short sepalwidth long petallength short petalwidth short",
    ]
    (answer,) = _run(mlserver_client, _call(sklearn_server, transport, "text", "string", texts))
    assert answer["decoded"] == text_pipeline.predict(texts).tolist()
    assert answer["outputs"][0]["parameters"] == {"content_type": "str"}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_pandas_codec(sklearn_server, sklearn_root, mlserver_client, transport) -> None:
    """PandasCodec: one input per column (a string column among them), content_type pd."""
    with (sklearn_root / "iris-pipeline" / "model.pkl").open("rb") as f:
        pipeline = pd.read_pickle(f)
    frame = pd.DataFrame(
        ROWS, columns=["sepal_length", "sepal_width", "petal_length", "petal_width"]
    )
    frame["size"] = ["small", "large", "large"]
    payload = frame.to_dict(orient="list")
    (answer,) = _run(
        mlserver_client, _call(sklearn_server, transport, "iris-pipeline", "pandas", payload)
    )
    assert answer["decoded"] == {"predict": pipeline.predict(frame).tolist()}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_base64_codec_reaches_the_model_as_bytes(inspect_server, mlserver_client, transport):
    values = [b"\x00\x01\xff", b"PNG\r\n\x1a\n", b""]
    payload = [v.hex() for v in values]
    (answer,) = _run(
        mlserver_client, _call(inspect_server, transport, "inspect", "base64", payload)
    )
    seen = _seen(answer)
    assert seen["values"] == payload
    assert seen["kinds"] == ["bytes"] * 3
    assert seen["shape"] == [3]  # [N, 1] marked base64: N values


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_datetime_codec_reaches_the_model_as_datetimes(inspect_server, mlserver_client, transport):
    payload = ["2021-08-24T15:01:19", "2026-12-03T10:00:00+01:00"]
    (answer,) = _run(
        mlserver_client, _call(inspect_server, transport, "inspect", "datetime", payload)
    )
    seen = _seen(answer)
    assert seen["values"] == payload
    assert seen["kinds"] == ["datetime", "datetime"]
    assert seen["shape"] == [2]


def _seen(answer: dict[str, Any]) -> dict[str, Any]:
    """The inspect model's three outputs, decoded by MLServer's codec (all outputs: a frame)."""
    names = [o["name"] for o in answer["outputs"]]
    assert names == ["values", "kinds", "shape"], answer
    decoded = answer["decoded"]
    return dict(zip(names, decoded, strict=True)) if isinstance(decoded, list) else decoded


def test_unknown_content_type_is_400(inspect_server) -> None:
    import httpx

    body = {
        "parameters": {"content_type": "tensorflow"},
        "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}],
    }
    reply = httpx.post(f"{inspect_server.http_url}/v2/models/inspect/infer", json=body)
    assert reply.status_code == 400 and "tensorflow" in reply.json()["error"]

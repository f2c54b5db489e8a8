"""Several named inputs reach the model as a DataFrame (a ColumnTransformer pipeline).

The iris-pipeline sample scales four numeric columns and one-hot encodes a
string column, so it only works when the server builds a DataFrame with the
request's input names as columns and BYTES as Python strings.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp

NUMERIC = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture(scope="module")
def frame():
    import sample_models

    X, _ = sample_models.iris_frame()
    return X.iloc[[0, 60, 120, 149]].reset_index(drop=True)


@pytest.fixture(scope="module")
def pipeline(sample_models: dict[str, Path]):
    with (sample_models["iris-pipeline"] / "model.pkl").open("rb") as f:
        return pickle.load(f)


def _inputs(module, frame, binary=None):
    inputs = []
    for col in NUMERIC:
        inp = module.InferInput(col, [len(frame)], "FP64")
        values = frame[col].to_numpy(dtype=np.float64)
        if binary is None:
            inp.set_data_from_numpy(values)
        else:
            inp.set_data_from_numpy(values, binary_data=binary)
        inputs.append(inp)
    size = module.InferInput("size", [len(frame), 1], "BYTES")
    values = frame["size"].to_numpy(dtype=object).reshape(-1, 1)
    if binary is None:
        size.set_data_from_numpy(values)
    else:
        size.set_data_from_numpy(values, binary_data=binary)
    inputs.append(size)
    return inputs


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_named_inputs_http(multi_server, frame, pipeline, binary):
    client = thttp.InferenceServerClient(multi_server.http_address)
    result = client.infer("iris-pipeline", _inputs(thttp, frame, binary))
    np.testing.assert_array_equal(result.as_numpy("predict"), pipeline.predict(frame))


def test_named_inputs_grpc(multi_server, frame, pipeline):
    client = tgrpc.InferenceServerClient(multi_server.grpc_address)
    result = client.infer(
        "iris-pipeline",
        _inputs(tgrpc, frame),
        outputs=[tgrpc.InferRequestedOutput("predict_proba")],
    )
    np.testing.assert_allclose(result.as_numpy("predict_proba"), pipeline.predict_proba(frame))


def test_v1_instances_as_objects(multi_server, frame, pipeline):
    rows = frame.to_dict(orient="records")
    r = httpx.post(
        f"{multi_server.http_url}/v1/models/iris-pipeline:predict", json={"instances": rows}
    )
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == pipeline.predict(frame).tolist()


def test_v1_columnar_inputs(multi_server, frame, pipeline):
    columns = {col: frame[col].tolist() for col in frame.columns}
    r = httpx.post(
        f"{multi_server.http_url}/v1/models/iris-pipeline:predict", json={"inputs": columns}
    )
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == pipeline.predict(frame).tolist()


def test_pipeline_metadata_names_columns(multi_server):
    meta = httpx.get(f"{multi_server.http_url}/v2/models/iris-pipeline").json()
    inputs = {i["name"]: i["datatype"] for i in meta["inputs"]}
    assert inputs == {**dict.fromkeys(NUMERIC, "FP64"), "size": "BYTES"}
    assert meta["parameters"]["feature_names"] == [*NUMERIC, "size"]


def test_multi_model_directory_serves_each_subfolder(multi_server, frame, pipeline):
    base = multi_server.http_url
    assert sorted(httpx.get(f"{base}/v1/models").json()["models"]) == ["iris", "iris-pipeline"]
    for name in ("iris", "iris-pipeline"):
        assert httpx.get(f"{base}/v2/models/{name}/ready").status_code == 200
    index = httpx.post(f"{base}/v2/repository/index").json()
    assert {(m["name"], m["state"]) for m in index} == {
        ("iris", "READY"),
        ("iris-pipeline", "READY"),
    }
    rows = frame[NUMERIC].to_numpy()
    r = httpx.post(f"{base}/v1/models/iris:predict", json={"instances": rows.tolist()})
    assert r.status_code == 200
    assert len(r.json()["predictions"]) == len(rows)

"""Every protocol on real models, through real clients against the real process.

tritonclient HTTP (JSON and binary extension) and gRPC (raw contents), our
own gRPC messages for typed contents, httpx for v1; expected values come
from the same estimator loaded in the test.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import httpx
import joblib
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from modelserver import protos as pb

ROWS = np.array(
    [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]], dtype=np.float64
)


@pytest.fixture(scope="module")
def estimator(iris_dir: Path):
    return joblib.load(iris_dir / "model.joblib")


def _http_infer(server, rows, binary, outputs=("predict",), datatype="FP64", request_id="req-1"):
    client = thttp.InferenceServerClient(server.http_address)
    inp = thttp.InferInput("input-0", list(rows.shape), datatype)
    inp.set_data_from_numpy(rows.astype(thttp.triton_to_np_dtype(datatype)), binary_data=binary)
    outs = [thttp.InferRequestedOutput(name, binary_data=binary) for name in outputs]
    return client.infer("iris", [inp], outputs=outs, request_id=request_id)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("datatype", ["FP64", "FP32"])
def test_v2_http_tritonclient(iris_server, estimator, binary, datatype):
    result = _http_infer(iris_server, ROWS, binary, ("predict", "predict_proba"), datatype)
    np.testing.assert_array_equal(result.as_numpy("predict"), estimator.predict(ROWS))
    np.testing.assert_allclose(
        result.as_numpy("predict_proba"), estimator.predict_proba(ROWS), rtol=1e-5
    )
    response = result.get_response()
    assert response["id"] == "req-1"
    assert response["model_name"] == "iris"
    by_name = {o["name"]: o for o in response["outputs"]}
    assert by_name["predict"]["datatype"] == "INT64"
    assert by_name["predict_proba"]["shape"] == [3, 3]
    if binary:
        assert all("binary_data_size" in o["parameters"] for o in response["outputs"])
    else:
        assert all("data" in o for o in response["outputs"])


def test_v2_http_output_selection_order(iris_server, estimator):
    result = _http_infer(iris_server, ROWS, False, ("predict_proba",))
    outputs = result.get_response()["outputs"]
    assert [o["name"] for o in outputs] == ["predict_proba"]
    result = _http_infer(iris_server, ROWS, True, ("predict_proba", "predict"))
    assert [o["name"] for o in result.get_response()["outputs"]] == ["predict_proba", "predict"]


def test_v2_http_default_output_is_predict(iris_server, estimator):
    body = {
        "inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP64", "data": ROWS.tolist()}],
    }
    r = httpx.post(f"{iris_server.http_url}/v2/models/iris/infer", json=body)
    assert r.status_code == 200, r.text
    out = r.json()["outputs"]
    assert [o["name"] for o in out] == ["predict"]
    assert out[0]["data"] == estimator.predict(ROWS).tolist()
    assert r.json()["id"]  # generated: KServe's SDK requires one


def test_v2_http_flat_and_nested_data_agree(iris_server, estimator):
    url = f"{iris_server.http_url}/v2/models/iris/versions/1/infer"
    flat = {
        "inputs": [
            {"name": "x", "shape": [3, 4], "datatype": "FP32", "data": ROWS.reshape(-1).tolist()}
        ]
    }
    nested = {"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP32", "data": ROWS.tolist()}]}
    a, b = httpx.post(url, json=flat), httpx.post(url, json=nested)
    assert a.status_code == b.status_code == 200
    assert a.json()["outputs"] == b.json()["outputs"]
    assert a.json()["outputs"][0]["data"] == estimator.predict(ROWS).tolist()


def test_v2_http_binary_output_for_json_input(iris_server, estimator):
    body = {
        "inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP64", "data": ROWS.tolist()}],
        "parameters": {"binary_data_output": True},
    }
    r = httpx.post(f"{iris_server.http_url}/v2/models/iris/infer", json=body)
    assert r.status_code == 200
    header_length = int(r.headers["inference-header-content-length"])
    header = httpx.Response(200, content=r.content[:header_length]).json()
    (out,) = header["outputs"]
    assert out["parameters"]["binary_data_size"] == 3 * 8
    labels = np.frombuffer(r.content[header_length:], dtype="<i8")
    np.testing.assert_array_equal(labels, estimator.predict(ROWS))


@pytest.mark.parametrize(
    "outputs", [("predict",), ("predict_proba",), ("predict", "predict_proba")]
)
def test_v2_grpc_tritonclient(iris_server, estimator, outputs):
    client = tgrpc.InferenceServerClient(iris_server.grpc_address)
    inp = tgrpc.InferInput("input-0", list(ROWS.shape), "FP32")
    inp.set_data_from_numpy(ROWS.astype(np.float32))
    result = client.infer(
        "iris", [inp], outputs=[tgrpc.InferRequestedOutput(n) for n in outputs], request_id="g-1"
    )
    response = result.get_response()
    assert response.id == "g-1"
    assert [o.name for o in response.outputs] == list(outputs)
    if "predict" in outputs:
        np.testing.assert_array_equal(result.as_numpy("predict"), estimator.predict(ROWS))
    if "predict_proba" in outputs:
        np.testing.assert_allclose(
            result.as_numpy("predict_proba"), estimator.predict_proba(ROWS), rtol=1e-5
        )


def _grpc_call(server, method: str, request, response_cls):
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = channel.unary_unary(
            f"/inference.GRPCInferenceService/{method}",
            request_serializer=type(request).SerializeToString,
            response_deserializer=response_cls.FromString,
        )
        return stub(request, timeout=10)


def test_v2_grpc_typed_contents_answered_raw(iris_server, estimator):
    """Typed contents in; the answer raw, as Triton's always is."""
    request = pb.ModelInferRequest(model_name="iris", id="typed")
    tensor = request.inputs.add(name="x", datatype="FP64", shape=[3, 4])
    tensor.contents.fp64_contents.extend(ROWS.reshape(-1).tolist())
    request.outputs.add(name="predict")
    response = _grpc_call(iris_server, "ModelInfer", request, pb.ModelInferResponse)
    assert response.id == "typed"
    (out,) = response.outputs
    assert out.datatype == "INT64" and list(out.shape) == [3]
    assert not out.HasField("contents")
    labels = np.frombuffer(response.raw_output_contents[0], dtype="<i8")
    np.testing.assert_array_equal(labels, estimator.predict(ROWS))


def test_grpc_health_and_metadata(iris_server):
    client = tgrpc.InferenceServerClient(iris_server.grpc_address)
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("iris")
    assert client.is_model_ready("iris", "1")
    meta = client.get_server_metadata()
    # No shared memory without --allow_shared_memory: not claimed.
    assert set(meta.extensions) == {
        "binary_tensor_data",
        "model_repository",
        "statistics",
        "model_configuration",
    }
    model = client.get_model_metadata("iris")
    assert model.name == "iris" and list(model.versions) == ["1"]
    assert [list(i.shape) for i in model.inputs] == [[-1, 4]]
    assert {o.name: o.datatype for o in model.outputs} == {
        "predict": "INT64",
        "predict_proba": "FP64",
        "contributions": "FP64",
    }


def test_http_health_and_metadata(iris_server, estimator):
    base = iris_server.http_url
    assert httpx.get(f"{base}/v2/health/live").status_code == 200
    assert httpx.get(f"{base}/v2/health/ready").status_code == 200
    for path in ("/v2/models/iris/ready", "/v2/models/iris/versions/1/ready"):
        r = httpx.get(base + path)
        assert r.status_code == 200 and r.json()["ready"] is True
    server = httpx.get(f"{base}/v2").json()
    assert server["name"] == "sklearnserver"
    assert set(server["extensions"]) == {
        "binary_tensor_data",
        "model_repository",
        "statistics",
        "model_configuration",
    }
    for path in ("/v2/models/iris", "/v2/models/iris/versions/1"):
        meta = httpx.get(base + path).json()
        assert meta["name"] == "iris"
        assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
        assert meta["parameters"]["classes"] == estimator.classes_.tolist()
        assert meta["parameters"]["n_features"] == 4


# -- KServe v1 --------------------------------------------------------------


def test_v1_models_and_status(iris_server):
    base = iris_server.http_url
    assert httpx.get(f"{base}/v1/models").json() == {"models": ["iris"]}
    assert httpx.get(f"{base}/v1/models/iris").json() == {"name": "iris", "ready": True}


def test_v1_instances(iris_server, estimator):
    r = httpx.post(
        f"{iris_server.http_url}/v1/models/iris:predict", json={"instances": ROWS.tolist()}
    )
    assert r.status_code == 200
    assert r.json() == {"predictions": estimator.predict(ROWS).tolist()}


def test_v1_inputs_rows(iris_server, estimator):
    r = httpx.post(f"{iris_server.http_url}/v1/models/iris:predict", json={"inputs": ROWS.tolist()})
    assert r.json() == {"predictions": estimator.predict(ROWS).tolist()}


@pytest.mark.parametrize(
    "parameters", [{"outputs": "predict_proba"}, {"outputs": ["predict_proba"]}]
)
def test_v1_predict_proba_parameter(iris_server, estimator, parameters):
    body = {"instances": ROWS.tolist(), "parameters": parameters}
    r = httpx.post(f"{iris_server.http_url}/v1/models/iris:predict", json=body)
    np.testing.assert_allclose(r.json()["predictions"], estimator.predict_proba(ROWS), rtol=1e-9)


def test_v1_two_outputs_per_row(iris_server, estimator):
    body = {"instances": ROWS.tolist(), "parameters": {"outputs": ["predict", "predict_proba"]}}
    predictions = httpx.post(f"{iris_server.http_url}/v1/models/iris:predict", json=body).json()[
        "predictions"
    ]
    assert [p["predict"] for p in predictions] == estimator.predict(ROWS).tolist()
    np.testing.assert_allclose(
        [p["predict_proba"] for p in predictions], estimator.predict_proba(ROWS)
    )


def test_v1_explain_adds_up_to_the_decision_function(iris_server, estimator):
    r = httpx.post(
        f"{iris_server.http_url}/v1/models/iris:explain", json={"instances": ROWS.tolist()}
    )
    assert r.status_code == 200, r.text
    explanations = r.json()["explanations"]
    sums = [np.sum(e["contributions"], axis=1) + e["bias"] for e in explanations]
    np.testing.assert_allclose(sums, estimator.decision_function(ROWS))
    r = httpx.post(f"{iris_server.http_url}/v1/models/nope:explain", json={"instances": []})
    assert r.status_code == 404 and r.json()["error"]


def test_v1_explain_of_a_model_that_cannot_is_refused_clearly(multi_server):
    r = httpx.post(
        f"{multi_server.http_url}/v1/models/iris-pipeline:explain",
        json={"instances": [{"sepal_length": 5.1}]},
    )
    assert r.status_code == 501
    assert "ColumnTransformer" in r.json()["error"]


def test_mlflow_scoring_routes_only_for_runtimes_that_speak_it(iris_server):
    """sklearnserver declares no extra protocol: MLflow's paths are unknown, as JSON 404s."""
    for method, path in (("POST", "/invocations"), ("GET", "/ping"), ("GET", "/health")):
        reply = httpx.request(method, f"{iris_server.http_url}{path}", json={})
        assert reply.status_code == 404, (path, reply.text)
        assert reply.json() == {"error": "Not Found"}

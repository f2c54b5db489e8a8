"""tfserver end to end: TF Serving's REST and gRPC APIs and the Open Inference Protocol.

One server (``--device cpu``) serves the four samples of
examples/samples/tf_models.py as a multi-model directory: the Keras iris
export, a tf.Module with three signatures (floats; strings; every other
type), TF Serving's versioned layout (versions 1 and 2) and the TF1-style
half-plus-three with predict, classify and regress signatures. Every answer
is compared with what TensorFlow itself computes in this process: the
SavedModel loaded with ``tf.saved_model.load`` and its signature called
eagerly (a different path from the server's session). gRPC requests and
answers go through TensorFlow's own TensorProto codec (tfserving_client).
Startup checks run the real process to its exit; the GPU test runs only
where TensorFlow sees a GPU.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from google.protobuf import json_format
from serverproc import ServerProcess, free_port, metric, run_to_exit
from tfserving_client import TFServingClient

tf = pytest.importorskip("tensorflow", reason="tfserver's tensorflow-cpu is not installed")
from modelserver.protos import tfserving as tfs  # noqa: E402
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2  # noqa: E402

pytestmark = pytest.mark.e2e

MODELS = ("iris-keras", "module", "versioned", "half-plus-three")
LABELS = "--version_labels=stable=1,canary=2"


def _iris(n: int) -> np.ndarray:
    from sklearn.datasets import load_iris

    X = load_iris().data
    return X[(np.arange(n) * 7) % len(X)].astype(np.float32)


def _strings(*items: bytes) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = list(items)
    return out


#: One request's inputs per (model, signature), as TensorFlow takes them.
TEXT = _strings("h\u00e9llo".encode(), b"\xffbinary\x00", b"")
TYPED = {
    "count": np.array([7, -3, 2**40], dtype=np.int64),
    "flag": np.array([True, False, True]),
    "half": np.array([[0.5, -1.25], [1000.0, 0.000123], [2.0, 3.0]], dtype=np.float16),
    "small": np.array([-128, 5, 127], dtype=np.int8),
}
AFFINE = {"x": np.array([[1.0, 2.0, 3.0], [4.0, 5.0, -6.5]], dtype=np.float32)}


# -- fixtures --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def samples(framework_samples) -> dict[str, Path]:
    return framework_samples("tensorflow")


@pytest.fixture(scope="module")
def root(samples: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tf-models")
    for name in MODELS:
        shutil.copytree(samples[name], root / name)
    return root


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        "tfserver",
        ["--model_name=unused", f"--model_dir={root}", "--device=cpu", "--nthread=1", LABELS],
    )
    with proc:
        yield proc


@pytest.fixture(scope="module")
def loaded(samples: dict[str, Path]) -> dict[str, Any]:
    """TensorFlow in this process: the reference answers (eager signature calls)."""
    models = {
        name: tf.saved_model.load(str(samples[name])) for name in MODELS if name != "versioned"
    }
    for version in ("1", "2"):
        models[f"versioned/{version}"] = tf.saved_model.load(str(samples["versioned"] / version))
    return models


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[TFServingClient]:
    found = TFServingClient(server.grpc_address)
    yield found
    found.close()


def reference(loaded: dict[str, Any], model: str, signature: str, inputs: dict[str, Any]) -> dict:
    function = loaded[model].signatures[signature]
    out = function(**{k: tf.constant(v) for k, v in inputs.items()})
    return {name: value.numpy() for name, value in out.items()}


def saved_signature_defs(path: Path) -> dict[str, Any]:
    """The SavedModel's own SignatureDefs, read with TensorFlow's protos (no initialiser)."""
    saved = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    defs = saved.meta_graphs[0].signature_def
    return {name: defs[name] for name in defs if not name.startswith("__")}


def _post(server: ServerProcess, path: str, body: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{server.http_url}{path}", content=content, timeout=60)


def _ok(reply: httpx.Response) -> Any:
    assert reply.status_code == 200, reply.text
    return json.loads(reply.text)  # Python's parser: NaN and Infinity as TF Serving writes them


def _close(got: Any, want: np.ndarray, name: str = "") -> None:
    got = np.asarray(got)
    assert got.shape == want.shape, (name, got.shape, want.shape)
    if want.dtype.kind == "f":
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7, equal_nan=True, err_msg=name)
    elif want.dtype == object:
        assert got.tolist() == want.tolist(), name
    else:
        assert got.tolist() == want.tolist(), name


def _b64(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode()}


def _text_json(value: bytes, as_bytes: bool) -> Any:
    """How TF Serving's REST API writes one DT_STRING value (ours: b64 when not UTF-8)."""
    if not as_bytes:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return _b64(value)


def _example(**features: Any) -> Any:
    """A tf.train.Example built by TensorFlow (floats, ints or bytes per feature)."""
    feature = {}
    for name, values in features.items():
        values = values if isinstance(values, list) else [values]
        if isinstance(values[0], float):
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
        elif isinstance(values[0], int):
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
        else:
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
    return tf.train.Example(features=tf.train.Features(feature=feature))


def _serialized(examples: list[Any], context: Any = None) -> np.ndarray:
    prefix = context.SerializeToString() if context is not None else b""
    return _strings(*(prefix + e.SerializeToString() for e in examples))


# -- REST :predict ---------------------------------------------------------------------


def test_rest_predict_rows_and_columns_of_one_output(server, loaded) -> None:
    x = _iris(5)
    want = reference(loaded, "iris-keras", "serving_default", {"features": x})["output_0"]
    rows = _ok(_post(server, "/v1/models/iris-keras:predict", {"instances": x.tolist()}))
    assert list(rows) == ["predictions"]
    _close(rows["predictions"], want)
    columns = _ok(_post(server, "/v1/models/iris-keras:predict", {"inputs": x.tolist()}))
    assert list(columns) == ["outputs"]
    _close(columns["outputs"], want)
    # The signature named explicitly, and Keras' second signature, answer the same.
    for signature in ("serving_default", "serve"):
        body = {"signature_name": signature, "instances": x.tolist()}
        _close(_ok(_post(server, "/v1/models/iris-keras:predict", body))["predictions"], want)


def test_rest_predict_several_outputs(server, loaded) -> None:
    want = reference(loaded, "module", "serving_default", AFFINE)
    rows = _ok(_post(server, "/v1/models/module:predict", {"instances": AFFINE["x"].tolist()}))
    # One object per example, keyed by output name.
    assert len(rows["predictions"]) == 2
    for name, value in want.items():
        _close([row[name] for row in rows["predictions"]], value, name)
    columns = _ok(
        _post(server, "/v1/models/module:predict", {"inputs": {"x": AFFINE["x"].tolist()}})
    )
    assert sorted(columns["outputs"]) == sorted(want)
    for name, value in want.items():
        _close(columns["outputs"][name], value, name)


def test_rest_strings_b64_in_and_bytes_outputs(server, loaded) -> None:
    want = reference(loaded, "module", "text", {"text": TEXT})
    instances = [_text_json(v, as_bytes=False) for v in TEXT]
    assert instances[1] == _b64(b"\xffbinary\x00")  # not UTF-8: sent as b64
    body = {"signature_name": "text", "instances": instances}
    rows = _ok(_post(server, "/v1/models/module:predict", body))["predictions"]
    for i, row in enumerate(rows):
        # "_bytes" outputs are always base64, other strings only when not UTF-8.
        assert row["text_bytes"] == _b64(want["text_bytes"][i])
        assert row["upper"] == _text_json(want["upper"][i], as_bytes=False)
        assert row["length"] == want["length"][i]


def test_rest_rows_of_named_inputs_of_every_type(server, loaded) -> None:
    want = reference(loaded, "module", "typed", TYPED)
    instances = [
        {name: value[i].tolist() for name, value in TYPED.items()}
        for i in range(len(TYPED["count"]))
    ]
    rows = _ok(
        _post(
            server, "/v1/models/module:predict", {"signature_name": "typed", "instances": instances}
        )
    )
    for name, value in want.items():
        _close(
            np.asarray([row[name] for row in rows["predictions"]], dtype=value.dtype), value, name
        )
    body = {"signature_name": "typed", "inputs": {k: v.tolist() for k, v in TYPED.items()}}
    columns = _ok(_post(server, "/v1/models/module:predict", body))["outputs"]
    for name, value in want.items():
        _close(np.asarray(columns[name], dtype=value.dtype), value, name)


def test_rest_nan_and_infinity_travel_as_tf_serving_writes_them(server, loaded) -> None:
    x = np.array([[np.nan, 1.0, 2.0], [np.inf, -np.inf, 0.5]], dtype=np.float32)
    want = reference(loaded, "module", "serving_default", {"x": x})
    body = b'{"inputs": {"x": [[NaN, 1.0, 2.0], [Infinity, -Infinity, 0.5]]}}'
    reply = _post(server, "/v1/models/module:predict", body)
    assert b"NaN" in reply.content
    out = _ok(reply)["outputs"]
    for name, value in want.items():
        _close(out[name], value, name)


def test_rest_versions_and_labels(server, loaded) -> None:
    x = np.array([1.5, -2.0], dtype=np.float32)
    answers = {
        v: reference(loaded, f"versioned/{v}", "serving_default", {"x": x})["y"] for v in "12"
    }
    for path, version in (
        ("/v1/models/versioned", "2"),  # the highest by default
        ("/v1/models/versioned/versions/1", "1"),
        ("/v1/models/versioned/versions/2", "2"),
        ("/v1/models/versioned/labels/stable", "1"),
        ("/v1/models/versioned/labels/canary", "2"),
    ):
        out = _ok(_post(server, f"{path}:predict", {"instances": x.tolist()}))
        _close(out["predictions"], answers[version], path)
    missing = _post(server, "/v1/models/versioned/versions/3:predict", {"instances": [1.0]})
    assert missing.status_code == 404, missing.text
    assert "error" in missing.json()
    unknown = _post(server, "/v1/models/versioned/labels/beta:predict", {"instances": [1.0]})
    assert unknown.status_code == 400
    assert "Unrecognized servable version label: beta" in unknown.json()["error"]
    not_a_number = _post(server, "/v1/models/versioned/versions/x1:predict", {"instances": [1.0]})
    assert not_a_number.status_code == 400
    assert "to numeric" in not_a_number.json()["error"]


# -- REST :classify and :regress -------------------------------------------------------


def test_rest_classify_and_regress(server, loaded) -> None:
    examples = [{"x": 2.0}, {"x": [4.5]}, {"x": -1.0, "offset": 0.25}]
    tf_examples = [_example(x=2.0), _example(x=4.5), _example(x=-1.0, offset=0.25)]
    classify = reference(
        loaded, "half-plus-three", "classify", {"inputs": _serialized(tf_examples)}
    )
    reply = _ok(
        _post(
            server,
            "/v1/models/half-plus-three:classify",
            {"signature_name": "classify", "examples": examples},
        )
    )
    assert list(reply) == ["results"]
    for got, classes, scores in zip(
        reply["results"], classify["classes"], classify["scores"], strict=True
    ):
        assert [pair[0] for pair in got] == [c.decode() for c in classes]
        np.testing.assert_allclose([pair[1] for pair in got], scores, rtol=1e-6)
    regress = reference(loaded, "half-plus-three", "regress", {"inputs": _serialized(tf_examples)})
    reply = _ok(
        _post(
            server,
            "/v1/models/half-plus-three:regress",
            {"signature_name": "regress", "examples": examples},
        )
    )
    np.testing.assert_allclose(reply["results"], regress["outputs"].reshape(-1), rtol=1e-6)


def test_rest_context_is_shared_by_every_example(server, loaded) -> None:
    context = _example(offset=1.5)
    tf_examples = [_example(x=1.0), _example(x=3.0)]
    want = reference(
        loaded, "half-plus-three", "regress", {"inputs": _serialized(tf_examples, context)}
    )
    body = {
        "signature_name": "regress",
        "context": {"offset": 1.5},
        "examples": [{"x": 1.0}, {"x": 3.0}],
    }
    got = _ok(_post(server, "/v1/models/half-plus-three:regress", body))["results"]
    np.testing.assert_allclose(got, want["outputs"].reshape(-1), rtol=1e-6)


def test_rest_classify_needs_a_classify_signature(server) -> None:
    reply = _post(server, "/v1/models/half-plus-three:classify", {"examples": [{"x": 1.0}]})
    assert reply.status_code == 400
    assert reply.json()["error"].startswith(
        "Expected classification signature method_name to be tensorflow/serving/classify"
    )
    # ...while :predict runs any signature, classify's included.
    serialized = _serialized([_example(x=2.0)])
    body = {"signature_name": "classify", "instances": [_b64(serialized[0])]}
    assert _post(server, "/v1/models/half-plus-three:predict", body).status_code == 200


# -- REST status and metadata ----------------------------------------------------------


def _status(version: int, state: str = "AVAILABLE") -> dict[str, Any]:
    return {
        "version": str(version),
        "state": state,
        "status": {"error_code": "OK", "error_message": ""},
    }


def test_rest_model_status_is_tf_servings(server) -> None:
    def get(path: str) -> Any:
        return _ok(httpx.get(f"{server.http_url}{path}", timeout=30))

    assert get("/v1/models/versioned") == {"model_version_status": [_status(2), _status(1)]}
    assert get("/v1/models/versioned/versions/1") == {"model_version_status": [_status(1)]}
    assert get("/v1/models/versioned/labels/canary") == {"model_version_status": [_status(2)]}
    assert get("/v1/models/iris-keras") == {"model_version_status": [_status(1)]}
    missing = httpx.get(f"{server.http_url}/v1/models/absent")
    assert missing.status_code == 404
    assert list(missing.json()) == ["error"]


@pytest.mark.parametrize("model", ["module", "half-plus-three", "iris-keras"])
def test_rest_metadata_is_the_savedmodels_signature_map(server, samples, model) -> None:
    meta = _ok(httpx.get(f"{server.http_url}/v1/models/{model}/metadata", timeout=30))
    assert meta["model_spec"] == {"name": model, "signature_name": "", "version": "1"}
    want = {
        name: json_format.MessageToDict(
            sig, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        for name, sig in saved_signature_defs(samples[model]).items()
    }
    assert meta["metadata"]["signature_def"]["signature_def"] == want


def test_rest_metadata_of_a_version(server) -> None:
    meta = _ok(httpx.get(f"{server.http_url}/v1/models/versioned/versions/1/metadata"))
    assert meta["model_spec"]["version"] == "1"
    assert list(meta["metadata"]["signature_def"]["signature_def"]) == ["serving_default"]


# -- REST malformed requests: TF Serving's 400s, and the server keeps serving ----------


BAD = [
    ("iris-keras", "predict", b"", "The document is empty"),
    ("iris-keras", "predict", b"{not json", "JSON Parse error"),
    ("iris-keras", "predict", b"[1, 2]", "not an object"),
    (
        "iris-keras",
        "predict",
        {"instances": [[1, 2, 3, 4]], "inputs": [[1, 2, 3, 4]]},
        "only one of",
    ),
    (
        "iris-keras",
        "predict",
        {"signature_name": "serving_default"},
        "Missing 'inputs' or 'instances'",
    ),
    ("iris-keras", "predict", {"instances": []}, "No values in 'instances' array"),
    ("iris-keras", "predict", {"instances": "x"}, "to be an list/array"),
    (
        "iris-keras",
        "predict",
        {"instances": [["a", "b", "c", "d"]]},
        "strings where numbers belong",
    ),
    ("iris-keras", "predict", {"instances": [[1, 2, 3, 4], [1, 2]]}, "not a regular array"),
    ("iris-keras", "predict", {"instances": [[1, 2, 3]]}, "expects shape"),
    (
        "iris-keras",
        "predict",
        {"signature_name": 3, "instances": [[1, 2, 3, 4]]},
        "must be a string",
    ),
    (
        "iris-keras",
        "predict",
        {"signature_name": "nope", "inputs": [[1, 2, 3, 4]]},
        "not found in signature def",
    ),
    (
        "module",
        "predict",
        {"signature_name": "typed", "instances": [{"count": 1}]},
        "must be equal to",
    ),
    (
        "module",
        "predict",
        {"signature_name": "typed", "inputs": {"count": [1]}},
        "Missing named input: flag",
    ),
    (
        "module",
        "predict",
        {"signature_name": "typed", "instances": [1]},
        "expecting list of objects",
    ),
    ("module", "predict", {"signature_name": "typed", "inputs": [1]}, "expecting an object"),
    (
        "module",
        "predict",
        {"signature_name": "text", "instances": [{"b64": "!!"}]},
        "Unable to base64 decode",
    ),
    (
        "module",
        "predict",
        {"signature_name": "text", "instances": [1]},
        "not of expected type: string",
    ),
    (
        "module",
        "predict",
        {
            "signature_name": "typed",
            "inputs": {"count": [1.5], "flag": [True], "half": [[1, 2]], "small": [1]},
        },
        "fractional numbers",
    ),
    (
        "module",
        "predict",
        {
            "signature_name": "typed",
            "inputs": {"count": [1], "flag": [True], "half": [[1, 2]], "small": [300]},
        },
        "outside",
    ),
    ("half-plus-three", "classify", {"signature_name": "classify"}, "'examples' is expected"),
    ("half-plus-three", "classify", {"signature_name": "classify", "examples": []}, "empty array"),
    (
        "half-plus-three",
        "classify",
        {"signature_name": "classify", "examples": [1]},
        "must be JSON object",
    ),
    (
        "half-plus-three",
        "classify",
        {"signature_name": "classify", "examples": [{"x": None}]},
        "unexpected JSON type",
    ),
    (
        "half-plus-three",
        "regress",
        {"signature_name": "regress", "examples": [{"x": [1.0, "a"]}]},
        "Unexpected element type",
    ),
    (
        "half-plus-three",
        "regress",
        {"signature_name": "regress", "examples": [{"y": 1.0}]},
        "Feature: x",
    ),
]


@pytest.mark.parametrize(("model", "verb", "body", "reason"), BAD, ids=[r for *_, r in BAD])
def test_rest_malformed_requests_are_400(server, model, verb, body, reason) -> None:
    reply = _post(server, f"/v1/models/{model}:{verb}", body)
    assert reply.status_code == 400, reply.text
    assert list(reply.json()) == ["error"]
    assert reason in reply.json()["error"], reply.json()
    good = _post(server, "/v1/models/iris-keras:predict", {"instances": _iris(1).tolist()})
    assert good.status_code == 200


def test_unknown_model_is_404_with_tf_servings_body(server) -> None:
    reply = _post(server, "/v1/models/absent:predict", {"instances": [1.0]})
    assert reply.status_code == 404
    assert list(reply.json()) == ["error"]


# -- gRPC PredictionService and ModelService -------------------------------------------


def test_grpc_predict_tensor_content_and_typed_fields(client, loaded) -> None:
    want = reference(loaded, "module", "serving_default", AFFINE)
    # tf.make_tensor_proto writes tensor_content; the answer mirrors it.
    got, response = client.predict("module", AFFINE)
    assert all(proto.tensor_content for proto in response.outputs.values())
    for name, value in want.items():
        _close(got[name], value, name)
    spec = response.model_spec
    assert (spec.name, spec.version.value, spec.signature_name) == ("module", 1, "serving_default")
    # Typed fields in (float_val), typed fields out.
    typed = tf.make_tensor_proto(AFFINE["x"])
    typed.ClearField("tensor_content")
    typed.float_val.extend(AFFINE["x"].reshape(-1).tolist())
    got, response = client.predict("module", {"x": typed})
    assert all(not p.tensor_content and p.float_val for p in response.outputs.values())
    for name, value in want.items():
        _close(got[name], value, name)


def test_grpc_predict_every_dtype(client, loaded) -> None:
    want = reference(loaded, "module", "typed", TYPED)
    got, _ = client.predict("module", TYPED, signature="typed")
    for name, value in want.items():
        _close(got[name], value, name)
        assert got[name].dtype == value.dtype, name
    # The same request in typed fields (half_val, int_val, bool_val, int64_val).
    typed = {}
    for name, value in TYPED.items():
        proto = tf.make_tensor_proto(value)
        if proto.tensor_content:
            proto.ClearField("tensor_content")
            field = {"count": "int64_val", "flag": "bool_val", "small": "int_val"}.get(name)
            if field is None:
                proto.half_val.extend(value.reshape(-1).view(np.uint16).tolist())
            else:
                getattr(proto, field).extend(value.reshape(-1).tolist())
        typed[name] = proto
    got, _ = client.predict("module", typed, signature="typed")
    for name, value in want.items():
        _close(got[name], value, name)


def test_grpc_one_typed_value_fills_the_tensor_as_in_tensorflow(client, loaded) -> None:
    proto = tf.make_tensor_proto(3.0, dtype=tf.float32, shape=[2, 3])  # one float_val, shape [2, 3]
    assert len(proto.float_val) == 1
    want = reference(loaded, "module", "serving_default", {"x": tf.make_ndarray(proto)})
    got, _ = client.predict("module", {"x": proto})
    for name, value in want.items():
        _close(got[name], value, name)


def test_grpc_strings(client, loaded) -> None:
    want = reference(loaded, "module", "text", {"text": TEXT})
    got, response = client.predict("module", {"text": TEXT}, signature="text")
    assert response.outputs["upper"].string_val  # strings always travel in string_val
    for name, value in want.items():
        _close(got[name], value, name)


def test_grpc_output_filter(client, loaded) -> None:
    want = reference(loaded, "module", "serving_default", AFFINE)
    got, _ = client.predict("module", AFFINE, output_filter=("total",))
    assert list(got) == ["total"]
    _close(got["total"], want["total"])
    with pytest.raises(grpc.RpcError) as info:
        client.predict("module", AFFINE, output_filter=("nope",))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_grpc_versions_and_labels(client, loaded) -> None:
    x = np.array([3.0, 0.25], dtype=np.float32)
    for version, label, expect in (
        (None, None, 2),
        (1, None, 1),
        (None, "stable", 1),
        (None, "canary", 2),
    ):
        got, response = client.predict("versioned", {"x": x}, version=version, label=label)
        want = reference(loaded, f"versioned/{expect}", "serving_default", {"x": x})["y"]
        _close(got["y"], want)
        assert response.model_spec.version.value == expect
    with pytest.raises(grpc.RpcError) as info:
        client.predict("versioned", {"x": x}, version=7)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_grpc_classify_and_regress(client, loaded) -> None:
    examples = [_example(x=2.0), _example(x=5.0, offset=-1.0)]
    want = reference(loaded, "half-plus-three", "classify", {"inputs": _serialized(examples)})
    response = client.examples("Classify", "half-plus-three", examples, signature="classify")
    assert response.model_spec.signature_name == "classify"
    for got, classes, scores in zip(
        response.result.classifications, want["classes"], want["scores"], strict=True
    ):
        assert [c.label for c in got.classes] == [c.decode() for c in classes]
        np.testing.assert_allclose([c.score for c in got.classes], scores, rtol=1e-6)
    context = _example(offset=0.5)
    want = reference(
        loaded, "half-plus-three", "regress", {"inputs": _serialized(examples[:1], context)}
    )
    response = client.examples("Regress", "half-plus-three", examples[:1], context, "regress")
    np.testing.assert_allclose(
        [r.value for r in response.result.regressions], want["outputs"].reshape(-1)
    )
    with pytest.raises(grpc.RpcError) as info:
        client.examples("Regress", "half-plus-three", [], signature="regress")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Input is empty" in info.value.details()


@pytest.mark.parametrize("model", ["module", "half-plus-three"])
def test_grpc_metadata_is_the_savedmodels_signature_map(client, samples, model) -> None:
    request = tfs.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = model
    response = client.call("GetModelMetadata", request)
    packed = response.metadata["signature_def"]
    assert packed.type_url == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    ours = tfs.SignatureDefMap.FromString(packed.value).signature_def
    want = saved_signature_defs(samples[model])
    assert sorted(ours) == sorted(want)
    for name, signature in ours.items():
        # Read back by TensorFlow's own SignatureDef: the same message.
        assert meta_graph_pb2.SignatureDef.FromString(signature.SerializeToString()) == want[name]
    assert response.model_spec.version.value == 1
    request.ClearField("metadata_field")
    with pytest.raises(grpc.RpcError) as info:
        client.call("GetModelMetadata", request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_grpc_model_status(client) -> None:
    request = tfs.GetModelStatusRequest()
    request.model_spec.name = "versioned"
    response = client.call("GetModelStatus", request, service="ModelService")
    assert [
        (s.version, tfs.ModelVersionStatus.State.Name(s.state))
        for s in response.model_version_status
    ] == [
        (2, "AVAILABLE"),
        (1, "AVAILABLE"),
    ]
    request.model_spec.version.value = 1
    response = client.call("GetModelStatus", request, service="ModelService")
    assert [s.version for s in response.model_version_status] == [1]
    request.model_spec.name = "absent"
    with pytest.raises(grpc.RpcError) as info:
        client.call("GetModelStatus", request, service="ModelService")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_grpc_bad_requests(client, server) -> None:
    cases = [
        ("absent", {"x": AFFINE["x"]}, "", grpc.StatusCode.NOT_FOUND),
        ("module", {"x": AFFINE["x"]}, "nope", grpc.StatusCode.INVALID_ARGUMENT),
        (
            "module",
            {"x": np.array([[1, 2, 3]], dtype=np.complex64)},
            "",
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        ("module", {"x": _strings(b"a", b"b", b"c")}, "", grpc.StatusCode.INVALID_ARGUMENT),
        ("module", {"x": np.zeros((1, 4), np.float32)}, "", grpc.StatusCode.INVALID_ARGUMENT),
    ]
    for model, inputs, signature, code in cases:
        with pytest.raises(grpc.RpcError) as info:
            client.predict(model, inputs, signature=signature)
        assert info.value.code() == code, (model, info.value.details())
    raw = client.channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
    with pytest.raises(grpc.RpcError) as info:
        raw(b"\xff\xff\xff", timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        _post(server, "/v1/models/iris-keras:predict", {"instances": _iris(1).tolist()}).status_code
        == 200
    )


# -- the Open Inference Protocol -------------------------------------------------------


@pytest.mark.parametrize("path", ["json", "binary", "grpc"])
def test_v2_selects_signatures_by_parameter(server, loaded, path) -> None:
    grpc_path = path == "grpc"
    module: Any = grpcclient if grpc_path else httpclient
    address = server.grpc_address if grpc_path else server.http_address
    infer_client = module.InferenceServerClient(address)
    binary = {} if grpc_path else {"binary_data": path == "binary"}
    # JSON carries text; the binary paths carry any bytes.
    text = TEXT[[0, 2]] if path == "json" else TEXT
    tensor = module.InferInput("text", [len(text)], "BYTES")
    tensor.set_data_from_numpy(text, **binary)
    names = ("upper", "length", "text_bytes")
    outputs = [module.InferRequestedOutput(n, **binary) for n in names]
    result = infer_client.infer(
        "module", [tensor], outputs=outputs, parameters={"signature_name": "text"}
    )
    want = reference(loaded, "module", "text", {"text": text})
    for name, value in want.items():
        got = result.as_numpy(name)
        if value.dtype == object:
            got = [g.encode() if isinstance(g, str) else g for g in got.reshape(-1)]
            assert got == value.reshape(-1).tolist(), name
        else:
            _close(got, value, name)


def test_v2_every_dtype_and_versions(server, loaded) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_address)
    inputs = []
    for name, value in TYPED.items():
        datatype = {"count": "INT64", "flag": "BOOL", "half": "FP16", "small": "INT8"}[name]
        tensor = grpcclient.InferInput(name, list(value.shape), datatype)
        tensor.set_data_from_numpy(value)
        inputs.append(tensor)
    result = client.infer("module", inputs, parameters={"signature_name": "typed"})
    for name, value in reference(loaded, "module", "typed", TYPED).items():
        _close(result.as_numpy(name), value, name)
    x = np.array([2.5], dtype=np.float32)
    for version in ("1", "2"):
        tensor = grpcclient.InferInput("x", [1], "FP32")
        tensor.set_data_from_numpy(x)
        got = client.infer("versioned", [tensor], model_version=version).as_numpy("y")
        _close(got, reference(loaded, f"versioned/{version}", "serving_default", {"x": x})["y"])
    meta = httpx.get(f"{server.http_url}/v2/models/versioned").json()
    assert meta["versions"] == ["1", "2"]
    assert httpx.get(f"{server.http_url}/v2/models/versioned/versions/1/ready").status_code == 200


def test_v2_metadata_names_the_signatures(server) -> None:
    meta = httpx.get(f"{server.http_url}/v2/models/module").json()
    assert meta["platform"] == "tensorflow_savedmodel"
    assert [i["name"] for i in meta["inputs"]] == ["x"]
    params = meta["parameters"]
    assert params["signature_name"] == "serving_default"
    assert params["signatures"] == {
        "serving_default": "tensorflow/serving/predict",
        "text": "tensorflow/serving/predict",
        "typed": "tensorflow/serving/predict",
    }
    body = {
        "parameters": {"signature_name": "nope"},
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}],
    }
    reply = httpx.post(f"{server.http_url}/v2/models/module/infer", json=body)
    assert reply.status_code == 400
    assert "nope" in reply.json()["error"]


# -- adaptive batching -----------------------------------------------------------------


def test_adaptive_batching_on_dynamic_first_dimensions(samples, loaded) -> None:
    proc = ServerProcess(
        "tfserver",
        [
            "--model_name=iris",
            f"--model_dir={samples['iris-keras']}",
            "--device=cpu",
            "--max_batch_size=32",
            "--max_batch_delay_ms=5",
        ],
    )
    X = _iris(120)
    jobs = [X[i : i + 1 + i % 6] for i in range(0, 120, 2)]
    with proc:

        def send(rows: np.ndarray) -> Any:
            return _ok(_post(proc, "/v1/models/iris:predict", {"instances": rows.tolist()}))

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(send, jobs))
        batches = metric(proc, "modelserver_batch_requests_count", "iris")
        merged = metric(proc, "modelserver_batch_requests_sum", "iris")
    for rows, answer in zip(jobs, answers, strict=True):
        want = reference(loaded, "iris-keras", "serving_default", {"features": rows})["output_0"]
        _close(answer["predictions"], want)
    assert merged == len(jobs)
    assert batches < len(jobs), "no request shared a predict call"


# -- startup, flags and logs -----------------------------------------------------------


def _exit(*args: str) -> Any:
    ports = [f"--http_port={free_port()}", f"--grpc_port={free_port()}"]
    done = run_to_exit("tfserver", ["--model_name=m", *ports, *args])
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output, output
    return output


def test_device_cuda_is_refused_without_a_gpu(samples) -> None:
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("TensorFlow sees a GPU here: --device cuda would serve")
    output = _exit(f"--model_dir={samples['iris-keras']}", "--device=cuda")
    assert "--device cuda" in output
    assert "tensorflow-cpu" in output or "no GPU" in output


def test_malformed_version_labels_and_unknown_tags_stop_the_start(samples) -> None:
    assert "--version_labels" in _exit(
        f"--model_dir={samples['iris-keras']}", "--version_labels=a=b"
    )
    output = _exit(f"--model_dir={samples['iris-keras']}", "--saved_model_tags=gpu")
    assert "saved_model.pb" in output
    assert "gpu" in output


def test_a_broken_version_fails_the_start_naming_it(samples, tmp_path) -> None:
    target = tmp_path / "versioned"
    shutil.copytree(samples["versioned"], target)
    (target / "1" / "saved_model.pb").write_bytes(b"\x00 not a SavedModel \xff")
    output = _exit(f"--model_dir={target}")
    assert "version 1" in output or "/1/saved_model.pb" in output


def test_tensorflow_log_noise_is_held_unless_debug(samples) -> None:
    quiet = ServerProcess(
        "tfserver", ["--model_name=m", f"--model_dir={samples['module']}", "--device=cpu"]
    )
    with quiet:
        log = quiet.output()
    assert "oneDNN" not in log and "absl::InitializeLog" not in log and "I0000" not in log, log
    assert "tfserver.model" in log  # our own lines are there
    loud = ServerProcess(
        "tfserver",
        ["--model_name=m", f"--model_dir={samples['module']}", "--device=cpu", "--log_level=debug"],
    )
    with loud:
        log = loud.output()
    assert "oneDNN" in log, log


def test_help_lists_the_flags_and_only_loading_imports_tensorflow() -> None:
    done = run_to_exit("tfserver", ["--help"])
    assert done.returncode == 0, done.stderr
    for flag in ("--device", "--saved_model_tags", "--version_labels", "--nthread"):
        assert flag in done.stdout
    code = (
        "import sys, tfserver, modelserver.protocol.grpc.tfserving, modelserver.codecs.tfs_rest\n"
        "assert 'tensorflow' not in sys.modules, 'imported tensorflow'\n"
    )
    checked = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert checked.returncode == 0, checked.stderr


@pytest.mark.skipif(
    not tf.config.list_physical_devices("GPU"),
    reason="needs a CUDA build of TensorFlow (tensorflow, not tensorflow-cpu) and an NVIDIA GPU",
)
def test_device_cuda_serves_on_the_gpu(samples, loaded) -> None:
    proc = ServerProcess(
        "tfserver", ["--model_name=m", f"--model_dir={samples['iris-keras']}", "--device=cuda"]
    )
    with proc:
        meta = httpx.get(f"{proc.http_url}/v2/models/m").json()
        assert meta["parameters"]["device"] == "cuda"
        x = _iris(3)
        out = _ok(_post(proc, "/v1/models/m:predict", {"instances": x.tolist()}))
    want = reference(loaded, "iris-keras", "serving_default", {"features": x})["output_0"]
    np.testing.assert_allclose(out["predictions"], want, rtol=1e-4, atol=1e-6)

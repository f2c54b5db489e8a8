"""onnxserver end to end: every sample, every protocol, the datatypes, the device choice.

One server (``--device cpu``) serves the three samples of
examples/samples/onnx_models.py as a multi-model directory (the skl2onnx
iris Pipeline, the PyTorch iris MLP and a hand-built graph whose tensors
cover every datatype) plus a graph with no declared width. Every answer is
compared with what ONNX Runtime itself computes in this process on the same
inputs, over v2 JSON, v2 binary, gRPC and v1. Startup checks run the real
process to its exit; the CUDA test runs only where ONNX Runtime really
starts its CUDA provider.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import protocol_clients
import pytest
import tritonclient.grpc as grpcclient
from modelserver.datatypes import datatype_of
from protocol_clients import v2_metadata
from serverproc import ServerProcess, run_to_exit
from tritonclient.utils import InferenceServerException

ort = pytest.importorskip("onnxruntime")
onnxserver_model = pytest.importorskip("onnxserver.model")
DATATYPE_TO_ONNX = onnxserver_model.DATATYPE_TO_ONNX
ONNXModel = onnxserver_model.ONNXModel
ONNXSettings = onnxserver_model.ONNXSettings

pytestmark = pytest.mark.e2e

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
V2_PATHS = ["json", "binary", "grpc"]
#: The iris samples and their single input.
IRIS_MODELS = {"iris-pipeline": "input", "iris-mlp": "features"}


def _iris_rows(n: int) -> np.ndarray:
    from sklearn.datasets import load_iris

    X = load_iris().data
    return X[(np.arange(n) * 7) % len(X)].astype(np.float32)


def _typed_inputs() -> dict[str, np.ndarray]:
    """One value per input of the typed graph, as a client sends them."""
    return {
        "flags": np.array([[True, False, True], [False, False, True]]),
        "half": np.array([[0.5, -1.25], [1000.0, 0.000123]], dtype=np.float16),
        "text": np.array(["caf\u00e9".encode(), b""], dtype=object),
        "small": np.array([[-128, 5], [127, 0]], dtype=np.int8),
        "count": np.array([7, -3], dtype=np.int64),
    }


def _for_onnxruntime(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same inputs as ONNX Runtime's own API takes them (str for tensor(string))."""
    feeds = dict(inputs)
    if "text" in feeds:
        feeds["text"] = np.array([b.decode() for b in feeds["text"]], dtype=object)
    return feeds


# -- fixtures ------------------------------------------------------------------


@pytest.fixture(scope="module")
def samples(framework_samples) -> dict[str, Path]:
    return framework_samples("onnx")


@pytest.fixture(scope="module")
def sessions(samples: dict[str, Path]) -> dict[str, Any]:
    """ONNX Runtime in this process, on the CPU: the reference answers."""
    return {
        name: ort.InferenceSession(str(path / "model.onnx"), providers=[CPU])
        for name, path in samples.items()
    }


def _model_of(graph: Any) -> Any:
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # the IR of opset 17
    return model


def _dynamic_width_graph() -> Any:
    """x [N, K] @ W [4, 3]: no width declared, so only ONNX Runtime can find a wrong one."""
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "dynamic",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])],
        initializer=[weights],
    )
    return _model_of(graph)


@pytest.fixture(scope="module")
def model_root(samples: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three samples and the dynamic-width graph, one sub-folder (model) each."""
    import onnx

    root = tmp_path_factory.mktemp("onnx-models")
    for name, path in samples.items():
        shutil.copytree(path, root / name)
    (root / "dynamic").mkdir()
    onnx.save_model(_dynamic_width_graph(), root / "dynamic" / "model.onnx")
    return root


@pytest.fixture(scope="module")
def server(model_root: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        "onnxserver",
        [
            "--model_name=unused",
            f"--model_dir={model_root}",
            "--device=cpu",
            "--nthread=1",
            "--inter_op_threads=2",
        ],
    )
    with proc:
        yield proc


@pytest.fixture(scope="module")
def cuda_usable(samples: dict[str, Path]) -> bool:
    """True where ONNX Runtime really runs a graph with its CUDA provider."""
    if CUDA not in ort.get_available_providers():
        return False
    path = samples["iris-mlp"] / "model.onnx"
    return CUDA in ort.InferenceSession(str(path), providers=[CUDA, CPU]).get_providers()


# -- clients -------------------------------------------------------------------


def _expected(session: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, _for_onnxruntime(inputs)), strict=True))


def _infer(
    server: ServerProcess,
    model: str,
    inputs: dict[str, np.ndarray],
    path: str,
    outputs: list[str] | None = None,
) -> dict[str, np.ndarray]:
    """v2 inference over ``path`` asking for ``outputs`` (default: every declared one)."""
    names = outputs or [o["name"] for o in v2_metadata(server, model)["outputs"]]
    return protocol_clients.infer(server, model, inputs, path, names)


def _v1(server: ServerProcess, model: str, body: dict[str, Any]) -> Any:
    reply = httpx.post(f"{server.http_url}/v1/models/{model}:predict", json=body)
    assert reply.status_code == 200, reply.text
    return reply.json()["predictions"]


def _v1_columns(predictions: Any, names: list[str]) -> dict[str, list[Any]]:
    """v1 answers one object per row, or one object of whole outputs when rows differ."""
    if isinstance(predictions, dict):
        return {n: predictions[n] for n in names}
    return {n: [row[n] for row in predictions] for n in names}


def _as_bytes(values: Any) -> list[bytes]:
    return [v.encode() if isinstance(v, str) else bytes(v) for v in np.asarray(values).reshape(-1)]


def _same(got: np.ndarray, want: np.ndarray, name: str, rtol: float, atol: float) -> None:
    assert got.shape == want.shape, name
    if want.dtype == object:
        assert _as_bytes(got) == _as_bytes(want), name
        return
    assert got.dtype == want.dtype, name
    if want.dtype.kind == "f":
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=name)
    else:
        np.testing.assert_array_equal(got, want, err_msg=name)


def _all_same(
    got: dict[str, np.ndarray],
    want: dict[str, np.ndarray],
    rtol: float = 1e-6,
    atol: float = 0.0,
) -> None:
    assert list(got) == list(want)
    for name in want:
        _same(got[name], want[name], name, rtol, atol)


def _v1_same(predictions: Any, want: dict[str, np.ndarray]) -> None:
    for name, values in _v1_columns(predictions, list(want)).items():
        reference = want[name]
        dtype = object if reference.dtype == object else reference.dtype
        _same(np.asarray(values, dtype=dtype), reference, name, 1e-6, 0.0)


# -- every sample, every protocol, the answers ONNX Runtime gives ----------------


@pytest.mark.parametrize("model", [*IRIS_MODELS, "typed"])
def test_metadata_lists_every_tensor_with_its_datatype(server, sessions, model) -> None:
    inputs = _typed_inputs() if model == "typed" else {IRIS_MODELS[model]: _iris_rows(2)}
    outputs = _expected(sessions[model], inputs)
    meta = httpx.get(f"{server.http_url}/v2/models/{model}").json()
    session = sessions[model]
    assert meta["platform"] == "onnxruntime_onnx"
    for kind, args, datatypes in (
        ("inputs", session.get_inputs(), [datatype_of(v.dtype) for v in inputs.values()]),
        ("outputs", session.get_outputs(), [datatype_of(v.dtype) for v in outputs.values()]),
    ):
        assert [t["name"] for t in meta[kind]] == [a.name for a in args]
        assert [t["datatype"] for t in meta[kind]] == datatypes
        # ... and each datatype maps back to the graph's own element type.
        assert [DATATYPE_TO_ONNX[t["datatype"]] for t in meta[kind]] == [a.type for a in args]
        # Symbolic names ("batch") and unknown dims (None) are both -1.
        assert [t["shape"] for t in meta[kind]] == [
            [d if isinstance(d, int) else -1 for d in a.shape] for a in args
        ]
    grpc_meta = grpcclient.InferenceServerClient(server.grpc_address).get_model_metadata(
        model, as_json=True
    )
    assert [o["name"] for o in grpc_meta["outputs"]] == [o["name"] for o in meta["outputs"]]
    assert meta["parameters"]["providers"] == [CPU]


def test_typed_metadata_covers_every_datatype(server) -> None:
    meta = httpx.get(f"{server.http_url}/v2/models/typed").json()
    shapes = {t["name"]: t["shape"] for t in meta["inputs"]}
    assert shapes == {
        "flags": [-1, 3],
        "half": [-1, 2],
        "text": [-1],
        "small": [-1, 2],
        "count": [-1],
    }
    seen = {t["datatype"] for t in meta["inputs"] + meta["outputs"]}
    assert seen == {
        "BOOL",
        "UINT8",
        "UINT16",
        "UINT32",
        "UINT64",
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "FP16",
        "FP32",
        "FP64",
        "BYTES",
    }


@pytest.mark.parametrize("path", V2_PATHS)
@pytest.mark.parametrize("model", IRIS_MODELS)
def test_iris_answers_equal_onnxruntime(server, sessions, model, path) -> None:
    inputs = {IRIS_MODELS[model]: _iris_rows(12)}
    _all_same(_infer(server, model, inputs, path), _expected(sessions[model], inputs))


@pytest.mark.parametrize("model", IRIS_MODELS)
def test_iris_v1_equals_onnxruntime(server, sessions, model) -> None:
    rows = _iris_rows(12)
    predictions = _v1(server, model, {"instances": rows.tolist()})
    assert len(predictions) == len(rows)
    _v1_same(predictions, _expected(sessions[model], {IRIS_MODELS[model]: rows}))


@pytest.mark.parametrize("path", V2_PATHS)
def test_typed_graph_round_trips_fp16_bool_bytes(server, sessions, path) -> None:
    inputs = _typed_inputs()
    got = _infer(server, "typed", inputs, path)
    _all_same(got, _expected(sessions["typed"], inputs))
    # What came back is what went in, through the graph's own ops.
    assert _as_bytes(got["text_out"]) == list(inputs["text"])
    assert got["not_flags"].tolist() == (~inputs["flags"]).tolist()
    assert got["half_doubled"].dtype == np.float16


def test_typed_graph_over_v1(server, sessions) -> None:
    inputs = _typed_inputs()
    body = {"inputs": {k: v.tolist() for k, v in _for_onnxruntime(inputs).items()}}
    _v1_same(_v1(server, "typed", body), _expected(sessions["typed"], inputs))


def test_outputs_can_be_selected(server, sessions) -> None:
    rows = _iris_rows(3)
    want = _expected(sessions["iris-pipeline"], {"input": rows})
    for path in V2_PATHS:
        got = _infer(server, "iris-pipeline", {"input": rows}, path, outputs=["probabilities"])
        _all_same(got, {"probabilities": want["probabilities"]})
    inputs = _typed_inputs()
    typed = _expected(sessions["typed"], inputs)
    got = _infer(server, "typed", inputs, "binary", outputs=["text_out", "small_as_uint64"])
    _all_same(got, {n: typed[n] for n in ("text_out", "small_as_uint64")})
    labels = _v1(
        server,
        "iris-pipeline",
        {"instances": rows.tolist(), "parameters": {"outputs": ["label"]}},
    )
    assert labels == want["label"].tolist()
    body = {
        "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}],
        "outputs": [{"name": "output_probability"}],
    }
    reply = httpx.post(f"{server.http_url}/v2/models/iris-pipeline/infer", json=body)
    assert reply.status_code == 400
    assert "output_probability" in reply.json()["error"]


@pytest.mark.parametrize("model", IRIS_MODELS)
def test_a_thousand_rows(server, sessions, model) -> None:
    inputs = {IRIS_MODELS[model]: _iris_rows(1000)}
    want = _expected(sessions[model], inputs)
    for path in V2_PATHS:
        got = _infer(server, model, inputs, path)
        assert got[next(iter(want))].shape[0] == 1000
        _all_same(got, want)


# -- datatypes and shapes the model does not declare ---------------------------------


def test_fp64_is_cast_to_an_fp32_input(server, sessions) -> None:
    rows = _iris_rows(5).astype(np.float64)
    want = _expected(sessions["iris-pipeline"], {"input": rows.astype(np.float32)})
    for path in V2_PATHS:
        _all_same(_infer(server, "iris-pipeline", {"input": rows}, path), want)


def test_fp32_to_an_int64_input_is_400(server) -> None:
    inputs = _typed_inputs()
    inputs["count"] = inputs["count"].astype(np.float32)
    with pytest.raises(InferenceServerException) as info:
        _infer(server, "typed", inputs, "grpc")
    assert info.value.status() == str(grpc.StatusCode.INVALID_ARGUMENT)
    assert "'count' is INT64, got FP32" in info.value.message()
    with pytest.raises(InferenceServerException) as info:
        _infer(server, "typed", inputs, "json")
    assert "400" in str(info.value.status())
    assert "'count' is INT64, got FP32" in info.value.message()


@pytest.mark.parametrize("model", IRIS_MODELS)
def test_wrong_width_is_400_and_serving_goes_on(server, sessions, model) -> None:
    name = IRIS_MODELS[model]
    bad = _iris_rows(2)[:, :3]
    body = {
        "inputs": [
            {"name": name, "shape": [2, 3], "datatype": "FP32", "data": bad.ravel().tolist()}
        ]
    }
    reply = httpx.post(f"{server.http_url}/v2/models/{model}/infer", json=body)
    assert reply.status_code == 400, reply.text
    assert f"'{name}' expects shape [-1, 4], got [2, 3]" in reply.json()["error"]
    with pytest.raises(InferenceServerException) as info:
        _infer(server, model, {name: bad}, "grpc")
    assert info.value.status() == str(grpc.StatusCode.INVALID_ARGUMENT)
    good = {name: _iris_rows(2)}
    _all_same(_infer(server, model, good, "binary"), _expected(sessions[model], good))


def test_a_width_only_onnxruntime_can_check_is_400(server, model_root) -> None:
    meta = httpx.get(f"{server.http_url}/v2/models/dynamic").json()
    assert meta["inputs"][0]["shape"] == [-1, -1]
    rows = _iris_rows(2)
    with pytest.raises(InferenceServerException) as info:
        _infer(server, "dynamic", {"x": rows[:, :3]}, "json")
    assert "400" in str(info.value.status())
    assert "MatMul dimension mismatch" in info.value.message()
    session = ort.InferenceSession(str(model_root / "dynamic" / "model.onnx"), providers=[CPU])
    _all_same(_infer(server, "dynamic", {"x": rows}, "grpc"), _expected(session, {"x": rows}))


def test_text_that_is_not_utf8_is_400(server) -> None:
    inputs = _typed_inputs()
    inputs["text"] = np.array([b"\xff\xfe"], dtype=object)
    with pytest.raises(InferenceServerException) as info:
        _infer(server, "typed", inputs, "grpc")
    assert info.value.status() == str(grpc.StatusCode.INVALID_ARGUMENT)
    assert "utf-8" in info.value.message()


# -- devices ---------------------------------------------------------------------


def test_cpu_device_logs_the_providers_in_use(server) -> None:
    log = server.output()
    for model in ("iris-pipeline", "iris-mlp", "typed"):
        assert f"model {model}: model.onnx on onnxruntime {ort.__version__}" in log
    assert log.count(f"providers in use: {CPU}\n") == 4, log


def test_auto_device_uses_cuda_only_where_it_runs(samples, cuda_usable) -> None:
    with ServerProcess("onnxserver", [f"--model_dir={samples['iris-mlp']}"]) as proc:
        meta = httpx.get(f"{proc.http_url}/v2/models/model").json()
        log = proc.output()
    expected = [CUDA, CPU] if cuda_usable else [CPU]
    assert meta["parameters"]["providers"] == expected
    assert f"providers in use: {', '.join(expected)}" in log


def test_device_cuda_without_cuda_is_a_startup_error(samples, cuda_usable) -> None:
    if cuda_usable:
        pytest.skip("needs a machine without a usable CUDA GPU: CUDAExecutionProvider runs here")
    model_dir = samples["iris-mlp"]
    for flags, env in ((["--device=cuda"], None), ([], {"DEVICE": "cuda"})):
        done = run_to_exit("onnxserver", [f"--model_dir={model_dir}", *flags], env=env)
        output = done.stdout + done.stderr
        assert done.returncode == 2, output
        assert "Traceback" not in output, output
        assert "--device cuda" in output and CUDA in output and "model.onnx" in output, output


def test_cuda_answers_match_the_cpu(samples, sessions, cuda_usable) -> None:
    if not cuda_usable:
        pytest.skip(
            f"{CUDA} not available: needs onnxruntime-gpu (onnxserver[gpu]) and an NVIDIA GPU"
        )
    root = samples["typed"].parent
    with ServerProcess(
        "onnxserver", ["--model_name=unused", f"--model_dir={root}", "--device=cuda"]
    ) as gpu:
        log = gpu.output()
        for model, name in IRIS_MODELS.items():
            assert f"model {model}: requests run through IO binding on cuda" in log, log
            meta = httpx.get(f"{gpu.http_url}/v2/models/{model}").json()
            assert meta["parameters"]["providers"][0] == CUDA
            inputs = {name: _iris_rows(1000)}
            want = _expected(sessions[model], inputs)
            for path in V2_PATHS:
                got = _infer(gpu, model, inputs, path)
                # Floats within GPU rounding (CUDA may use TF32 matmuls on Ampere and later).
                _all_same(got, want, rtol=1e-2, atol=1e-3)
        inputs = _typed_inputs()
        for path in V2_PATHS:
            _all_same(_infer(gpu, "typed", inputs, path), _expected(sessions["typed"], inputs))


def test_io_binding_gives_what_session_run_gives(samples) -> None:
    """The CUDA path's IO binding, run here with outputs bound in host memory."""
    model = ONNXModel("mlp", samples["iris-mlp"], settings=ONNXSettings(device="cpu"))
    model.load()
    assert model.bound_device is None  # on the CPU, plain session.run
    feeds = {"features": _iris_rows(50)}
    names = ["probabilities", "logits"]
    plain = model.run(feeds, names)
    model.bound_device = "cpu"
    bound = model.run(feeds, names)
    for name, a, b in zip(names, plain, bound, strict=True):
        _same(b, a, name, 0.0, 0.0)


# -- what cannot be served: a clear startup error ------------------------------------


def _zipmap_pipeline() -> Any:
    from samples.onnx_models import iris_pipeline_onnx

    return iris_pipeline_onnx(zipmap=True)


def _bfloat16_graph() -> Any:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "bf16",
        [helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [None])],
        [helper.make_tensor_value_info("y", TensorProto.BFLOAT16, [None])],
    )
    return _model_of(graph)


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (_zipmap_pipeline, ["output 'output_probability'", "seq(map(", "zipmap"]),
        (_bfloat16_graph, ["input 'x' has type tensor(bfloat16)", "no Open Inference Protocol"]),
    ],
    ids=["zipmap", "bfloat16"],
)
def test_tensors_without_a_protocol_form_are_refused_at_startup(tmp_path, build, expected) -> None:
    import onnx

    onnx.save_model(build(), tmp_path / "model.onnx")
    done = run_to_exit("onnxserver", [f"--model_dir={tmp_path}", "--device=cpu"])
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output, output
    assert "model.onnx" in output, output
    for fragment in expected:
        assert fragment in output, output


def test_without_onnxruntime_the_error_says_what_to_install(samples) -> None:
    # Python treats a None entry in sys.modules as "not installed".
    code = (
        "import sys; sys.modules['onnxruntime'] = None; "
        "from onnxserver.__main__ import main; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, f"--model_dir={samples['iris-mlp']}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output, output
    assert "onnxserver[cpu]" in output and "onnxserver[gpu]" in output, output

"""torchserver end to end: every format, every protocol, the datatypes, the errors.

One server serves the samples of examples/samples/torch_models.py as a
multi-model directory: the iris MLP and the digits CNN as TorchScript
(traced and scripted), torch.export programs and AOTInductor packages (bare,
and with the exported program), the iris weights as safetensors with
``--model_class``, and a model whose inputs and outputs cover FP16,
bfloat16, BOOL, INT8 and INT64 (exported and traced), with adaptive
batching on. A second serves the digits state_dict (``torch.save``) and a
whole pickled module that reports how it is called (``--allow_pickle``,
``--nthread=1``). Every answer is compared with what torch computes in this
process with its own loaders, over v2 JSON, v2 binary, gRPC and v1.
Startup errors run the real process to its exit; CUDA runs only where torch
has a GPU.
"""

from __future__ import annotations

import io
import shutil
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import protocol_clients
import pytest
import torch
from protocol_clients import v1_predict, v2_metadata, v2_post
from samples.torch_models import compiler
from serverproc import ServerProcess, metric, run_to_exit
from tritonclient.utils import InferenceServerException

pytest.importorskip("torchserver", reason="the torchserver runtime is not installed")

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TEST_MODELS = ROOT / "tests" / "models"
V2_PATHS = ["json", "binary", "grpc"]
GPU_MISSING = "needs a CUDA build of torch and an NVIDIA GPU"
NEEDS_COMPILER = pytest.mark.skipif(
    compiler() is None,
    reason="needs a C++ compiler (g++, or $CXX) to build the AOTInductor samples",
)


def _params(names: list[str]) -> list[Any]:
    """``names`` as parameters; the AOTInductor samples skip where they cannot be built."""
    return [pytest.param(n, marks=NEEDS_COMPILER) if n.endswith("-aoti") else n for n in names]


#: Served by the main server: every format of both networks and the typed model.
MAIN = [
    "iris-torchscript",
    "iris-export",
    "iris-aoti",
    "iris-state-dict",
    "digits-torchscript",
    "digits-export",
    "digits-aoti",
    "typed-export",
    "typed-torchscript",
]
#: What each sample's metadata says (None: the format records no outputs or shapes).
IRIS_OUT = {"logits": ("FP32", [-1, 3]), "probabilities": ("FP32", [-1, 3])}
DIGITS_OUT = {"output-0": ("FP32", [-1, 10]), "output-1": ("FP32", [-1, 10])}
TYPED_IN = {
    "half": ("FP16", [-1, 2]),
    "brain": ("FP32", [-1, 2]),
    "flags": ("BOOL", [-1, 3]),
    "small": ("INT8", [-1, 2]),
    "count": ("INT64", [-1]),
}
TYPED_OUT = {
    "output-0": ("FP16", [-1, 2]),
    "output-1": ("FP32", [-1, 2]),
    "output-2": ("BOOL", [-1, 3]),
    "output-3": ("INT16", [-1, 2]),
    "output-4": ("INT64", [-1]),
    "output-5": ("FP32", [-1]),
}
METADATA: dict[str, tuple[str, dict[str, Any], dict[str, Any] | None]] = {
    "iris-torchscript": ("TorchScript (traced)", {"features": ("FP32", [-1, 4])}, IRIS_OUT),
    "iris-export": ("torch.export", {"features": ("FP32", [-1, 4])}, IRIS_OUT),
    "iris-aoti": ("AOTInductor", {"input-0": ("FP32", [])}, None),
    "iris-state-dict": ("state_dict", {"features": ("FP32", [])}, None),
    "digits-torchscript": ("TorchScript (scripted)", {"images": ("FP32", [])}, None),
    "digits-export": ("torch.export", {"images": ("FP32", [-1, 1, 8, 8])}, DIGITS_OUT),
    "digits-aoti": ("AOTInductor", {"images": ("FP32", [-1, 1, 8, 8])}, DIGITS_OUT),
    "typed-export": ("torch.export", TYPED_IN, TYPED_OUT),
    "typed-torchscript": ("TorchScript (traced)", TYPED_IN, TYPED_OUT),
}


def _iris_rows(n: int) -> np.ndarray:
    from sklearn.datasets import load_iris

    X = load_iris().data
    return X[(np.arange(n) * 7) % len(X)].astype(np.float32)


def _digit_images(n: int) -> np.ndarray:
    from sklearn.datasets import load_digits

    X = load_digits().data
    return X[(np.arange(n) * 11) % len(X)].reshape(-1, 1, 8, 8).astype(np.float32)


def _typed_inputs(n: int = 2) -> dict[str, np.ndarray]:
    """Values each exact in its dtype (the bfloat16 ones too), as a client sends them."""
    rows = np.arange(n)
    return {
        "half": np.stack([rows * 0.5 - 1.25, rows + 1000.0], 1).astype(np.float16),
        "brain": np.stack([rows * 1.5, -rows - 0.25], 1).astype(np.float32),
        "flags": np.stack([rows % 2 == 0, rows % 3 == 0, rows >= 0], 1),
        "small": np.stack([rows - 128, 127 - rows], 1).astype(np.int8),
        "count": (rows * 7 - 3).astype(np.int64),
    }


def _inputs(sample: str, n: int) -> dict[str, np.ndarray]:
    """A request's tensors for ``sample``, named as its metadata names them."""
    net = sample.split("-")[0]
    if net == "typed":
        return _typed_inputs(n)
    name = next(iter(METADATA[sample][1]))
    return {name: _iris_rows(n) if net == "iris" else _digit_images(n)}


# -- the reference: torch in this process, with its own loaders -----------------------


@pytest.fixture(scope="module")
def samples(framework_samples) -> dict[str, Path]:
    return framework_samples("torch")


@pytest.fixture(scope="module")
def reference(samples: dict[str, Path]):
    """``reference(sample, inputs)``: what torch answers, by output name, as numpy."""
    modules: dict[str, Any] = {}

    def answer(sample: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if sample not in modules:
            from samples.torch_models import load_with_torch

            modules[sample] = load_with_torch(sample, samples[sample])
        tensors = [torch.from_numpy(np.array(v)) for v in inputs.values()]
        if sample.startswith("typed"):
            tensors[1] = tensors[1].to(torch.bfloat16)
        with torch.inference_mode():
            out = modules[sample](*tensors)
        pairs = out.items() if isinstance(out, dict) else enumerate(out)
        return {
            (k if isinstance(k, str) else f"output-{k}"): (
                v.float() if v.dtype == torch.bfloat16 else v
            ).numpy()
            for k, v in pairs
        }

    return answer


# -- servers -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(samples: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("torch-models")
    for name in MAIN:
        if name in samples:
            shutil.copytree(samples[name], root / name)
    proc = ServerProcess(
        "torchserver",
        [
            "--model_name=unused",
            f"--model_dir={root}",
            "--model_class=samples.torch_models:IrisMLP",
            "--allow_unchecked_aoti",
            "--max_batch_size=16",
            "--max_batch_delay_ms=5",
        ],
        env={"PYTHONPATH": str(EXAMPLES)},
    )
    with proc:
        yield proc


@pytest.fixture(scope="module")
def eager_server(samples: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """The digits state_dict (torch.save) and a whole pickled Probe module."""
    from torch_probe import Probe

    root = tmp_path_factory.mktemp("torch-eager")
    shutil.copytree(samples["digits-state-dict"], root / "digits-state-dict")
    (root / "probe").mkdir()
    torch.save(Probe(), root / "probe" / "model.pth")
    proc = ServerProcess(
        "torchserver",
        [
            "--model_name=unused",
            f"--model_dir={root}",
            "--model_class=samples.torch_models:DigitsCNN",
            "--allow_pickle",
            "--nthread=1",
        ],
        env={"PYTHONPATH": f"{EXAMPLES}:{TEST_MODELS}"},
    )
    with proc:
        yield proc


def _infer(
    server: ServerProcess, model: str, inputs: dict[str, np.ndarray], path: str, outputs=None
):
    return protocol_clients.infer(server, model, inputs, path, outputs)


def _same(got: dict[str, np.ndarray], want: dict[str, np.ndarray], rtol: float = 1e-6) -> None:
    assert sorted(got) == sorted(want)
    for name, expected in want.items():
        assert got[name].shape == expected.shape, name
        assert got[name].dtype == expected.dtype, name
        if expected.dtype.kind == "f":
            np.testing.assert_allclose(got[name], expected, rtol=rtol, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(got[name], expected, err_msg=name)


# -- metadata: what each format records ------------------------------------------------------


@pytest.mark.parametrize("sample", _params(MAIN))
def test_metadata_declares_what_the_format_records(server, sample) -> None:
    kind, inputs, outputs = METADATA[sample]
    meta = v2_metadata(server, sample)
    assert meta["platform"] == "pytorch"
    assert meta["parameters"]["format"] == kind
    assert meta["parameters"]["device"] == "cpu"
    assert {i["name"]: (i["datatype"], i["shape"]) for i in meta["inputs"]} == inputs
    assert [i["name"] for i in meta["inputs"]] == list(inputs)
    if outputs is None:
        assert meta["outputs"] == []
        assert "default_outputs" not in meta["parameters"]
    else:
        assert {o["name"]: (o["datatype"], o["shape"]) for o in meta["outputs"]} == outputs
        assert meta["parameters"]["default_outputs"] == list(outputs)


# -- answers: every sample, every protocol, equal to torch's own ------------------------------


@pytest.mark.parametrize("path", V2_PATHS)
@pytest.mark.parametrize("sample", _params(MAIN))
def test_answers_equal_torch(server, reference, sample, path) -> None:
    inputs = _inputs(sample, 5)
    _same(_infer(server, sample, inputs, path), reference(sample, inputs))


@pytest.mark.parametrize(
    "sample", _params(["iris-export", "iris-aoti", "digits-torchscript", "digits-aoti"])
)
def test_v1_equals_torch(server, reference, sample) -> None:
    inputs = _inputs(sample, 3)
    (rows,) = inputs.values()
    reply = v1_predict(server, sample, {"instances": rows.tolist()})
    assert reply.status_code == 200, reply.text
    predictions = reply.json()["predictions"]
    assert len(predictions) == 3
    for name, want in reference(sample, inputs).items():
        got = np.asarray([row[name] for row in predictions], dtype=np.float32)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("sample", _params(["iris-export", "iris-aoti", "digits-aoti"]))
def test_a_thousand_rows_are_one_call(server, reference, sample) -> None:
    inputs = _inputs(sample, 1000)
    _same(_infer(server, sample, inputs, "binary"), reference(sample, inputs), rtol=1e-5)


def test_bfloat16_travels_as_fp32_and_fp16_as_fp16(server, reference) -> None:
    inputs = _typed_inputs(4)
    for sample in ("typed-export", "typed-torchscript"):
        got = _infer(server, sample, inputs, "grpc")
        assert got["output-0"].dtype == np.float16
        assert got["output-1"].dtype == np.float32
        np.testing.assert_array_equal(got["output-1"], inputs["brain"] * 2)
        assert got["output-2"].tolist() == (~inputs["flags"]).tolist()
        assert got["output-3"].dtype == np.int16
        # An FP32 value bfloat16 cannot hold is rounded on the way in, as torch rounds it.
        rounded = dict(inputs, brain=np.full((4, 2), 1.0 + 2**-10, dtype=np.float32))
        _same(_infer(server, sample, rounded, "binary"), reference(sample, rounded))
        assert _infer(server, sample, rounded, "json")["output-1"][0, 0] == 2.0


def test_outputs_can_be_selected(server, reference) -> None:
    inputs = _inputs("iris-export", 3)
    want = reference("iris-export", inputs)
    for path in V2_PATHS:
        got = _infer(server, "iris-export", inputs, path, ["probabilities"])
        _same(got, {"probabilities": want["probabilities"]})
    # Outputs named only when the model answers can be asked for by those names.
    inputs = _inputs("digits-torchscript", 2)
    got = _infer(server, "digits-torchscript", inputs, "grpc", ["output-1"])
    _same(got, {"output-1": reference("digits-torchscript", inputs)["output-1"]})
    rows = _iris_rows(2)
    logits = v1_predict(
        server,
        "iris-state-dict",
        {"instances": rows.tolist(), "parameters": {"outputs": ["logits"]}},
    )
    assert logits.status_code == 200, logits.text
    want = reference("iris-state-dict", {"features": rows})["logits"]
    np.testing.assert_allclose(logits.json()["predictions"], want, rtol=1e-6)
    body = {
        "inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}],
        "outputs": [{"name": "scores"}],
    }
    for model in ("iris-export", "iris-state-dict"):
        protocol_clients.assert_rejected(server, model, body, "'scores'")


def test_concurrent_requests_are_batched_and_split_back(server, reference) -> None:
    before = metric(server, "modelserver_batch_requests_sum", "digits-export")
    batches_before = metric(server, "modelserver_batch_requests_count", "digits-export")
    jobs = [_digit_images(1 + i % 5) for i in range(48)]

    def send(images: np.ndarray) -> dict[str, np.ndarray]:
        return _infer(server, "digits-export", {"images": images}, "binary")

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(send, jobs))
    for images, got in zip(jobs, answers, strict=True):
        _same(got, reference("digits-export", {"images": images}), rtol=1e-5)
    requests = metric(server, "modelserver_batch_requests_sum", "digits-export") - before
    batches = metric(server, "modelserver_batch_requests_count", "digits-export") - batches_before
    assert requests == len(jobs)
    assert batches < requests, (batches, requests)


def test_formats_without_shapes_are_not_batched(server, samples) -> None:
    log = server.output()
    for model in ("iris-aoti", "digits-torchscript", "iris-state-dict"):
        if model in samples:
            assert f"model {model}: adaptive batching is off" in log, log


# -- eager models: state_dict + class, pickled module ------------------------------------------


def test_state_dict_with_model_class(eager_server, reference) -> None:
    meta = v2_metadata(eager_server, "digits-state-dict")
    assert meta["parameters"]["format"] == "state_dict"
    inputs = _inputs("digits-export", 4)
    for path in V2_PATHS:
        got = _infer(eager_server, "digits-state-dict", inputs, path)
        _same(got, reference("digits-state-dict", inputs))


def test_pickled_module_runs_in_inference_mode_with_nthread(eager_server) -> None:
    meta = v2_metadata(eager_server, "probe")
    assert meta["parameters"]["format"] == "pickled module"
    assert [i["name"] for i in meta["inputs"]] == ["x", "count"]
    x = np.array([[1.5, -2.0], [0.25, 4.0]])
    count = np.array([3, -1], dtype=np.int64)
    got = _infer(eager_server, "probe", {"x": x, "count": count}, "grpc")
    assert got["inference_mode"].tolist() == [True, True]
    assert got["grad_enabled"].tolist() == [False, False]
    assert got["threads"].tolist() == [1, 1]  # --nthread=1
    # An input whose dtype the format does not record: floats become float32, ints stay.
    assert got["x"].dtype == np.float32 and got["x"].tolist() == x.tolist()
    assert got["count"].dtype == np.int64 and got["count"].tolist() == count.tolist()
    np.testing.assert_array_equal(got["scaled"], x.astype(np.float32) * 2)


def test_the_model_may_write_into_its_input(eager_server) -> None:
    """A read-only request buffer (binary, gRPC) is copied before torch sees it."""
    for path in V2_PATHS:
        images = _digit_images(2)
        got = _infer(eager_server, "digits-state-dict", {"images": images}, path)
        assert got["output-1"].shape == (2, 10)


# -- requests that contradict the model: 400 naming the input, and serving goes on -------------


@pytest.mark.parametrize("sample", _params(["iris-torchscript", "iris-export", "digits-aoti"]))
def test_a_shape_the_model_declares_otherwise_is_400_naming_the_input(server, sample) -> None:
    ((name, (datatype, shape)),) = METADATA[sample][1].items()
    bad = np.zeros((2, *[d + 1 for d in shape[1:]]), dtype=np.float32)
    body = {
        "inputs": [
            {
                "name": name,
                "shape": list(bad.shape),
                "datatype": datatype,
                "data": bad.ravel().tolist(),
            }
        ]
    }
    reply = v2_post(server, sample, body)
    assert reply.status_code == 400, reply.text
    assert f"'{name}' expects shape {shape}, got {list(bad.shape)}" in reply.json()["error"]
    with pytest.raises(InferenceServerException) as info:
        _infer(server, sample, {name: bad}, "grpc")
    assert info.value.status() == str(grpc.StatusCode.INVALID_ARGUMENT)
    assert v1_predict(server, sample, {"instances": bad.tolist()}).status_code == 400


def test_a_datatype_the_model_declares_otherwise_is_400_naming_the_input(server) -> None:
    for sample in ("typed-export", "typed-torchscript"):
        inputs = _typed_inputs()
        inputs["flags"] = inputs["flags"].astype(np.float32)
        with pytest.raises(InferenceServerException) as info:
            _infer(server, sample, inputs, "grpc")
        assert info.value.status() == str(grpc.StatusCode.INVALID_ARGUMENT)
        assert "'flags' is BOOL, got FP32" in info.value.message()
        missing = _typed_inputs()
        del missing["count"]
        with pytest.raises(InferenceServerException) as info:
            _infer(server, sample, missing, "json")
        assert "missing input 'count'" in info.value.message()


@pytest.mark.parametrize(
    ("sample", "name", "bad"),
    [
        ("digits-torchscript", "images", np.zeros((2, 1, 7, 7), dtype=np.float32)),
        ("iris-state-dict", "features", np.zeros((2, 5), dtype=np.float32)),
        ("digits-torchscript", "images", np.zeros((2, 64), dtype=np.float32)),
    ],
    ids=["scripted-shape", "eager-shape", "scripted-rank"],
)
def test_what_only_torch_can_check_is_400_and_serving_goes_on(
    server, reference, sample, name, bad
) -> None:
    with pytest.raises(InferenceServerException) as info:
        _infer(server, sample, {name: bad}, "json")
    assert "400" in str(info.value.status())
    assert f"Model '{sample}' rejected the input: " in info.value.message()
    assert "Exception raised from" not in info.value.message()
    inputs = _inputs(sample, 2)
    _same(_infer(server, sample, inputs, "grpc"), reference(sample, inputs))


def test_bytes_are_400_naming_the_input(server) -> None:
    body = {"inputs": [{"name": "images", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}
    protocol_clients.assert_rejected(server, "digits-torchscript", body, "'images' is BYTES")
    body["inputs"][0]["name"] = "features"
    protocol_clients.assert_rejected(server, "iris-export", body, "'features' is FP32, got BYTES")


# -- startup: by content, not suffix; clear errors naming what was found ----------------------


def _fails(model_dir: Path, *expected: str, flags: tuple[str, ...] = (), env=None) -> str:
    done = run_to_exit(
        "torchserver", ["--model_name=m", f"--model_dir={model_dir}", *flags], env=env
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output, output
    for fragment in expected:
        assert fragment in output, output
    return output


@NEEDS_COMPILER
def test_a_bare_aoti_package_needs_allow_unchecked_aoti(samples, server) -> None:
    """It records no input dtypes or shapes: nothing could check a request before its code."""
    _fails(
        samples["iris-aoti"],
        "model.pt2 is a bare AOTInductor package",
        "Package the exported program with it",
        "--allow_unchecked_aoti (env ALLOW_UNCHECKED_AOTI=true)",
    )
    assert "model.pt2 is a bare AOTInductor package: requests reach it unchecked" in server.output()


@NEEDS_COMPILER
def test_models_load_where_there_is_no_compiler(samples, tmp_path, reference) -> None:
    """The image has no C++ compiler; torch's public package loaders probe for one."""
    root = tmp_path / "models"
    names = ("iris-aoti", "digits-aoti", "iris-export", "iris-torchscript")
    for name in names:
        shutil.copytree(samples[name], root / name)
    (tmp_path / "bin").mkdir()
    env = {"PATH": str(tmp_path / "bin"), "CXX": str(tmp_path / "bin" / "g++")}
    args = ["--model_name=x", f"--model_dir={root}", "--allow_unchecked_aoti"]
    with ServerProcess("torchserver", args, env=env) as proc:
        for name in names:
            inputs = _inputs(name, 3)
            _same(_infer(proc, name, inputs, "grpc"), reference(name, inputs))
        assert "outdated" not in proc.output()


def test_formats_are_told_by_content_not_suffix(samples, tmp_path, reference) -> None:
    """A TorchScript archive named .pt2 and an exported program named .pt still load right."""
    (tmp_path / "a").mkdir()
    shutil.copy(samples["iris-torchscript"] / "model.pt", tmp_path / "a" / "model.pt2")
    (tmp_path / "b").mkdir()
    shutil.copy(samples["iris-export"] / "model.pt2", tmp_path / "b" / "model.pth")
    with ServerProcess("torchserver", ["--model_name=x", f"--model_dir={tmp_path}"]) as proc:
        assert v2_metadata(proc, "a")["parameters"]["format"] == "TorchScript (traced)"
        assert v2_metadata(proc, "b")["parameters"]["format"] == "torch.export"
        inputs = _inputs("iris-export", 2)
        _same(_infer(proc, "b", inputs, "binary"), reference("iris-export", inputs))


def _rewrite(source: Path, target: Path, change) -> None:
    """Copy a zip archive entry by entry; ``change(name, data)`` gives new bytes or None to drop."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            data = change(info.filename, old.read(info.filename))
            if data is not None:
                new.writestr(info, data)


def test_archives_of_no_known_format_or_of_two(samples, tmp_path) -> None:
    (tmp_path / "model.pt").write_bytes(b"")
    _fails(tmp_path, "model.pt is not a PyTorch model file", "it is empty")
    with zipfile.ZipFile(tmp_path / "model.pt", "w") as archive:
        archive.writestr("model/notes.txt", "hello")
    _fails(tmp_path, "model.pt is a zip archive but none of", "a TorchScript archive", "notes.txt")
    shutil.copy(samples["iris-export"] / "model.pt2", tmp_path / "model.pt")
    with zipfile.ZipFile(tmp_path / "model.pt", "a") as archive:
        root = archive.namelist()[0].split("/")[0]
        archive.writestr(f"{root}/code/__torch__.py", "")
        archive.writestr(f"{root}/constants.pkl", b"")
    _fails(tmp_path, "model.pt is ambiguous", "torch.export program", "TorchScript archive")


def test_a_state_dict_needs_its_class(samples, tmp_path) -> None:
    for sample in ("iris-state-dict", "digits-state-dict"):
        _fails(samples[sample], "is a state_dict", "--model_class package.module:Class")
    env = {"PYTHONPATH": str(EXAMPLES)}
    _fails(
        samples["iris-state-dict"],
        "model.safetensors does not fit samples.torch_models:DigitsCNN",
        "Missing key(s)",
        flags=("--model_class=samples.torch_models:DigitsCNN",),
        env=env,
    )
    _fails(
        samples["iris-state-dict"],
        "Cannot import --model_class nowhere:Net",
        flags=("--model_class=nowhere:Net",),
    )
    # The class can come from the environment too (MODEL_CLASS).
    env["MODEL_CLASS"] = "samples.torch_models:IrisMLP"
    with ServerProcess(
        "torchserver", [f"--model_dir={samples['iris-state-dict']}"], env=env
    ) as proc:
        assert v2_metadata(proc, "model")["parameters"]["format"] == "state_dict"


def test_a_pickled_module_needs_allow_pickle(tmp_path) -> None:
    from torch_probe import Probe

    torch.save(Probe(), tmp_path / "model.pt")
    _fails(
        tmp_path,
        "model.pt is a pickled Python object naming torch_probe.Probe",
        "--allow_pickle (env ALLOW_PICKLE=true)",
        "runs code",
    )
    torch.save({"epoch": 3, "weights": Probe().state_dict()}, tmp_path / "model.pt")
    _fails(tmp_path, "holds a dict (keys: epoch, weights), neither a module nor a state_dict")


def _with_pickled_weight(samples: dict[str, Path], target: Path) -> None:
    """The iris program with its first weight stored the way tensor subclasses are: pickled."""
    import json

    source = samples["iris-export"] / "model.pt2"
    with zipfile.ZipFile(source) as archive:
        (config_name,) = [n for n in archive.namelist() if n.endswith("weights_config.json")]
        config = json.loads(archive.read(config_name))
    entry = next(e for e in config["config"].values() if e["path_name"] == "weight_0")
    entry["use_pickle"] = True
    sizes = [s["as_int"] for s in entry["tensor_meta"]["sizes"]]

    def change(name: str, data: bytes) -> bytes:
        if name == config_name:
            return json.dumps(config).encode()
        if name.endswith("/data/weights/weight_0"):
            tensor = torch.frombuffer(bytearray(data), dtype=torch.float32).reshape(sizes)
            buffer = io.BytesIO()
            torch.save(torch.nn.Parameter(tensor.clone()), buffer)
            return buffer.getvalue()
        return data

    target.mkdir()
    _rewrite(source, target / "model.pt2", change)


def test_an_exported_program_with_pickled_parts_needs_allow_pickle(
    samples, tmp_path, reference
) -> None:
    _with_pickled_weight(samples, tmp_path / "m")
    _fails(
        tmp_path / "m",
        "model.pt2 is a torch.export program",
        "with pickled parts",
        "--allow_pickle",
    )
    with ServerProcess("torchserver", [f"--model_dir={tmp_path / 'm'}", "--allow_pickle"]) as proc:
        inputs = _inputs("iris-export", 3)
        got = _infer(proc, "model", inputs, "grpc")
        np.testing.assert_allclose(
            got["logits"], reference("iris-export", inputs)["logits"], rtol=1e-5
        )


def test_cuda_without_a_gpu_is_a_startup_error(samples) -> None:
    if torch.cuda.is_available():
        pytest.skip("needs a machine without a CUDA GPU: torch sees one here")
    for flags, env in ((("--device=cuda",), None), ((), {"DEVICE": "cuda"})):
        _fails(
            samples["iris-export"],
            "Cannot serve model.pt2 with --device cuda",
            GPU_MISSING,
            flags=flags,
            env=env,
        )
    if "digits-aoti" in samples:
        _fails(
            samples["digits-aoti"],
            "AOTInductor package compiled for cpu, and runs only there",
            flags=("--device=cuda",),
        )


def test_cuda_answers_match_the_cpu(samples, reference, tmp_path) -> None:
    if not torch.cuda.is_available():
        pytest.skip(f"CUDA not available: {GPU_MISSING}")
    root = tmp_path / "models"
    for name in ("iris-torchscript", "iris-export", "digits-torchscript", "typed-export"):
        shutil.copytree(samples[name], root / name)
    with ServerProcess(
        "torchserver", ["--model_name=x", f"--model_dir={root}", "--device=cuda"]
    ) as gpu:
        for name in ("iris-torchscript", "iris-export", "digits-torchscript", "typed-export"):
            assert v2_metadata(gpu, name)["parameters"]["device"] == "cuda"
            inputs = _inputs(name, 64)
            for path in V2_PATHS:
                # Floats within GPU rounding (TF32 matmuls, other kernels).
                got = _infer(gpu, name, inputs, path)
                want = reference(name, inputs)
                assert sorted(got) == sorted(want)
                for key in want:
                    np.testing.assert_allclose(got[key], want[key], rtol=1e-2, atol=1e-2)

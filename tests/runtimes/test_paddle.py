"""paddleserver beyond the shared conformance suite: both layouts, named tensors, errors.

One server serves every Paddle sample (one sub-folder each: the iris MLP and
the two-input model, each in the PIR ``.json`` and the legacy ``.pdmodel``
layout). Its answers are compared with what ``paddle.inference`` predicts in
this process on the same files and rows. Predict runs in the thread pool
(``--predict_executor=thread``) so concurrent requests really meet in the
runtime's lock around its one predictor.
"""

from __future__ import annotations

import functools
import shutil
import signal
import subprocess
import sys
import warnings
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
from serverproc import ServerProcess, run_to_exit
from tritonclient.utils import InferenceServerException

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="No ccache found")
    import paddle
    import paddle.inference

pytestmark = pytest.mark.e2e

IRIS = ["iris-mlp", "iris-mlp-legacy"]
TWO = ["two-io", "two-io-legacy"]
LAYOUT_FILE = {"iris-mlp": "model.json", "iris-mlp-legacy": "model.pdmodel"}
CORRUPT = b"\x00\x01 this is not a model \xff" * 8


@pytest.fixture(scope="module")
def samples(framework_samples) -> dict[str, Path]:
    return framework_samples("paddle")


@pytest.fixture(scope="module")
def server(samples: dict[str, Path]) -> Iterator[ServerProcess]:
    root = samples["iris-mlp"].parent
    assert {p.name for p in root.iterdir()} == {*IRIS, *TWO}
    proc = ServerProcess(
        "paddleserver",
        [
            "--model_name=unused",
            f"--model_dir={root}",
            "--predict_executor=thread",
            "--nthread=2",
        ],
    )
    with proc:
        yield proc


def _model_file(directory: Path) -> Path:
    (found,) = [p for p in directory.iterdir() if p.suffix in (".json", ".pdmodel")]
    return found


@functools.cache
def _predictor(directory: Path) -> Any:
    path = _model_file(directory)
    config = paddle.inference.Config(str(path), str(path.with_suffix(".pdiparams")))
    config.disable_glog_info()
    return paddle.inference.create_predictor(config)


def reference(directory: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What paddle.inference predicts in this process for ``feeds``: every output by name."""
    predictor = _predictor(directory)
    for name, data in feeds.items():
        predictor.get_input_handle(name).copy_from_cpu(data)
    predictor.run()
    return {n: predictor.get_output_handle(n).copy_to_cpu() for n in predictor.get_output_names()}


def iris_rows(count: int) -> np.ndarray:
    from sklearn.datasets import load_iris

    X = load_iris().data.astype(np.float32)
    return np.resize(X, (count, X.shape[1]))


def two_feeds(rows: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "a": rng.normal(size=(rows, 4)).astype(np.float32),
        "b": rng.normal(size=(rows, 2)).astype(np.float32),
    }


def _close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def _http_infer(
    server: ServerProcess, model: str, feeds: dict[str, np.ndarray], binary: bool, outputs=None
) -> dict[str, np.ndarray]:
    client = httpclient.InferenceServerClient(server.http_address)
    tensors = []
    for name, data in feeds.items():
        tensor = httpclient.InferInput(name, list(data.shape), "FP32")
        tensor.set_data_from_numpy(data, binary_data=binary)
        tensors.append(tensor)
    wanted = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in outputs or []]
    result = client.infer(model, tensors, outputs=wanted or None)
    return {o["name"]: result.as_numpy(o["name"]) for o in result.get_response()["outputs"]}


def _grpc_infer(
    server: ServerProcess, model: str, feeds: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    client = grpcclient.InferenceServerClient(server.grpc_address)
    tensors = []
    for name, data in feeds.items():
        tensor = grpcclient.InferInput(name, list(data.shape), "FP32")
        tensor.set_data_from_numpy(data)
        tensors.append(tensor)
    result = client.infer(model, tensors)
    return {o.name: result.as_numpy(o.name) for o in result.get_response().outputs}


def _post(server: ServerProcess, model: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.http_url}/v2/models/{model}/infer", json=body, timeout=30)


def _json_input(name: str, data: np.ndarray) -> dict[str, Any]:
    return {
        "name": name,
        "shape": list(data.shape),
        "datatype": "FP32",
        "data": data.ravel().tolist(),
    }


# -- every layout loads and describes itself --------------------------------------


@pytest.mark.parametrize("model", [*IRIS, *TWO])
def test_metadata_from_the_predictor_and_program(
    server: ServerProcess, samples: dict[str, Path], model: str
) -> None:
    from samples import paddle_inference

    meta = httpx.get(f"{server.http_url}/v2/models/{model}").json()
    assert meta["platform"] == "paddle"
    specs = paddle_inference.SPECS[model.removesuffix(paddle_inference.LEGACY)][1]
    assert meta["inputs"] == [
        {"name": s.name, "datatype": "FP32", "shape": list(s.shape)} for s in specs
    ]
    feeds = {s.name: np.ones((3, s.shape[1]), np.float32) for s in specs}
    want = reference(samples[model], feeds)
    assert [o["name"] for o in meta["outputs"]] == list(want)
    for output in meta["outputs"]:
        assert output["datatype"] == "FP32"
        assert output["shape"] == [-1, want[output["name"]].shape[1]]
    params = meta["parameters"]
    assert params["model_file"] == _model_file(samples[model]).name
    assert params["layout"] == ("program" if model.endswith("legacy") else "pir")
    if params["device"] == "cpu":
        assert params["cpu_math_threads"] == 2  # --nthread
    else:
        assert params["device"] == "gpu:0"


def test_log_is_clean_and_names_the_device(server: ServerProcess) -> None:
    log = server.output()
    assert "ccache" not in log and "Warning" not in log, log
    assert "model.pdmodel on " in log and "model.json on " in log, log


# -- predictions equal paddle.inference's, on every protocol ----------------------


@pytest.mark.parametrize("model", IRIS)
def test_iris_every_protocol_matches_paddle(
    server: ServerProcess, samples: dict[str, Path], model: str
) -> None:
    rows = iris_rows(5)
    want = reference(samples[model], {"x": rows})
    (output,) = want
    for got in (
        _http_infer(server, model, {"x": rows}, binary=False),
        _http_infer(server, model, {"x": rows}, binary=True),
        _grpc_infer(server, model, {"x": rows}),
    ):
        assert list(got) == [output]
        _close(got[output], want[output])
    v1 = httpx.post(
        f"{server.http_url}/v1/models/{model}:predict", json={"instances": rows.tolist()}
    )
    assert v1.status_code == 200, v1.text
    _close(np.asarray(v1.json()["predictions"], dtype=np.float32), want[output])


@pytest.mark.parametrize("model", IRIS)
def test_thousand_rows(server: ServerProcess, samples: dict[str, Path], model: str) -> None:
    rows = iris_rows(1000)
    (output, want) = next(iter(reference(samples[model], {"x": rows}).items()))
    _close(_http_infer(server, model, {"x": rows}, binary=True)[output], want)
    reply = _post(server, model, {"inputs": [_json_input("x", rows)]})
    assert reply.status_code == 200, reply.text
    (out,) = reply.json()["outputs"]
    assert out["shape"] == [1000, want.shape[1]]
    _close(np.asarray(out["data"], dtype=np.float32).reshape(out["shape"]), want)


@pytest.mark.parametrize("model", TWO)
def test_two_inputs_by_name_and_every_output(
    server: ServerProcess, samples: dict[str, Path], model: str
) -> None:
    feeds = two_feeds(6)
    want = reference(samples[model], feeds)
    assert len(want) == 2
    # Inputs sent in the other order than declared: they are matched by name.
    reordered = {"b": feeds["b"], "a": feeds["a"]}
    for got in (
        _http_infer(server, model, reordered, binary=False),
        _http_infer(server, model, reordered, binary=True),
        _grpc_infer(server, model, reordered),
    ):
        assert list(got) == list(want)
        for name in want:
            _close(got[name], want[name])
    v1 = httpx.post(
        f"{server.http_url}/v1/models/{model}:predict",
        json={"inputs": {name: data.tolist() for name, data in reordered.items()}},
    )
    assert v1.status_code == 200, v1.text
    predictions = v1.json()["predictions"]
    for name in want:
        _close(np.asarray([row[name] for row in predictions], dtype=np.float32), want[name])


@pytest.mark.parametrize("model", TWO)
def test_output_selection(server: ServerProcess, samples: dict[str, Path], model: str) -> None:
    feeds = two_feeds(3)
    want = reference(samples[model], feeds)
    second = list(want)[1]
    got = _http_infer(server, model, feeds, binary=True, outputs=[second])
    assert list(got) == [second]
    _close(got[second], want[second])
    reply = _post(
        server,
        model,
        {"inputs": [_json_input(n, d) for n, d in feeds.items()], "outputs": [{"name": "nope"}]},
    )
    assert reply.status_code == 400 and "nope" in reply.json()["error"], reply.text


def test_concurrent_requests_each_get_their_own_answer(
    server: ServerProcess, samples: dict[str, Path]
) -> None:
    """Paddle predictors are not thread-safe: concurrent calls must not mix up rows."""
    batches = [iris_rows(2000 + i * 400) + np.float32(i) / 10 for i in range(24)]
    wants = [reference(samples["iris-mlp"], {"x": rows})["fetch_name_0"] for rows in batches]

    def call(rows: np.ndarray) -> np.ndarray:
        return _http_infer(server, "iris-mlp", {"x": rows}, binary=True)["fetch_name_0"]

    with ThreadPoolExecutor(8) as pool:
        for _ in range(5):
            for got, want in zip(pool.map(call, batches), wants, strict=True):
                _close(got, want)


# -- bad requests: 400 with the reason, and the server keeps serving ---------------


def _assert_400(reply: httpx.Response, *fragments: str) -> None:
    assert reply.status_code == 400, reply.text
    for fragment in fragments:
        assert fragment in reply.json()["error"], reply.text


def test_missing_and_unknown_inputs(server: ServerProcess) -> None:
    feeds = two_feeds(2)
    only_a = {"inputs": [_json_input("a", feeds["a"])]}
    _assert_400(_post(server, "two-io", only_a), "missing input 'b'")
    unknown = {"inputs": [_json_input("a", feeds["a"]), _json_input("c", feeds["b"])]}
    _assert_400(_post(server, "two-io", unknown), "no input named 'c'", "a, b")
    client = grpcclient.InferenceServerClient(server.grpc_address)
    tensor = grpcclient.InferInput("a", [2, 4], "FP32")
    tensor.set_data_from_numpy(feeds["a"])
    with pytest.raises(InferenceServerException) as info:
        client.infer("two-io", [tensor])
    assert info.value.status() == str(grpc.StatusCode.INVALID_ARGUMENT)
    assert "'b'" in info.value.message()


@pytest.mark.parametrize("model", IRIS)
def test_wrong_feature_count(server: ServerProcess, model: str) -> None:
    reply = _post(server, model, {"inputs": [_json_input("x", iris_rows(2)[:, :3])]})
    _assert_400(reply, "expects shape [-1, 4]", "got [2, 3]")


def test_rows_that_paddle_cannot_broadcast(server: ServerProcess, samples: dict[str, Path]) -> None:
    feeds = {"a": two_feeds(3)["a"], "b": two_feeds(2)["b"]}
    reply = _post(server, "two-io", {"inputs": [_json_input(n, d) for n, d in feeds.items()]})
    _assert_400(reply, "rejected the input")
    assert "\n" not in reply.json()["error"]
    good = two_feeds(2)
    _close(
        _http_infer(server, "two-io", good, binary=True)["fetch_name_0"],
        reference(samples["two-io"], good)["fetch_name_0"],
    )


@pytest.mark.parametrize("model", [*IRIS, *TWO])
def test_empty_batch_is_400_not_a_crash(
    server: ServerProcess, samples: dict[str, Path], model: str
) -> None:
    """Paddle kills the process (SIGFPE) on some empty tensors; the runtime refuses them."""
    width = {"x": 4, "a": 4, "b": 2}
    names = ["x"] if model in IRIS else ["a", "b"]
    body = {"inputs": [_json_input(n, np.zeros((0, width[n]), np.float32)) for n in names]}
    _assert_400(_post(server, model, body), "is empty")
    assert httpx.get(f"{server.http_url}/v2/health/ready").status_code == 200


# -- startup errors: a clear message naming the file, exit 2, no traceback ---------


def _fails(model_dir: Path, *expected: str) -> None:
    done = run_to_exit("paddleserver", ["--model_name=m", f"--model_dir={model_dir}"])
    output = done.stdout + done.stderr
    assert done.returncode == 2, output  # not killed by a signal
    assert "Traceback" not in output, output
    for fragment in expected:
        assert fragment in output, output


def _copy(samples: dict[str, Path], model: str, tmp_path: Path) -> Path:
    target = tmp_path / model
    shutil.copytree(samples[model], target)
    return target


@pytest.mark.parametrize("model", IRIS)
def test_missing_params_file(samples: dict[str, Path], model: str, tmp_path: Path) -> None:
    target = _copy(samples, model, tmp_path)
    (target / "model.pdiparams").unlink()
    _fails(target, LAYOUT_FILE[model], "model.pdiparams", "found:")


@pytest.mark.parametrize("model", IRIS)
def test_corrupt_program_file(samples: dict[str, Path], model: str, tmp_path: Path) -> None:
    """These bytes crash Paddle itself (SIGSEGV) as a .pdmodel: they are checked first."""
    target = _copy(samples, model, tmp_path)
    (target / LAYOUT_FILE[model]).write_bytes(CORRUPT)
    _fails(target, str(target / LAYOUT_FILE[model]))


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b'{"base_code": {"magic": "pir"}}', "not a Paddle PIR program"), (b"", "not JSON")],
)
def test_json_that_is_not_a_pir_program(
    samples: dict[str, Path], tmp_path: Path, content: bytes, reason: str
) -> None:
    target = _copy(samples, "iris-mlp", tmp_path)
    (target / "model.json").write_bytes(content)
    _fails(target, "model.json", reason)


@pytest.mark.parametrize("model", IRIS)
def test_corrupt_params_file(samples: dict[str, Path], model: str, tmp_path: Path) -> None:
    target = _copy(samples, model, tmp_path)
    params = target / "model.pdiparams"
    params.write_bytes(params.read_bytes()[:100])
    _fails(target, "Paddle cannot load", LAYOUT_FILE[model], "model.pdiparams")


def test_sigterm_while_loading_just_exits() -> None:
    """Paddle's import installs a SIGTERM handler that dumps a FatalError; the runtime undoes it.

    The server installs its graceful handler once it serves; before that (a
    pod stopped while its model loads) SIGTERM must simply end the process.
    """
    code = (
        "import os, signal, time\n"
        "from paddleserver.model import _paddle\n"
        "_paddle()\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(30)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    output = done.stdout + done.stderr  # Paddle writes its dump to stdout
    assert done.returncode == -signal.SIGTERM, output
    assert "FatalError" not in output, output


# -- GPU ----------------------------------------------------------------------------


def _gpu_missing() -> str:
    if not paddle.is_compiled_with_cuda():
        return "the installed paddlepaddle is a CPU build (no CUDA)"
    if paddle.device.cuda.device_count() == 0:
        return "no CUDA GPU is visible"
    return ""


@pytest.mark.skipif(bool(_gpu_missing()), reason=_gpu_missing() or "GPU present")
def test_gpu_is_used_when_present(samples: dict[str, Path]) -> None:
    rows = iris_rows(10)
    (output, want) = next(iter(reference(samples["iris-mlp"], {"x": rows}).items()))
    with ServerProcess(
        "paddleserver", ["--model_name=m", f"--model_dir={samples['iris-mlp']}"]
    ) as proc:
        meta = httpx.get(f"{proc.http_url}/v2/models/m").json()
        assert meta["parameters"]["device"] == "gpu:0"
        got = _http_infer(proc, "m", {"x": rows}, binary=True)[output]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)

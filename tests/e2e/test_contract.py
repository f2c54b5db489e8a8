"""The container contract: flags and environment, load before listen, workers, signals.

Each test starts its own real process, because each is about how the process
starts, listens or stops.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import socket
import time
from pathlib import Path

import httpx
import joblib
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
from serverproc import ServerProcess, free_port

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
ROW = [[6.7, 3.0, 5.2, 2.3]]


def _predict(server: ServerProcess, name: str = "iris") -> httpx.Response:
    return httpx.post(
        f"{server.http_url}/v1/models/{name}:predict", json={"instances": ROW}, timeout=30
    )


def test_flags_from_environment(iris_dir):
    http_port, grpc_port = free_port(), free_port()
    env = {
        "MODEL_NAME": "from-env",
        "MODEL_DIR": str(iris_dir),
        "HTTP_PORT": str(http_port),
        "GRPC_PORT": str(grpc_port),
    }
    server = ServerProcess("sklearnserver", [], env=env, http_port=http_port, grpc_port=grpc_port)
    # ServerProcess appends --http_port/--grpc_port; drop them to prove the env is read.
    server.args = ["--host=127.0.0.1"]
    with server:
        assert _predict(server, "from-env").status_code == 200
        assert tgrpc.InferenceServerClient(server.grpc_address).is_model_ready("from-env")


def test_command_line_beats_environment_and_last_flag_wins(iris_dir):
    server = ServerProcess(
        "sklearnserver",
        ["--model_name=first", f"--model_dir={iris_dir}", "--model_name", "iris"],
        env={"MODEL_NAME": "from-env"},
    )
    with server:
        assert httpx.get(f"{server.http_url}/v1/models").json() == {"models": ["iris"]}


def test_kserve_flags_and_unknown_flags_are_accepted(iris_dir):
    server = ServerProcess(
        "sklearnserver",
        [
            "--model_name=iris",
            f"--model_dir={iris_dir}",
            "--nthread=1",
            "--max_asyncio_workers=4",
            "--enable_latency_logging=true",
            "--some_future_kserve_flag=1",
        ],
    )
    with server:
        assert _predict(server).status_code == 200
        assert "ignoring unknown arguments: --some_future_kserve_flag=1" in server.output()


def test_port_opens_only_after_the_model_loaded(tmp_path):
    server = ServerProcess(
        "modelserver",
        ["--model_class=slow_model:SlowLoadModel", "--model_name=slow", f"--model_dir={tmp_path}"],
        env={"PYTHONPATH": str(MODELS_DIR), "SLOW_LOAD_SECONDS": "4"},
    )
    server.start(wait=False)
    try:
        time.sleep(1.0)
        assert server.proc.poll() is None
        for port in (server.http_port, server.grpc_port):
            with socket.socket() as s:
                assert s.connect_ex(("127.0.0.1", port)) != 0, "port open before the model loaded"
        server.wait_ready(timeout=60)
        assert "loading model slow" in server.output()
        r = httpx.get(f"{server.http_url}/v2/models/slow/ready")
        assert r.status_code == 200
    finally:
        server.stop()


def test_predict_proba_environment_variable(iris_dir):
    estimator = joblib.load(iris_dir / "model.joblib")
    server = ServerProcess(
        "sklearnserver",
        ["--model_name=iris", f"--model_dir={iris_dir}"],
        env={"PREDICT_PROBA": "true"},
    )
    with server:
        got = _predict(server).json()["predictions"]
        np.testing.assert_allclose(got, estimator.predict_proba(np.array(ROW)))
        body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}
        out = httpx.post(f"{server.http_url}/v2/models/iris/infer", json=body).json()["outputs"]
        assert [o["name"] for o in out] == ["predict_proba"]


def test_workers_share_the_ports(iris_dir):
    server = ServerProcess(
        "sklearnserver", ["--model_name=iris", f"--model_dir={iris_dir}", "--workers=2"]
    )
    with server:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: _predict(server).status_code, range(64)))
        assert results == [200] * 64
        client = tgrpc.InferenceServerClient(server.grpc_address)
        assert client.is_model_ready("iris")
        assert server.output().count("loading model iris") == 2
    assert server.proc.returncode == 0


def test_slow_predict_does_not_stall_other_requests(tmp_path):
    """While one predict sleeps, health and other inferences are answered."""
    server = ServerProcess(
        "modelserver",
        ["--model_class=slow_model:SlowModel", "--model_name=slow", f"--model_dir={tmp_path}"],
        env={"PYTHONPATH": str(MODELS_DIR)},
    )

    def infer(seconds: float) -> httpx.Response:
        body = {"inputs": [{"name": "s", "shape": [1], "datatype": "FP64", "data": [seconds]}]}
        return httpx.post(f"{server.http_url}/v2/models/slow/infer", json=body, timeout=60)

    with server, concurrent.futures.ThreadPoolExecutor(2) as pool:
        slow = pool.submit(infer, 5.0)
        time.sleep(0.5)
        assert not slow.done()
        assert httpx.get(f"{server.http_url}/v2/health/ready", timeout=30).status_code == 200
        fast = infer(0.0)
        assert fast.status_code == 200
        # Both answers arrived while the slow predict was still running.
        assert not slow.done()
        assert slow.result().status_code == 200
        assert slow.result().json()["outputs"][0]["data"] == [5.0]


def test_sigterm_lets_in_flight_requests_finish_then_exits_zero(tmp_path):
    server = ServerProcess(
        "modelserver",
        ["--model_class=slow_model:SlowModel", "--model_name=slow", f"--model_dir={tmp_path}"],
        env={"PYTHONPATH": str(MODELS_DIR)},
    )
    body = {"inputs": [{"name": "s", "shape": [1], "datatype": "FP64", "data": [2.0]}]}
    with server, concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(
            httpx.post, f"{server.http_url}/v2/models/slow/infer", json=body, timeout=60
        )
        time.sleep(0.5)
        os.kill(server.proc.pid, signal.SIGTERM)
        response = pending.result()
        assert response.status_code == 200
        assert response.json()["outputs"][0]["data"] == [2.0]
        assert server.proc.wait(30) == 0


@pytest.mark.parametrize(("which", "flag"), [("HTTP", "http_port"), ("gRPC", "grpc_port")])
@pytest.mark.parametrize("workers", [1, 2])
def test_a_taken_port_is_one_line_exit_2_before_the_model_loads(
    tmp_path: Path, which: str, flag: str, workers: int
) -> None:
    """Found before a 60 s load, said in one line that names the port and the flag."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        ports = {"http_port": port} if flag == "http_port" else {"grpc_port": port}
        server = ServerProcess(
            "modelserver",
            [
                "--model_class=slow_model:SlowLoadModel",
                "--model_name=slow",
                f"--model_dir={tmp_path}",
                f"--workers={workers}",
            ],
            env={"PYTHONPATH": str(MODELS_DIR), "SLOW_LOAD_SECONDS": "60"},
            **ports,
        )
        started = time.monotonic()
        server.start(wait=False)
        assert server.proc is not None
        assert server.proc.wait(30) == 2, server.output()
        assert time.monotonic() - started < 20  # not after the 60 s load
    output = server.output()
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if "cannot start" in line]
    assert len(lines) == 1, output
    assert f"{which} port {port}" in lines[0]
    assert f"--{flag}" in lines[0] and flag.upper() in lines[0]
    assert "loading model" not in output


def test_unknown_model_lists_the_served_models(iris_server: ServerProcess) -> None:
    reply = httpx.post(
        f"{iris_server.http_url}/v2/models/nope/infer",
        json={"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROW[0]}]},
    )
    assert reply.status_code == 404
    assert reply.json()["error"] == "Model with name nope does not exist. Served models: iris."
    client = tgrpc.InferenceServerClient(iris_server.grpc_address)
    with pytest.raises(Exception, match="Served models: iris"):
        client.get_model_metadata("nope")

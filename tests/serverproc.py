"""Start a real runtime process on free ports and wait until it serves.

Tests talk to it over loopback with real clients; the process is always
stopped (SIGTERM, then SIGKILL) and its log is kept for failure messages.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``python -m <module> ...`` on free HTTP and gRPC ports."""

    def __init__(
        self,
        module: str,
        args: list[str],
        env: dict[str, str] | None = None,
        http_port: int | None = None,
        grpc_port: int | None = None,
    ) -> None:
        self.module = module
        self.http_port = http_port or free_port()
        self.grpc_port = grpc_port or free_port()
        self.args = [
            *args,
            f"--http_port={self.http_port}",
            f"--grpc_port={self.grpc_port}",
            "--host=127.0.0.1",
        ]
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        # The log lives as long as the server, so no context manager.
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix=f"{module}-", suffix=".log", delete=False
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def http_address(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self, wait: bool = True, timeout: float = 120.0) -> ServerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.http_url}/v2/health/ready", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"server not ready after {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serving(module: str, *flags: str, env: dict[str, str] | None = None):
    """A fixture's body: ``python -m module flags...`` started, yielded, stopped."""
    with ServerProcess(module, list(flags), env=env) as server:
        yield server


def run_to_exit(
    module: str, args: list[str], timeout: float = 60.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a runtime expected to exit (bad flags, no model): its code and output.

    The ports are bound before the model loads, so the run gets free ones
    (unless ``args`` names its own): a server already on 8080 must not turn a
    model error into a port error.
    """
    ports = []
    if not any(a.startswith(("--http_port", "--http-port")) for a in args):
        ports.append(f"--http_port={free_port()}")
    if not any(a.startswith(("--grpc_port", "--grpc-port")) for a in args):
        ports.append(f"--grpc_port={free_port()}")
    return subprocess.run(
        [sys.executable, "-m", module, *args, *ports],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


TEST_MODELS = Path(__file__).resolve().parent / "models"


def slow_server(tmp_path: Path, *flags: str) -> ServerProcess:
    """The core serving tests/models/ops_models.CountingSlowModel as 'slow'.

    Its predict sleeps for the request's value in seconds and reports how many
    predicts ran, which the limits and shutdown tests rely on.
    """
    model_dir = tmp_path / "slow"
    model_dir.mkdir()
    (model_dir / "model.slow").write_text("slow\n", encoding="utf-8")
    return ServerProcess(
        "modelserver",
        [
            "--model_class=ops_models:CountingSlowModel",
            "--model_name=slow",
            f"--model_dir={model_dir}",
            *flags,
        ],
        env={"PYTHONPATH": str(TEST_MODELS)},
    )


def rss_mib(pid: int) -> float:
    """A process's resident memory in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


class Prober(threading.Thread):
    """GET /v2/health/ready every 10 ms on a kept-alive connection; records each latency."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.done.is_set():
                started = time.perf_counter()
                reply = client.get(f"{self.url}/v2/health/ready")
                self.latencies.append(time.perf_counter() - started)
                if reply.status_code != 200:
                    self.failures.append(reply.text)
                time.sleep(0.01)


def poll_until(read, predicate, what: str, timeout: float = 20.0, every: float = 0.05):
    """Call ``read()`` until ``predicate`` holds on its value (bounded); return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if predicate(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {value}")
        time.sleep(every)


def metric(server: ServerProcess, name: str, model: str | None = None) -> float:
    """A sample's value in the server's /metrics (summed over the other labels; 0 if absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{server.http_url}/metrics", timeout=30).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and (model is None or sample.labels.get("model") == model)
    )


def grpc_output(response, index: int = 0) -> list:
    """Output ``index`` of a ModelInferResponse as a flat list (the server answers raw)."""
    import math

    from modelserver.codecs.tensor_data import array_from_raw

    out = response.outputs[index]
    shape = tuple(out.shape)
    data = array_from_raw(
        response.raw_output_contents[index], out.datatype, shape, math.prod(shape), out.name
    )
    return data.reshape(-1).tolist()

"""Triton's system shared memory with tritonclient's own shared-memory utilities.

A co-located client creates POSIX shared memory regions
(``tritonclient.utils.shared_memory``), registers them, and passes inputs and
receives outputs through them instead of the request body, over REST and
gRPC. Bounds, names and sizes the server refuses are 400 / INVALID_ARGUMENT
with the reason, never a crash; regions are let go when unregistered and at
shutdown; a server not started with --allow_shared_memory takes none.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
import tritonclient.utils.shared_memory as shm
from serverproc import ServerProcess, poll_until
from tritonclient.utils import InferenceServerException

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="needs POSIX shared memory"),
]

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [6.7, 3.0, 5.2, 2.3]])
OUT_BYTES = 3 * 3 * 8  # room for predict_proba


@pytest.fixture(scope="module")
def estimator(sklearn_root: Path) -> Any:
    return joblib.load(sklearn_root / "iris" / "model.joblib")


class Regions:
    """A test's input and output regions, created, filled and registered; removed after."""

    def __init__(self, server: ServerProcess) -> None:
        tag = uuid.uuid4().hex[:8]
        self.http = thttp.InferenceServerClient(server.http_address)
        self.grpc = tgrpc.InferenceServerClient(server.grpc_address)
        self.names = (f"in-{tag}", f"out-{tag}")
        self.keys = (f"/interop-in-{tag}", f"/interop-out-{tag}")
        self.input = shm.create_shared_memory_region(self.names[0], self.keys[0], ROWS.nbytes)
        self.output = shm.create_shared_memory_region(self.names[1], self.keys[1], OUT_BYTES)
        shm.set_shared_memory_region(self.input, [ROWS])
        self.http.register_system_shared_memory(self.names[0], self.keys[0], ROWS.nbytes)
        self.grpc.register_system_shared_memory(self.names[1], self.keys[1], OUT_BYTES)

    def close(self) -> None:
        for name in self.names:
            self.http.unregister_system_shared_memory(name)
        shm.destroy_shared_memory_region(self.input)
        shm.destroy_shared_memory_region(self.output)


@pytest.fixture
def regions(sklearn_server: ServerProcess) -> Iterator[Regions]:
    made = Regions(sklearn_server)
    yield made
    made.close()


def test_status_lists_registered_regions(regions: Regions) -> None:
    status = {r["name"]: r for r in regions.http.get_system_shared_memory_status()}
    assert status[regions.names[0]] == {
        "name": regions.names[0],
        "key": regions.keys[0],
        "offset": 0,
        "byte_size": ROWS.nbytes,
    }
    (one,) = regions.http.get_system_shared_memory_status(regions.names[1])
    assert one["key"] == regions.keys[1]
    grpc_status = regions.grpc.get_system_shared_memory_status(as_json=True)["regions"]
    assert grpc_status[regions.names[1]]["byte_size"] == str(OUT_BYTES)


def test_http_inputs_and_outputs_in_shared_memory(regions: Regions, estimator) -> None:
    tensor = thttp.InferInput("input-0", list(ROWS.shape), "FP64")
    tensor.set_shared_memory(regions.names[0], ROWS.nbytes)
    wanted = thttp.InferRequestedOutput("predict_proba", binary_data=True)
    wanted.set_shared_memory(regions.names[1], OUT_BYTES)
    result = regions.http.infer("iris", [tensor], outputs=[wanted])
    out = result.get_output("predict_proba")
    assert "data" not in out and out["parameters"]["shared_memory_region"] == regions.names[1]
    assert out["parameters"]["shared_memory_byte_size"] == OUT_BYTES
    got = shm.get_contents_as_numpy(regions.output, np.float64, out["shape"])
    np.testing.assert_allclose(got, estimator.predict_proba(ROWS))


def test_grpc_inputs_in_shared_memory_beside_raw_outputs(regions: Regions, estimator) -> None:
    """One output to shared memory, one in the answer: raw indices stay aligned."""
    tensor = tgrpc.InferInput("input-0", list(ROWS.shape), "FP64")
    tensor.set_shared_memory(regions.names[0], ROWS.nbytes)
    to_memory = tgrpc.InferRequestedOutput("predict_proba")
    to_memory.set_shared_memory(regions.names[1], OUT_BYTES)
    result = regions.grpc.infer(
        "iris", [tensor], outputs=[to_memory, tgrpc.InferRequestedOutput("predict")]
    )
    np.testing.assert_array_equal(result.as_numpy("predict"), estimator.predict(ROWS))
    got = shm.get_contents_as_numpy(regions.output, np.float64, [3, 3])
    np.testing.assert_allclose(got, estimator.predict_proba(ROWS))


def test_input_from_an_offset_of_a_larger_region(sklearn_server, estimator) -> None:
    tag = uuid.uuid4().hex[:8]
    client = thttp.InferenceServerClient(sklearn_server.http_address)
    region = shm.create_shared_memory_region(f"big-{tag}", f"/interop-big-{tag}", 4096)
    try:
        shm.set_shared_memory_region(region, [ROWS], offset=1024)
        client.register_system_shared_memory(f"big-{tag}", f"/interop-big-{tag}", 2048, 512)
        tensor = thttp.InferInput("input-0", list(ROWS.shape), "FP64")
        tensor.set_shared_memory(f"big-{tag}", ROWS.nbytes, offset=512)
        result = client.infer("iris", [tensor])
        np.testing.assert_array_equal(result.as_numpy("predict"), estimator.predict(ROWS))
    finally:
        client.unregister_system_shared_memory(f"big-{tag}")
        shm.destroy_shared_memory_region(region)


def _http_error(call: Any) -> str:
    with pytest.raises(InferenceServerException) as info:
        call()
    assert info.value.status() == "400", info.value
    return info.value.message()


def test_out_of_bounds_and_unknown_regions_are_400(regions: Regions, estimator) -> None:
    client = regions.http

    def infer(region: str, size: int, offset: int = 0) -> Any:
        tensor = thttp.InferInput("input-0", list(ROWS.shape), "FP64")
        tensor.set_shared_memory(region, size, offset=offset)
        return client.infer("iris", [tensor])

    assert "do not fit" in _http_error(lambda: infer(regions.names[0], ROWS.nbytes, 8))
    assert "do not fit" in _http_error(lambda: infer(regions.names[0], ROWS.nbytes + 8))
    assert "needs 96 bytes" in _http_error(lambda: infer(regions.names[0], 88))
    assert "Unable to find" in _http_error(lambda: infer("never-registered", ROWS.nbytes))
    # an output larger than the room given for it
    tensor = thttp.InferInput("input-0", list(ROWS.shape), "FP64")
    tensor.set_data_from_numpy(ROWS)
    small = thttp.InferRequestedOutput("predict_proba")
    small.set_shared_memory(regions.names[1], 16)
    assert "needs 72 bytes" in _http_error(lambda: client.infer("iris", [tensor], outputs=[small]))
    # registering: past the object's end, an unknown object, a path, a taken name
    register = client.register_system_shared_memory
    big = OUT_BYTES + 1
    assert "do not fit" in _http_error(lambda: register("x-big", regions.keys[1], big))
    assert "Cannot open" in _http_error(lambda: register("x", "/interop-no-such-object", 8))
    assert "not the name" in _http_error(lambda: register("x", "/../etc/passwd", 8))
    assert "already registered" in _http_error(lambda: register(regions.names[0], "/x", 8))
    with pytest.raises(InferenceServerException) as info:
        regions.grpc.register_system_shared_memory("x", "/interop-no-such-object", 8)
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
    result = regions.grpc.infer("iris", [_grpc_rows()])
    np.testing.assert_array_equal(result.as_numpy("predict"), estimator.predict(ROWS))


def _grpc_rows() -> tgrpc.InferInput:
    tensor = tgrpc.InferInput("input-0", list(ROWS.shape), "FP64")
    tensor.set_data_from_numpy(ROWS)
    return tensor


def test_a_region_shrunk_after_registering_is_400_not_a_crash(regions: Regions, estimator):
    """Reading past the end of a shrunk file would kill the process (SIGBUS)."""
    fd = os.open(f"/dev/shm{regions.keys[0]}", os.O_RDWR)
    try:
        os.ftruncate(fd, 16)
    finally:
        os.close(fd)
    tensor = thttp.InferInput("input-0", list(ROWS.shape), "FP64")
    tensor.set_shared_memory(regions.names[0], ROWS.nbytes)
    assert "smaller than when it was registered" in _http_error(
        lambda: regions.http.infer("iris", [tensor])
    )
    result = regions.grpc.infer("iris", [_grpc_rows()])
    np.testing.assert_array_equal(result.as_numpy("predict"), estimator.predict(ROWS))


def test_a_symlink_in_dev_shm_is_not_followed(sklearn_server) -> None:
    link = Path(f"/dev/shm/interop-link-{uuid.uuid4().hex[:8]}")
    link.symlink_to("/etc/hostname")
    try:
        client = thttp.InferenceServerClient(sklearn_server.http_address)
        message = _http_error(lambda: client.register_system_shared_memory("l", f"/{link.name}", 4))
        assert "Cannot open" in message
    finally:
        link.unlink()


def _mapped(server: ServerProcess, key: str) -> bool:
    assert server.proc is not None
    return f"/dev/shm{key}" in Path(f"/proc/{server.proc.pid}/maps").read_text()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_regions_are_let_go_when_unregistered_and_at_shutdown(sample_models) -> None:
    tag = uuid.uuid4().hex[:8]
    keys = [f"/interop-a-{tag}", f"/interop-b-{tag}"]
    handles = [shm.create_shared_memory_region(f"r{i}", k, 64) for i, k in enumerate(keys)]
    args = ["--model_name=iris", f"--model_dir={sample_models['iris']}", "--allow_shared_memory"]
    try:
        with ServerProcess("sklearnserver", args) as server:
            client = tgrpc.InferenceServerClient(server.grpc_address)
            for i, key in enumerate(keys):
                client.register_system_shared_memory(f"r{i}", key, 64)
            assert _mapped(server, keys[0]) and _mapped(server, keys[1])
            client.unregister_system_shared_memory("r0")
            assert not _mapped(server, keys[0]) and _mapped(server, keys[1])
            assert server.proc is not None
            server.proc.send_signal(signal.SIGTERM)
            poll_until(lambda: server.proc.poll(), lambda code: code is not None, "exit")
        assert server.proc.returncode == 0, server.output()
        assert "shared memory region r1 unregistered" in server.output()
        # the client's objects are the client's: still there to use or destroy
        assert all(Path(f"/dev/shm{k}").exists() for k in keys)
    finally:
        for handle in handles:
            shm.destroy_shared_memory_region(handle)


def test_without_the_flag_no_region_is_taken(sample_models) -> None:
    tag = uuid.uuid4().hex[:8]
    region = shm.create_shared_memory_region("r", f"/interop-off-{tag}", ROWS.nbytes)
    try:
        with ServerProcess(
            "sklearnserver", ["--model_name=iris", f"--model_dir={sample_models['iris']}"]
        ) as server:
            client = thttp.InferenceServerClient(server.http_address)
            assert "system_shared_memory" not in client.get_server_metadata()["extensions"]
            message = _http_error(
                lambda: client.register_system_shared_memory("r", f"/interop-off-{tag}", 8)
            )
            assert "--allow_shared_memory" in message
            tensor = thttp.InferInput("input-0", list(ROWS.shape), "FP64")
            tensor.set_shared_memory("r", ROWS.nbytes)
            message = _http_error(lambda: client.infer("iris", [tensor]))
            assert "--allow_shared_memory" in message
    finally:
        shm.destroy_shared_memory_region(region)

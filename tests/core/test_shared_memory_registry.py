"""The shared-memory registry and the codecs' shared-memory paths, in process.

Regions are real POSIX shared memory objects, made with tritonclient's own
utilities as a client would. Inputs must be views on the mapping (a write
by the client shows through: no copy), read-only, and bounds-checked.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.utils.shared_memory as shm
from modelserver import protos as pb
from modelserver.codecs import v2_grpc, v2_rest
from modelserver.codecs.tensor_data import SharedMemoryRef
from modelserver.dataplane.shared_memory import SharedMemoryRegistry
from modelserver.errors import InvalidInput
from modelserver.types import Tensor

pytestmark = pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="needs POSIX shared memory")

DATA = np.arange(12, dtype=np.float32).reshape(3, 4)


@pytest.fixture
def region() -> Iterator[tuple[Any, str]]:
    key = f"/core-test-{uuid.uuid4().hex[:8]}"
    handle = shm.create_shared_memory_region("r", key, 256)
    shm.set_shared_memory_region(handle, [DATA], offset=64)
    yield handle, key
    shm.destroy_shared_memory_region(handle)


@pytest.fixture
def registry(region: tuple[Any, str]) -> Iterator[SharedMemoryRegistry]:
    made = SharedMemoryRegistry()
    made.register("r", region[1], 32, 224)  # the region: bytes 32..256 of the object
    yield made
    made.close()


def test_inputs_are_read_only_views_on_the_mapping(registry, region) -> None:
    request = {
        "inputs": [
            {
                "name": "x",
                "shape": [3, 4],
                "datatype": "FP32",
                "parameters": {
                    "shared_memory_region": "r",
                    "shared_memory_offset": 32,
                    "shared_memory_byte_size": DATA.nbytes,
                    "content_type": "np",
                },
            }
        ]
    }
    decoded = v2_rest.decode_infer_request(orjson.dumps(request), None, "m", None, registry.read)
    (tensor,) = decoded.inputs
    np.testing.assert_array_equal(tensor.data, DATA)
    assert tensor.parameters == {"content_type": "np"}
    assert not tensor.data.flags.writeable
    # the client writes into its region: the decoded array sees it (no copy was made)
    shm.set_shared_memory_region(region[0], [np.full((3, 4), 7, dtype=np.float32)], offset=64)
    assert (tensor.data == 7).all()


def test_grpc_raw_contents_skip_inputs_in_shared_memory(registry) -> None:
    """tritonclient sends raw contents only for the inputs not in shared memory."""
    msg = pb.ModelInferRequest(model_name="m")
    first = msg.inputs.add(name="a", datatype="FP32", shape=[3, 4])
    first.parameters["shared_memory_region"].string_param = "r"
    first.parameters["shared_memory_byte_size"].int64_param = DATA.nbytes
    first.parameters["shared_memory_offset"].int64_param = 32
    msg.inputs.add(name="b", datatype="INT32", shape=[2])
    msg.raw_input_contents.append(np.array([5, 6], dtype="<i4").tobytes())
    decoded = v2_grpc.decode_infer_request(msg, registry.read)
    np.testing.assert_array_equal(decoded.inputs[0].data, DATA)
    assert decoded.inputs[1].data.tolist() == [5, 6]
    msg.raw_input_contents.append(b"extra")
    with pytest.raises(InvalidInput, match="2 entries for 1 inputs"):
        v2_grpc.decode_infer_request(msg, registry.read)


@pytest.mark.parametrize(
    ("offset", "size", "words"),
    [(0, 225, "do not fit"), (200, 32, "do not fit"), (0, 8, "needs 48 bytes, got 8")],
)
def test_reads_are_bounds_checked(registry, offset: int, size: int, words: str) -> None:
    msg = pb.ModelInferRequest(model_name="m")
    tensor = msg.inputs.add(name="a", datatype="FP32", shape=[3, 4])
    tensor.parameters["shared_memory_region"].string_param = "r"
    tensor.parameters["shared_memory_byte_size"].int64_param = size
    tensor.parameters["shared_memory_offset"].int64_param = offset
    with pytest.raises(InvalidInput, match=words):
        v2_grpc.decode_infer_request(msg, registry.read)


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"shared_memory_byte_size": 8}, "needs shared_memory_region"),
        ({"shared_memory_region": "r", "shared_memory_byte_size": -1}, "non-negative"),
        ({"shared_memory_region": "r", "shared_memory_byte_size": 1.5}, "non-negative"),
        ({"shared_memory_region": "nope", "shared_memory_byte_size": 8}, "Unable to find"),
    ],
)
def test_bad_references(registry, params: dict[str, Any], words: str) -> None:
    body = {"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "parameters": params}]}
    with pytest.raises(InvalidInput, match=words):
        v2_rest.decode_infer_request(orjson.dumps(body), None, "m", None, registry.read)


def test_without_a_registry_shared_memory_is_refused() -> None:
    params = {"shared_memory_region": "r", "shared_memory_byte_size": 8}
    body = {"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "parameters": params}]}
    with pytest.raises(InvalidInput, match="--allow_shared_memory"):
        v2_rest.decode_infer_request(orjson.dumps(body), None, "m")


def test_outputs_are_written_into_the_region(registry, region) -> None:
    ref = SharedMemoryRef("y", "r", 0, 64)
    labels = Tensor("y", "INT64", (3,), np.array([2, 0, 1]))
    assert registry.write(ref, labels) == 24
    np.testing.assert_array_equal(
        shm.get_contents_as_numpy(region[0], np.int64, [3], 32), [2, 0, 1]
    )
    text = Tensor("t", "BYTES", (2,), np.array([b"ab", "c"], dtype=object))
    assert registry.write(SharedMemoryRef("t", "r", 100, 64), text) == 4 + 2 + 4 + 1
    got = shm.get_contents_as_numpy(region[0], np.object_, [2], 132)
    assert got.tolist() == [b"ab", b"c"]
    with pytest.raises(InvalidInput, match="needs 24 bytes"):
        registry.write(SharedMemoryRef("y", "r", 0, 16), labels)


def test_registering_checks_names_sizes_and_files(registry, region, tmp_path) -> None:
    with pytest.raises(InvalidInput, match="already registered"):
        registry.register("r", region[1], 0, 8)
    with pytest.raises(InvalidInput, match="do not fit"):
        registry.register("big", region[1], 0, 257)
    for key in ("/a/b", "..", "", "/x\x00y"):
        with pytest.raises(InvalidInput, match="not the name"):
            registry.register("bad", key, 0, 8)
    with pytest.raises(InvalidInput, match="Cannot open"):
        registry.register("missing", f"/core-test-missing-{uuid.uuid4().hex}", 0, 8)
    with pytest.raises(InvalidInput, match="empty"):
        registry.register("empty", region[1], 0, 0)
    assert [r["name"] for r in registry.status()] == ["r"]
    with pytest.raises(InvalidInput, match="Unable to find"):
        registry.status("missing")


def test_a_shrunk_object_is_refused_not_read(registry, region) -> None:
    fd = os.open(f"/dev/shm{region[1]}", os.O_RDWR)
    try:
        os.ftruncate(fd, 64)
    finally:
        os.close(fd)
    with pytest.raises(InvalidInput, match="smaller than when it was registered"):
        registry.read(SharedMemoryRef("x", "r", 0, 48))
    os.truncate(f"/dev/shm{region[1]}", 256)


def test_unregistering_while_a_view_is_alive(registry) -> None:
    view = np.frombuffer(registry.read(SharedMemoryRef("x", "r", 32, 48)), dtype=np.float32)
    registry.unregister("r")
    registry.unregister("never-registered")  # as Triton: not an error
    assert registry.status() == []
    np.testing.assert_array_equal(view, DATA.reshape(-1))  # still mapped while it is used

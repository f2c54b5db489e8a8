"""End-to-end model repository extension and health truth, REST and gRPC.

One ``python -m modelserver --model_class ops_models:CountingSlowModel``
serves a repository directory with one sub-folder per model (a ``*.slow``
file each). The tests load, unload, add and break models while it runs and
check the index, the probes and that the other models keep serving. Every
test leaves the models it found loaded and ready.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from modelserver import protos as M
from serverproc import ServerProcess, grpc_output

pytestmark = pytest.mark.e2e

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
WAIT_S = 30.0
SERVICE = "/inference.GRPCInferenceService/"


# -- fixtures --------------------------------------------------------------------------


def make_model(directory: Path, text: str = "slow") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.slow").write_text(text + "\n", encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``base/repo`` is the model dir; ``base/outside`` is a valid model next to it."""
    base = tmp_path_factory.mktemp("repository")
    root = base / "repo"
    make_model(root / "slow-a")
    make_model(root / "slow-b")
    make_model(root / ".hidden")  # a dot folder is never a model
    make_model(base / "outside")
    return {"base": base, "root": root, "outside": base / "outside", "log": base / "loads.log"}


@pytest.fixture(scope="module")
def server(layout: dict[str, Path]) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        "modelserver",
        [
            "--model_class=ops_models:CountingSlowModel",
            "--model_name=ignored",
            f"--model_dir={layout['root']}",
        ],
        env={"PYTHONPATH": str(MODELS_DIR), "OPS_LOAD_LOG": str(layout["log"])},
    )
    with proc:
        yield proc


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, timeout=WAIT_S) as client:
        yield client


@pytest.fixture(scope="module")
def channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(server.grpc_address)
    yield ch
    ch.close()


@pytest.fixture
def triton_http(server: ServerProcess) -> Iterator[thttp.InferenceServerClient]:
    client = thttp.InferenceServerClient(server.http_address, network_timeout=WAIT_S)
    yield client
    client.close()


@pytest.fixture
def triton_grpc(server: ServerProcess) -> Iterator[tgrpc.InferenceServerClient]:
    client = tgrpc.InferenceServerClient(server.grpc_address)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def all_ready_before_and_after(http: httpx.Client) -> Iterator[None]:
    """Each test starts from, and must leave, a server whose every model is ready."""
    assert http.get("/v2/health/ready").status_code == 200, index(http)
    yield
    for entry in index(http):
        if entry.get("state") and entry["state"] != "READY":
            http.post(f"/v2/repository/models/{entry['name']}/load")
    assert http.get("/v2/health/ready").status_code == 200, index(http)


# -- helpers ------------------------------------------------------------------------------


def index(http: httpx.Client, **body: Any) -> list[dict[str, Any]]:
    r = http.post("/v2/repository/index", json=body or None)
    assert r.status_code == 200, r.text
    return r.json()


def states(http: httpx.Client) -> dict[str, str | None]:
    return {e["name"]: e.get("state") for e in index(http)}


def v2_body(seconds: float) -> dict[str, Any]:
    return {"inputs": [{"name": "s", "shape": [1], "datatype": "FP64", "data": [seconds]}]}


def infer(http: httpx.Client, model: str, seconds: float = 0.0) -> httpx.Response:
    return http.post(f"/v2/models/{model}/infer", json=v2_body(seconds))


def assert_serves(http: httpx.Client, model: str, seconds: float = 0.0) -> None:
    r = infer(http, model, seconds)
    assert r.status_code == 200, r.text
    assert r.json()["model_name"] == model
    assert r.json()["outputs"][0]["data"] == [seconds], r.text


def assert_error(r: httpx.Response, low: int = 400, high: int = 499) -> str:
    assert low <= r.status_code <= high, (r.status_code, r.text)
    body = r.json()
    assert list(body) == ["error"] and isinstance(body["error"], str) and body["error"], body
    return body["error"]


def rpc(channel: grpc.Channel, method: str, response_cls: Any) -> Callable[..., Any]:
    return channel.unary_unary(
        SERVICE + method,
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response_cls.FromString,
    )


def grpc_request(model: str, seconds: float) -> Any:
    req = M.ModelInferRequest(model_name=model)
    req.inputs.add(name="s", datatype="FP64", shape=[1]).contents.fp64_contents.append(seconds)
    return req


def grpc_infer(channel: grpc.Channel, model: str, seconds: float = 0.0) -> list[float]:
    response = rpc(channel, "ModelInfer", M.ModelInferResponse)(
        grpc_request(model, seconds), timeout=WAIT_S
    )
    return grpc_output(response)


def server_ready(channel: grpc.Channel) -> bool:
    call = rpc(channel, "ServerReady", M.ServerReadyResponse)
    return call(M.ServerReadyRequest(), timeout=WAIT_S).ready


def model_ready(channel: grpc.Channel, model: str) -> bool:
    call = rpc(channel, "ModelReady", M.ModelReadyResponse)
    return call(M.ModelReadyRequest(name=model), timeout=WAIT_S).ready


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def assert_not_ready_everywhere(http: httpx.Client, channel: grpc.Channel, model: str) -> None:
    """The probes and the data path all tell that ``model`` (and so the server) is not ready."""
    r = http.get("/v2/health/ready")
    assert 400 <= r.status_code < 500 and r.json() == {"ready": False}, r.text
    assert server_ready(channel) is False
    r = http.get(f"/v2/models/{model}/ready")
    assert 400 <= r.status_code < 500 and r.json()["ready"] is False, r.text
    assert model_ready(channel, model) is False
    r = http.get(f"/v1/models/{model}")
    assert r.status_code == 503 and r.json()["ready"] is False, r.text
    assert "not ready" in assert_error(infer(http, model), 503, 503).lower()
    r = http.post(f"/v1/models/{model}:predict", json={"instances": [[0.0]]})
    assert_error(r, 503, 503)
    with pytest.raises(grpc.RpcError) as info:
        grpc_infer(channel, model)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value.details()
    # liveness is not readiness
    assert http.get("/v2/health/live").status_code == 200


# -- index, load, unload ------------------------------------------------------------------------


def test_index_lists_models_with_state(
    http: httpx.Client,
    triton_http: thttp.InferenceServerClient,
    triton_grpc: tgrpc.InferenceServerClient,
) -> None:
    entries = {e["name"]: e for e in index(http)}
    for name in ("slow-a", "slow-b"):
        assert entries[name] == {"name": name, "version": "1", "state": "READY"}, entries
    assert ".hidden" not in entries
    assert {e["name"]: e["state"] for e in triton_http.get_model_repository_index()} == {
        name: e.get("state") for name, e in entries.items()
    }
    grpc_index = triton_grpc.get_model_repository_index().models
    assert {m.name: (m.version, m.state) for m in grpc_index} == {
        name: (e.get("version", ""), e.get("state", "")) for name, e in entries.items()
    }
    ready_only = index(http, ready=True)
    assert all(e["state"] == "READY" for e in ready_only)
    assert {"slow-a", "slow-b"} <= {e["name"] for e in ready_only}


def test_unload_and_load_with_tritonclient(
    http: httpx.Client,
    channel: grpc.Channel,
    triton_http: thttp.InferenceServerClient,
    triton_grpc: tgrpc.InferenceServerClient,
) -> None:
    for unload, load in [
        (triton_http.unload_model, triton_grpc.load_model),
        (triton_grpc.unload_model, triton_http.load_model),
    ]:
        unload("slow-b")
        entry = {e["name"]: e for e in index(http)}["slow-b"]
        assert entry["state"] == "UNAVAILABLE" and entry["reason"] == "unloaded", entry
        grpc_entry = {m.name: m for m in triton_grpc.get_model_repository_index().models}
        assert (grpc_entry["slow-b"].state, grpc_entry["slow-b"].reason) == (
            "UNAVAILABLE",
            "unloaded",
        )
        assert "slow-b" not in {e["name"] for e in index(http, ready=True)}
        assert_not_ready_everywhere(http, channel, "slow-b")
        assert not triton_http.is_server_ready() and not triton_grpc.is_server_ready()
        assert not triton_grpc.is_model_ready("slow-b")
        meta = http.get("/v2/models/slow-b").json()
        assert (meta["state"], meta["reason"]) == ("UNAVAILABLE", "unloaded"), meta
        # the other model is untouched
        assert_serves(http, "slow-a")
        assert grpc_infer(channel, "slow-a", 0.125) == [0.125]

        load("slow-b")
        assert states(http)["slow-b"] == "READY"
        assert triton_http.is_server_ready() and triton_grpc.is_server_ready()
        assert triton_grpc.is_model_ready("slow-b") and triton_http.is_model_ready("slow-b")
        assert_serves(http, "slow-b", 0.25)
        assert grpc_infer(channel, "slow-b", 0.25) == [0.25]


def test_reload_of_a_serving_model_keeps_it_serving(http: httpx.Client) -> None:
    r = http.post("/v2/repository/models/slow-a/load")
    assert r.status_code == 200, r.text
    assert states(http)["slow-a"] == "READY"
    assert_serves(http, "slow-a")


def test_unknown_names_are_not_found(http: httpx.Client, channel: grpc.Channel) -> None:
    for op in ("load", "unload"):
        assert_error(http.post(f"/v2/repository/models/nope/{op}"), 404, 404)
    for method, response_cls, request in [
        ("RepositoryModelLoad", M.RepositoryModelLoadResponse, M.RepositoryModelLoadRequest),
        ("RepositoryModelUnload", M.RepositoryModelUnloadResponse, M.RepositoryModelUnloadRequest),
    ]:
        with pytest.raises(grpc.RpcError) as info:
            rpc(channel, method, response_cls)(request(model_name="nope"), timeout=WAIT_S)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND, info.value.details()


# -- names cannot leave the model directory ------------------------------------------------------

#: (name as given to gRPC, the same name as a REST path segment)
BAD_NAMES = [
    ("..", "%2E%2E"),
    ("..", ".."),
    (".", "%2E"),
    ("../outside", "..%2Foutside"),
    ("../outside", "%2E%2E%2Foutside"),
    ("../../outside", "..%2F..%2Foutside"),
    ("a/b", "a%2Fb"),
    ("slow-a/../../outside", "slow-a%2F..%2F..%2Foutside"),
    (".hidden", ".hidden"),
    (".hidden", "%2Ehidden"),
    ("with space", "with%20space"),
    ("slow-a ", "slow-a%20"),
    ("..\\outside", "..%5Coutside"),
    ("outside\x00", "outside%00"),
    ("~", "~"),
    ("-", "-"),
    ("x" * 200, "x" * 200),
]


def _absolute_outside(layout: dict[str, Path]) -> list[tuple[str, str]]:
    path = str(layout["outside"])
    return [(path, path.replace("/", "%2F"))]


def test_names_cannot_leave_the_model_directory(
    http: httpx.Client, channel: grpc.Channel, layout: dict[str, Path]
) -> None:
    before = index(http)
    loads_before = layout["log"].read_text(encoding="utf-8")
    load = rpc(channel, "RepositoryModelLoad", M.RepositoryModelLoadResponse)
    unload = rpc(channel, "RepositoryModelUnload", M.RepositoryModelUnloadResponse)
    for name, segment in [*BAD_NAMES, *_absolute_outside(layout)]:
        for op in ("load", "unload"):
            r = http.post(f"/v2/repository/models/{segment}/{op}")
            assert 400 <= r.status_code < 500, (segment, op, r.status_code, r.text)
            assert r.headers["content-type"].startswith("application/json"), (segment, r.headers)
            assert r.json().get("error"), (segment, r.text)
        for call, request in [
            (load, M.RepositoryModelLoadRequest(model_name=name)),
            (unload, M.RepositoryModelUnloadRequest(model_name=name)),
        ]:
            with pytest.raises(grpc.RpcError) as info:
                call(request, timeout=WAIT_S)
            assert info.value.code() in (
                grpc.StatusCode.INVALID_ARGUMENT,
                grpc.StatusCode.NOT_FOUND,
            ), (name, info.value.code(), info.value.details())
        with pytest.raises(grpc.RpcError) as info:
            load(M.RepositoryModelLoadRequest(model_name=name), timeout=WAIT_S)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (name, info.value.details())
    # nothing was read outside (or at all), nothing changed, everything still serves
    assert layout["log"].read_text(encoding="utf-8") == loads_before
    root = layout["root"].resolve()
    for line in loads_before.splitlines():
        assert Path(line).is_relative_to(root), line
    assert index(http) == before
    assert sorted(p.name for p in layout["base"].iterdir()) == ["loads.log", "outside", "repo"]
    assert sorted(p.name for p in layout["outside"].iterdir()) == ["model.slow"]
    assert_serves(http, "slow-a")
    assert_serves(http, "slow-b")


# -- new and broken models ----------------------------------------------------------------------


def test_new_sub_folder_is_served_once_loaded(
    http: httpx.Client,
    channel: grpc.Channel,
    layout: dict[str, Path],
    triton_grpc: tgrpc.InferenceServerClient,
) -> None:
    assert_error(infer(http, "slow-new"), 404, 404)
    make_model(layout["root"] / "slow-new")
    # listed as available before it is loaded, with no state yet
    assert {e["name"]: e for e in index(http)}["slow-new"] == {"name": "slow-new"}
    r = http.post("/v2/repository/models/slow-new/load")
    assert r.status_code == 200, r.text
    assert states(http)["slow-new"] == "READY"
    assert http.get("/v2/models/slow-new/ready").status_code == 200
    assert model_ready(channel, "slow-new")
    assert http.get("/v2/models/slow-new").json()["name"] == "slow-new"
    assert "slow-new" in http.get("/v1/models").json()["models"]
    assert_serves(http, "slow-new", 0.5)
    assert grpc_infer(channel, "slow-new", 0.5) == [0.5]
    r = http.post("/v1/models/slow-new:predict", json={"instances": [[0.0]]})
    assert r.json() == {"predictions": [0.0]}, r.text
    ready_index = rpc(channel, "RepositoryIndex", M.RepositoryIndexResponse)(
        M.RepositoryIndexRequest(ready=True), timeout=WAIT_S
    )
    assert "slow-new" in {m.name for m in ready_index.models}
    assert "slow-new" in {m.name for m in triton_grpc.get_model_repository_index().models}
    assert http.get("/v2/health/ready").status_code == 200
    assert_serves(http, "slow-a")


def test_broken_model_reports_failure_and_others_keep_serving(
    http: httpx.Client, channel: grpc.Channel, layout: dict[str, Path]
) -> None:
    folder = make_model(layout["root"] / "broken", "fail: broken on purpose")
    message = assert_error(http.post("/v2/repository/models/broken/load"))
    assert "broken on purpose" in message, message
    entry = {e["name"]: e for e in index(http)}["broken"]
    assert entry["state"] == "FAILED", entry
    assert "broken on purpose" in entry["reason"], entry
    grpc_index = rpc(channel, "RepositoryIndex", M.RepositoryIndexResponse)(
        M.RepositoryIndexRequest(), timeout=WAIT_S
    )
    g = {m.name: m for m in grpc_index.models}["broken"]
    assert g.state == "FAILED" and "broken on purpose" in g.reason
    meta = http.get("/v2/models/broken").json()
    assert meta["state"] == "FAILED" and "broken on purpose" in meta["reason"], meta
    # gRPC reports the failure too
    with pytest.raises(grpc.RpcError) as info:
        rpc(channel, "RepositoryModelLoad", M.RepositoryModelLoadResponse)(
            M.RepositoryModelLoadRequest(model_name="broken"), timeout=WAIT_S
        )
    assert info.value.code() not in (grpc.StatusCode.OK, grpc.StatusCode.UNKNOWN)
    assert "broken on purpose" in (info.value.details() or "")
    # the failed model is not ready and says so; the others keep serving
    assert_not_ready_everywhere(http, channel, "broken")
    for name in ("slow-a", "slow-b"):
        assert_serves(http, name)
        assert grpc_infer(channel, name) == [0.0]
        assert model_ready(channel, name)
    # fixed and loaded again, it serves and the server is ready again
    (folder / "model.slow").write_text("slow\n", encoding="utf-8")
    r = http.post("/v2/repository/models/broken/load")
    assert r.status_code == 200, r.text
    entry = {e["name"]: e for e in index(http)}["broken"]
    assert entry["state"] == "READY" and "reason" not in entry, entry
    assert_serves(http, "broken")
    assert http.get("/v2/health/ready").status_code == 200


def test_folder_without_model_file_fails_to_load(
    http: httpx.Client, channel: grpc.Channel, layout: dict[str, Path]
) -> None:
    folder = layout["root"] / "empty"
    folder.mkdir()
    (folder / "notes.txt").write_text("no model here", encoding="utf-8")
    message = assert_error(http.post("/v2/repository/models/empty/load"))
    assert ".slow" in message or "no model file" in message.lower(), message
    entry = {e["name"]: e for e in index(http)}["empty"]
    assert entry["state"] == "FAILED" and entry["reason"], entry
    # Clients learn the folder's name, never where the server keeps its files.
    root = str(layout["root"].resolve())
    for text in (message, entry["reason"], http.get("/v2/models/empty").json()["reason"]):
        assert root not in text and str(layout["root"]) not in text, text
        assert "empty" in text, text
    assert_serves(http, "slow-a")
    make_model(folder)
    assert http.post("/v2/repository/models/empty/load").status_code == 200


# -- unloading with requests in flight ------------------------------------------------------------


def test_unload_lets_in_flight_requests_finish(
    server: ServerProcess, http: httpx.Client, channel: grpc.Channel
) -> None:
    call = rpc(channel, "ModelInfer", M.ModelInferResponse)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        rest = pool.submit(
            httpx.post,
            f"{server.http_url}/v2/models/slow-a/infer",
            json=v2_body(2.0),
            timeout=WAIT_S,
        )
        v1 = pool.submit(
            httpx.post,
            f"{server.http_url}/v1/models/slow-a:predict",
            json={"instances": [[1.75]]},
            timeout=WAIT_S,
        )
        g = pool.submit(call, grpc_request("slow-a", 1.875), timeout=WAIT_S)
        wait_until(
            lambda: _inflight(http) >= 3,
            "three requests in flight",
        )
        unload = pool.submit(
            httpx.post, f"{server.http_url}/v2/repository/models/slow-a/unload", timeout=WAIT_S
        )
        wait_until(lambda: states(http)["slow-a"] == "UNAVAILABLE", "slow-a unloading")
        # new requests are refused at once while the old ones run
        assert_not_ready_everywhere(http, channel, "slow-a")
        assert_serves(http, "slow-b")
        assert not unload.done(), "unload returned before its requests finished"
        assert not any(f.done() for f in (rest, v1, g)), "in-flight requests were cut off"

        r = rest.result()
        assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [2.0], r.text
        r = v1.result()
        assert r.status_code == 200 and r.json() == {"predictions": [1.75]}, r.text
        assert grpc_output(g.result()) == [1.875]
        r = unload.result()
        assert r.status_code == 200, r.text
    entry = {e["name"]: e for e in index(http)}["slow-a"]
    assert entry["state"] == "UNAVAILABLE" and entry["reason"] == "unloaded", entry
    assert_not_ready_everywhere(http, channel, "slow-a")
    assert_serves(http, "slow-b")
    r = http.post("/v2/repository/models/slow-a/load")
    assert r.status_code == 200, r.text
    assert_serves(http, "slow-a", 0.25)


def _inflight(http: httpx.Client) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith("modelserver_inflight_requests "):
            return float(line.split()[1])
    return 0.0

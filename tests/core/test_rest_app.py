"""The REST app in process: every route of the route table, driven through ASGI.

Requests go through httpx's ``ASGITransport`` into the real ``RestApp`` over a
real data plane; where that transport hides what the app sends (a HEAD
answer's body, a client leaving mid-request), ``inproc.asgi`` drives the app
with ASGI messages directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from inproc import Arith, Stack, asgi, factory_of, options, stack
from modelserver.observability.metrics import REGISTRY
from modelserver.protocol.rest.app import RestApp
from modelserver.protocol.rest.routes import ROUTES, Route

#: The routes a KServe-dialect server answers: not an optional protocol's (MLflow's) nor
#: another dialect's (TF Serving's), which their runtimes' tests cover.
CORE_ROUTES = [r for r in ROUTES if not r.protocol and r.dialect in ("", "kserve")]

TOKEN = "sesame"
X = np.array([[1.0, 2.0], [3.0, 4.0]])
V2_BODY = {
    "inputs": [{"name": "x", "datatype": "FP64", "shape": [2, 2], "data": X.ravel().tolist()}]
}


class FileArith(Arith):
    """Arith served from a folder; a ``broken`` file in it makes ``load`` fail."""

    def load(self) -> None:
        if self.model_dir is not None and (self.model_dir / "broken").exists():
            raise RuntimeError("asked to fail by the broken marker")
        super().load()


def serve(root: Path, **kwargs: Any) -> Stack:
    """``arith`` loaded from ``root/arith``; ``root/extra`` is there to be loaded."""
    factory = factory_of(FileArith, kwargs.pop("opts", None))
    for name in ("arith", "extra"):
        (root / name).mkdir(exist_ok=True)
    served = factory("arith", root / "arith")
    served.load()
    return stack(served, factory=factory, root=root, **kwargs)


@pytest.fixture
def s(tmp_path: Path) -> Stack:
    return serve(tmp_path)


def call(
    s: Stack, method: str, path: str, app: RestApp | None = None, **kwargs: Any
) -> httpx.Response:
    """One request through httpx's ASGI transport, in a fresh event loop."""

    async def main() -> httpx.Response:
        async with s.client(app) as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(main())


def error_of(response: httpx.Response, status: int) -> str:
    """The message of an error answer, after checking its status and its one shape."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"] and isinstance(body["error"], str), body
    return body["error"]  # type: ignore[no-any-return]


def requests_counted(protocol: str, status: str) -> float:
    labels = {"model": "arith", "protocol": protocol, "status": status}
    return REGISTRY.get_sample_value("modelserver_requests_total", labels) or 0.0


def arith_model(s: Stack) -> Arith:
    model = s.repository.get("arith").require_model()
    assert isinstance(model, Arith)
    return model


# -- every route ------------------------------------------------------------------------------

Check = Callable[[Stack, httpx.Response], None]


def check_infer_v2(s: Stack, r: httpx.Response) -> None:
    body = r.json()
    expected = arith_model(s).expected(X, ["double", "total"])
    assert (body["model_name"], body["model_version"]) == ("arith", "1")
    assert [o["name"] for o in body["outputs"]] == ["double", "total"]
    for out in body["outputs"]:
        assert out["datatype"] == "FP64" and out["shape"] == list(expected[out["name"]].shape)
        assert out["data"] == expected[out["name"]].ravel().tolist()


def check_predict_v1(s: Stack, r: httpx.Response) -> None:
    expected = arith_model(s).expected(X, ["double", "total"])
    assert r.json() == {
        "predictions": [
            {"double": expected["double"][i].tolist(), "total": expected["total"][i].item()}
            for i in range(len(X))
        ]
    }


def check_index(s: Stack, r: httpx.Response) -> None:
    assert r.json() == [{"name": "arith", "version": "1", "state": "READY"}, {"name": "extra"}]


def check_load(s: Stack, r: httpx.Response) -> None:
    assert r.content == b""
    assert s.repository.get("arith").ready


def check_unload(s: Stack, r: httpx.Response) -> None:
    assert r.content == b""
    assert s.repository.get("arith").reason == "unloaded"


def check_openapi(s: Stack, r: httpx.Response) -> None:
    doc = r.json()
    assert doc["info"]["title"] == "inproc"
    assert "/v2/models/{name}/versions/{version}/infer" in doc["paths"]
    assert set(doc["paths"]["/v2/models/{name}"]) == {"get"}


def check_metrics(s: Stack, r: httpx.Response) -> None:
    assert r.headers["content-type"].startswith("text/plain")
    assert "# TYPE modelserver_requests_total counter" in r.text


def json_is(expected: Any) -> Check:
    def check(s: Stack, r: httpx.Response) -> None:
        assert r.json() == expected

    return check


#: handler -> (request body, status, what the answer must be) for the model ``arith``.
HAPPY: dict[str, tuple[dict[str, Any], int, Check]] = {
    "infer_v2": ({"json": V2_BODY}, 200, check_infer_v2),
    "predict_v1": ({"json": {"instances": X.tolist()}}, 200, check_predict_v1),
    "ready": ({}, 200, json_is({"ready": True})),
    "live": ({}, 200, json_is({"live": True})),
    "model_ready": ({}, 200, json_is({"name": "arith", "ready": True})),
    "model_metadata": ({}, 200, lambda s, r: r.json() == s.dataplane.model_metadata("arith")),
    "server_metadata": ({}, 200, lambda s, r: r.json()["name"] == "inproc"),
    "v1_model": ({}, 200, json_is({"name": "arith", "ready": True})),
    "v1_models": ({}, 200, json_is({"models": ["arith"]})),
    "explain_v1": (
        {},
        501,
        json_is(
            {
                "error": "Model 'arith' cannot explain its predictions: modelserver computes no "
                "per-feature contributions for its models; only :predict is served"
            }
        ),
    ),
    "metrics": ({}, 200, check_metrics),
    "root": ({}, 200, json_is({"status": "alive"})),
    "repository_index": ({}, 200, check_index),
    "repository_load": ({}, 200, check_load),
    "repository_unload": ({}, 200, check_unload),
    "statistics": (
        {},
        200,
        lambda s, r: [m["name"] for m in r.json()["model_stats"]] == ["arith"],
    ),
    "model_config": ({}, 200, lambda s, r: r.json()["name"] == "arith"),
    # Off unless --allow_shared_memory (tests/core/test_shared_memory_registry.py turns it on).
    "shared_memory_status": ({}, 400, lambda s, r: "--allow_shared_memory" in r.json()["error"]),
    "shared_memory_register": (
        {"json": {"key": "/r", "byte_size": 8}},
        400,
        lambda s, r: "--allow_shared_memory" in r.json()["error"],
    ),
    "shared_memory_unregister": (
        {},
        400,
        lambda s, r: "--allow_shared_memory" in r.json()["error"],
    ),
    "openapi": ({}, 200, check_openapi),
    "docs": ({}, 200, lambda s, r: b'url: "/openapi.json"' in r.content),
}


def concrete(route: Route, version: bool = False) -> str:
    """The route's path for the model ``arith`` (at version 1 when ``version``)."""
    path = route.template.replace("{name_any}", "arith").replace("{name}", "arith")
    path = path.replace("[/region/{region}]", "").replace("{region}", "r")
    return path.replace("[/versions/{version}]", "/versions/1" if version else "")


@pytest.mark.parametrize("route", CORE_ROUTES, ids=lambda r: f"{r.method} {r.template}")
def test_every_route_answers(s: Stack, route: Route) -> None:
    kwargs, status, check = HAPPY[route.handler]
    variants = [False, True] if "{version}" in route.template else [False]
    for version in variants:
        before = s.repository.get("arith")
        r = call(s, route.method, concrete(route, version), s.app(docs=True), **kwargs)
        assert r.status_code == status, r.text
        assert r.headers["content-length"] == str(len(r.content))
        assert check(s, r) is not False
        reloaded = s.repository.get("arith") is not before
        assert reloaded == (route.handler == "repository_load")


@pytest.mark.parametrize(
    "path", ["/v2/models/arith/versions/2", "/v2/models/arith/versions/2/ready"]
)
def test_another_version_of_a_model_is_not_found(s: Stack, path: str) -> None:
    message = error_of(call(s, "GET", path), 404)
    assert message == "Model with name arith and version 2 does not exist. Served models: arith."
    r = call(s, "POST", "/v2/models/arith/versions/2/infer", json=V2_BODY)
    assert "version 2 does not exist" in error_of(r, 404)


def test_docs_routes_only_with_docs_on(s: Stack) -> None:
    for path in ("/openapi.json", "/docs"):
        assert error_of(call(s, "GET", path), 404) == "Not Found"


# -- routing errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/nope", "/v2/models", "/v2/models/arith/infer/more", "/v1/models/arith:train"]
)
def test_unknown_paths_are_404(s: Stack, path: str) -> None:
    for method in ("GET", "POST"):
        assert error_of(call(s, method, path), 404) == "Not Found"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/v2/models/arith/infer", "POST"),
        ("HEAD", "/v1/models/arith:predict", "POST"),
        ("POST", "/v2/health/live", "GET, HEAD"),
        ("DELETE", "/v2/models/arith", "GET, HEAD"),
        ("PUT", "/v2/repository/models/arith/load", "POST"),
    ],
)
def test_a_wrong_method_is_405_with_the_allowed_ones(
    s: Stack, method: str, path: str, allowed: str
) -> None:
    reply = asyncio.run(asgi(s.app(), method, path))
    assert reply.status == 405
    assert reply.headers["allow"] == allowed
    if method != "HEAD":
        assert orjson.loads(reply.body) == {"error": "Method Not Allowed"}


GET_ROUTES = [r for r in CORE_ROUTES if r.method == "GET" and r.handler != "shared_memory_status"]


@pytest.mark.parametrize("route", GET_ROUTES, ids=lambda r: r.template)
def test_head_answers_the_get_headers_without_a_body(s: Stack, route: Route) -> None:
    app = s.app(docs=True)

    async def main() -> tuple[Any, Any]:
        return await asgi(app, "GET", concrete(route)), await asgi(app, "HEAD", concrete(route))

    get, head = asyncio.run(main())
    assert head.status == get.status == 200
    assert head.body == b"" and get.body != b""
    assert head.headers["content-type"] == get.headers["content-type"]
    if route.handler != "metrics":  # the metrics change between the two requests
        assert head.headers["content-length"] == get.headers["content-length"]


# -- inference -------------------------------------------------------------------------------


def test_v2_infer_with_an_id_named_outputs_and_parameters(s: Stack) -> None:
    body = {**V2_BODY, "id": "req-1", "outputs": [{"name": "negate"}, {"name": "total"}]}
    r = call(s, "POST", "/v2/models/arith/versions/1/infer", json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    expected = arith_model(s).expected(X, ["negate", "total"])
    assert answer["id"] == "req-1"
    assert {o["name"]: o["data"] for o in answer["outputs"]} == {
        k: v.ravel().tolist() for k, v in expected.items()
    }


def test_v2_infer_with_the_binary_tensor_extension(s: Stack) -> None:
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP32",
                    "shape": [3, 2],
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "outputs": [{"name": "double", "parameters": {"binary_data": True}}, {"name": "total"}],
        }
    )
    r = call(
        s,
        "POST",
        "/v2/models/arith/infer",
        content=header + x.tobytes(),
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    length = int(r.headers["inference-header-content-length"])
    answer = orjson.loads(r.content[:length])
    double, total = answer["outputs"]
    expected = arith_model(s).expected(x, ["double", "total"])
    assert double["parameters"] == {"binary_data_size": 48} and "data" not in double
    raw = np.frombuffer(r.content[length:], dtype="<f8").reshape(double["shape"])
    np.testing.assert_array_equal(raw, expected["double"])
    assert total["data"] == expected["total"].tolist()


def test_v1_predict_with_one_output_named_gives_plain_rows(s: Stack) -> None:
    r = call(
        s,
        "POST",
        "/v1/models/arith:predict",
        json={"instances": X.tolist(), "parameters": {"outputs": "total"}},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": arith_model(s).expected(X, ["total"])["total"].tolist()}


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v2/models/arith/infer", b"{not json", 400, "Malformed JSON in inference request"),
        ("/v2/models/arith/infer", b"", 400, "Empty inference request"),
        ("/v1/models/arith:predict", b'{"instances": []}', 400, "'instances' must not be empty"),
        ("/v2/models/nope/infer", b"{}", 404, "Model with name nope does not exist."),
        ("/v1/models/nope:predict", b"{}", 404, "Served models: arith."),
        ("/v1/models/nope:explain", b"{}", 404, "Model with name nope does not exist."),
        (
            "/v1/models/arith:predict",
            b'{"instances": [[666, 1]]}',
            500,
            "Model 'arith' failed: RuntimeError: the model broke on 666",
        ),
        (
            "/v2/models/arith/infer",
            orjson.dumps({**V2_BODY, "outputs": [{"name": "nope"}]}),
            400,
            "Model 'arith' has no output named 'nope'; available: double, total, negate",
        ),
        (
            "/v2/models/arith/infer",
            orjson.dumps({**V2_BODY, "parameters": {"preprocess": "reject"}}),
            400,
            "Model 'arith' rejected the input: \"no column named 'x'\"",
        ),
    ],
)
def test_inference_errors_are_answered_as_error_objects(
    s: Stack, path: str, body: bytes, status: int, message: str
) -> None:
    assert message in error_of(call(s, "POST", path, content=body), status)


def test_a_model_not_ready_is_503_and_says_so_everywhere(s: Stack) -> None:
    asyncio.run(s.repository.unload("arith"))
    assert "not ready: unloaded" in error_of(
        call(s, "POST", "/v2/models/arith/infer", json=V2_BODY), 503
    )
    r = call(s, "GET", "/v2/models/arith/ready")
    assert (r.status_code, r.json()) == (400, {"name": "arith", "ready": False})
    r = call(s, "GET", "/v2/health/ready")
    assert (r.status_code, r.json()) == (400, {"ready": False})
    r = call(s, "GET", "/v1/models/arith")
    assert r.status_code == 503
    assert r.json() == {
        "error": "Model with name arith is not ready.",
        "name": "arith",
        "ready": False,
    }
    meta = call(s, "GET", "/v2/models/arith").json()
    assert (meta["state"], meta["reason"]) == ("UNAVAILABLE", "unloaded")


def test_a_draining_server_is_not_ready_but_live(s: Stack) -> None:
    s.dataplane.draining = True
    assert call(s, "GET", "/v2/health/ready").status_code == 400
    assert call(s, "GET", "/v2/models/arith/ready").status_code == 400
    assert call(s, "GET", "/v1/models/arith").status_code == 503
    assert call(s, "GET", "/v2/health/live").status_code == 200


def test_requests_are_counted_in_the_metrics(s: Stack) -> None:
    call(s, "POST", "/v2/models/arith/infer", json=V2_BODY)
    call(s, "POST", "/v1/models/arith:predict", json={"instances": [[666]]})
    text = call(s, "GET", "/metrics").text
    assert 'modelserver_requests_total{model="arith",protocol="v2-rest",status="200"}' in text
    assert 'modelserver_requests_total{model="arith",protocol="v1-rest",status="500"}' in text


def test_a_client_that_leaves_while_queued_gets_its_work_dropped(tmp_path: Path) -> None:
    s = serve(tmp_path, opts=options(max_batch_size=8, predict_executor="thread"))
    model = arith_model(s)
    app = s.app()
    first, second = (orjson.dumps({**V2_BODY, "id": str(i)}) for i in (1, 2))

    async def main() -> tuple[Any, Any]:
        model.block()
        running = asyncio.ensure_future(asgi(app, "POST", "/v2/models/arith/infer", first))
        await model.wait_entered()
        leave = asyncio.Event()
        leaving = asyncio.ensure_future(
            asgi(app, "POST", "/v2/models/arith/infer", second, leave=leave)
        )
        served = s.repository.get("arith")
        while served.inflight < 2:
            await asyncio.sleep(0.001)
        leave.set()
        left = await leaving
        model.unblock()
        return await running, left

    done, left = asyncio.run(main())
    assert done.status == 200 and orjson.loads(done.body)["id"] == "1"
    assert left.status == 499
    assert "closed the connection" in orjson.loads(left.body)["error"]
    assert len(model.calls) == 1 and len(model.calls[0]) == len(X)


def test_a_request_cut_off_at_shutdown_is_answered_503_and_counted_so(tmp_path: Path) -> None:
    s = serve(tmp_path, opts=options(predict_executor="thread"))
    model = arith_model(s)
    app = s.app()
    sent: list[dict[str, Any]] = []
    counted = requests_counted("v2-rest", "503")
    internal = requests_counted("v2-rest", "500")

    async def main() -> None:
        model.block()
        body = orjson.dumps(V2_BODY)
        task = asyncio.ensure_future(asgi(app, "POST", "/v2/models/arith/infer", body, sent=sent))
        await model.wait_entered()
        task.cancel()  # what uvicorn does once the grace period after SIGTERM is over
        with pytest.raises(asyncio.CancelledError):
            await task
        model.unblock()

    asyncio.run(main())
    start, body = sent
    assert start["status"] == 503
    assert orjson.loads(body["body"]) == {"error": "Server shut down before the answer was ready"}
    assert requests_counted("v2-rest", "500") == internal, "counted as a server error"
    assert requests_counted("v2-rest", "503") == counted + 1
    assert s.repository.get("arith").inflight == 0


# -- repository -------------------------------------------------------------------------------


def test_repository_index_of_ready_models_only(s: Stack) -> None:
    r = call(s, "POST", "/v2/repository/index", json={"ready": True})
    assert r.json() == [{"name": "arith", "version": "1", "state": "READY"}]
    assert "Malformed JSON" in error_of(call(s, "POST", "/v2/repository/index", content=b"["), 400)
    refused = call(s, "POST", "/v2/repository/index", json={"ready": "no"})
    assert "must be true or false" in error_of(refused, 400)


def test_repository_load_of_a_new_model_then_unload(s: Stack) -> None:
    assert call(s, "POST", "/v2/repository/models/extra/load").status_code == 200
    r = call(s, "POST", "/v2/models/extra/infer", json=V2_BODY)
    assert r.status_code == 200 and r.json()["model_name"] == "extra"
    assert call(s, "GET", "/v2/health/ready").status_code == 200
    assert call(s, "POST", "/v2/repository/models/extra/unload").status_code == 200
    assert call(s, "GET", "/v2/models/extra/ready").status_code == 400
    assert call(s, "GET", "/v2/health/ready").status_code == 400


def test_repository_load_failures_are_400_with_the_reason(s: Stack, tmp_path: Path) -> None:
    (tmp_path / "extra" / "broken").touch()
    message = error_of(call(s, "POST", "/v2/repository/models/extra/load"), 400)
    assert message == "Failed to load model extra: asked to fail by the broken marker"
    assert "Served models" in error_of(call(s, "POST", "/v2/repository/models/nope/load"), 404)
    assert "Invalid model name" in error_of(call(s, "POST", "/v2/repository/models/..x/load"), 400)


def test_repository_changes_are_refused_with_several_workers(s: Stack) -> None:
    s.dataplane.workers = 4
    for op in ("load", "unload"):
        message = error_of(call(s, "POST", f"/v2/repository/models/arith/{op}"), 400)
        assert f"Cannot {op} a model with --workers 4" in message
    assert s.repository.get("arith").ready


# -- limits -------------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_413_whether_declared_or_streamed(s: Stack) -> None:
    app = s.app(max_body_size=64)
    body = orjson.dumps(V2_BODY)
    assert len(body) > 64
    message = error_of(call(s, "POST", "/v2/models/arith/infer", app, content=body), 413)
    assert message == f"Request body of {len(body)} bytes exceeds the limit of 64"

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 16):
            yield body[i : i + 16]

    r = call(s, "POST", "/v2/models/arith/infer", app, content=chunks())
    assert "content-length" not in r.request.headers
    assert error_of(r, 413) == "Request body exceeds the limit of 64 bytes"
    assert arith_model(s).calls == []


def test_a_streamed_body_under_the_limit_is_read_whole(s: Stack) -> None:
    body = orjson.dumps(V2_BODY)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 7):
            yield body[i : i + 7]

    r = call(s, "POST", "/v2/models/arith/infer", content=chunks())
    check_infer_v2(s, r)


# -- authentication -------------------------------------------------------------------------------


@pytest.fixture
def locked(tmp_path: Path) -> Stack:
    return serve(tmp_path, tokens=[TOKEN.encode()])


@pytest.mark.parametrize("route", CORE_ROUTES, ids=lambda r: f"{r.method} {r.template}")
def test_with_auth_on_only_probes_are_open(locked: Stack, route: Route) -> None:
    app = locked.app(docs=True)
    kwargs, status, _ = HAPPY[route.handler]
    path = concrete(route)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        r = call(locked, route.method, path, app, headers=headers, **kwargs)
        if route.probe:
            assert r.status_code == status, r.text
        else:
            assert error_of(r, 401) == "Missing or invalid bearer token"
    r = call(
        locked, route.method, path, app, headers={"Authorization": f"bearer {TOKEN}"}, **kwargs
    )
    assert r.status_code == status, r.text


def test_with_auth_on_unknown_paths_need_a_token_to_be_told_404(locked: Stack) -> None:
    assert error_of(call(locked, "GET", "/nope"), 401)
    assert error_of(call(locked, "POST", "/v2/health/live"), 401)
    authorized = {"Authorization": f"Bearer {TOKEN}"}
    assert error_of(call(locked, "GET", "/nope", headers=authorized), 404)
    assert error_of(call(locked, "POST", "/v2/health/live", headers=authorized), 405)

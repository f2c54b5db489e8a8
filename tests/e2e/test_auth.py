"""End-to-end bearer-token authentication against real sklearnserver processes.

Tokens come from ``--auth_token_file`` (one per line) and from ``AUTH_TOKENS``
(comma-separated); every one of them is accepted. Every route that serves
data or changes the server needs ``Authorization: Bearer <token>`` (REST) or
the same ``authorization`` metadata (gRPC); liveness and readiness stay open
for probes. A refused request is 401 ``{"error": ...}`` / UNAUTHENTICATED and
changes nothing. No token, good or bad, ever reaches the log.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import joblib
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from modelserver import protos as M
from serverproc import ServerProcess, run_to_exit

pytestmark = pytest.mark.e2e

#: Distinctive, so a grep of the log cannot match anything else.
FILE_TOKENS = ["tok-file-one-7Qz3kP9w", "tok-file-two-Xr4mB8vL"]
ENV_TOKENS = ["tok-env-three-Hc2nW5sJ", "tok-env-four-Ya6tF1qD"]
TOKENS = FILE_TOKENS + ENV_TOKENS
GOOD = FILE_TOKENS[0]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
SERVICE = "/inference.GRPCInferenceService/"

#: Authorization values that must be refused, each with a test id.
BAD_AUTH: dict[str, str | None] = {
    "missing": None,
    "empty": "",
    "bearer_without_token": "Bearer",
    "wrong_token": "Bearer tok-wrong-Kd9sLq2Z",
    "token_without_scheme": GOOD,
    "basic_scheme": f"Basic {GOOD}",
    "token_scheme": f"Token {GOOD}",
    "prefix_of_token": f"Bearer {GOOD[:-1]}",
    "token_plus_suffix": f"Bearer {GOOD}x",
    "two_tokens_joined": f"Bearer {FILE_TOKENS[0]},{FILE_TOKENS[1]}",
    "comment_line_of_file": "Bearer # a comment line",
}


# -- fixtures -----------------------------------------------------------------


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    f = tmp_path_factory.mktemp("auth") / "tokens"
    # a comment, blank lines, surrounding whitespace and CRLF: only the tokens count
    f.write_text(
        f"# a comment line\r\n\r\n  {FILE_TOKENS[0]}  \r\n\n{FILE_TOKENS[1]}\n", encoding="utf-8"
    )
    return f


@pytest.fixture(scope="module")
def auth_server(iris_dir: Path, token_file: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(
        "sklearnserver",
        ["--model_name=iris", f"--model_dir={iris_dir}", f"--auth_token_file={token_file}"],
        env={"AUTH_TOKENS": f" {ENV_TOKENS[0]} ,{ENV_TOKENS[1]},"},
    )
    with server:
        yield server


@pytest.fixture(scope="module")
def expected(iris_dir: Path) -> list[int]:
    return joblib.load(iris_dir / "model.joblib").predict(np.asarray(ROWS)).tolist()


@pytest.fixture(scope="module")
def http(auth_server: ServerProcess) -> Iterator[httpx.Client]:
    """No default Authorization header: each request sets its own."""
    with httpx.Client(base_url=auth_server.http_url, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def channel(auth_server: ServerProcess) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(auth_server.grpc_address)
    yield ch
    ch.close()


# -- helpers --------------------------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def headers_for(value: str | None) -> dict[str, str]:
    return {} if value is None else {"authorization": value}


def v2_body() -> dict[str, Any]:
    return {"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP64", "data": ROWS}]}


def assert_401(r: httpx.Response) -> None:
    assert r.status_code == 401, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert list(body) == ["error"] and isinstance(body["error"], str) and body["error"], body


def grpc_infer_request() -> Any:
    req = M.ModelInferRequest(model_name="iris")
    t = req.inputs.add(name="input-0", datatype="FP64", shape=[2, 4])
    t.contents.fp64_contents.extend(np.ravel(ROWS).tolist())
    return req


def rpc(channel: grpc.Channel, method: str, response_cls: Any) -> Callable[..., Any]:
    return channel.unary_unary(
        SERVICE + method,
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response_cls.FromString,
    )


#: Every gRPC method that needs a token, with a request that would otherwise succeed.
GRPC_PROTECTED: dict[str, tuple[Callable[[], Any], Any]] = {
    "ModelInfer": (grpc_infer_request, M.ModelInferResponse),
    "ModelMetadata": (lambda: M.ModelMetadataRequest(name="iris"), M.ModelMetadataResponse),
    "ServerMetadata": (M.ServerMetadataRequest, M.ServerMetadataResponse),
    "RepositoryIndex": (M.RepositoryIndexRequest, M.RepositoryIndexResponse),
    "RepositoryModelLoad": (
        lambda: M.RepositoryModelLoadRequest(model_name="iris"),
        M.RepositoryModelLoadResponse,
    ),
    "RepositoryModelUnload": (
        lambda: M.RepositoryModelUnloadRequest(model_name="iris"),
        M.RepositoryModelUnloadResponse,
    ),
}

#: Every REST route that needs a token: (method, path, body).
REST_PROTECTED: dict[str, tuple[str, str, Any]] = {
    "v2_infer": ("POST", "/v2/models/iris/infer", "V2"),
    "v2_infer_versioned": ("POST", "/v2/models/iris/versions/1/infer", "V2"),
    "v1_predict": ("POST", "/v1/models/iris:predict", {"instances": ROWS}),
    "v1_explain": ("POST", "/v1/models/iris:explain", {"instances": ROWS}),
    "v1_models": ("GET", "/v1/models", None),
    "v2_server_metadata": ("GET", "/v2", None),
    "v2_model_metadata": ("GET", "/v2/models/iris", None),
    "v2_model_metadata_versioned": ("GET", "/v2/models/iris/versions/1", None),
    "v2_unknown_model_infer": ("POST", "/v2/models/nope/infer", "V2"),
    "repository_index": ("POST", "/v2/repository/index", {}),
    "repository_load": ("POST", "/v2/repository/models/iris/load", None),
    "repository_unload": ("POST", "/v2/repository/models/iris/unload", None),
    "repository_load_bad_name": ("POST", "/v2/repository/models/..%2Fx/load", None),
}

PROBES = [
    "/v2/health/live",
    "/v2/health/ready",
    "/v2/models/iris/ready",
    "/v2/models/iris/versions/1/ready",
    "/v1/models/iris",
]


def assert_iris_serves(http: httpx.Client, token: str, expected: list[int]) -> None:
    r = http.post("/v2/models/iris/infer", json=v2_body(), headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == expected


# -- refused without a valid token ------------------------------------------------


@pytest.mark.parametrize("auth", [pytest.param(v, id=k) for k, v in BAD_AUTH.items()])
@pytest.mark.parametrize("route", [pytest.param(v, id=k) for k, v in REST_PROTECTED.items()])
def test_rest_refused_without_valid_token(
    http: httpx.Client,
    expected: list[int],
    route: tuple[str, str, Any],
    auth: str | None,
) -> None:
    method, path, body = route
    if body == "V2":
        body = v2_body()
    assert_401(http.request(method, path, json=body, headers=headers_for(auth)))
    # the refused request changed nothing (an unload was refused too)
    assert http.get("/v2/models/iris/ready").status_code == 200
    assert_iris_serves(http, GOOD, expected)


@pytest.mark.parametrize("auth", [pytest.param(v, id=k) for k, v in BAD_AUTH.items()])
@pytest.mark.parametrize("method", list(GRPC_PROTECTED))
def test_grpc_refused_without_valid_token(
    channel: grpc.Channel, method: str, auth: str | None
) -> None:
    build, response_cls = GRPC_PROTECTED[method]
    metadata = None if auth is None else [("authorization", auth)]
    with pytest.raises(grpc.RpcError) as info:
        rpc(channel, method, response_cls)(build(), metadata=metadata, timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, info.value.details()
    assert info.value.details()
    ready = rpc(channel, "ModelReady", M.ModelReadyResponse)
    assert ready(M.ModelReadyRequest(name="iris"), timeout=10).ready is True


def test_tritonclient_refused_without_token(auth_server: ServerProcess) -> None:
    http = thttp.InferenceServerClient(auth_server.http_address)
    grpc_client = tgrpc.InferenceServerClient(auth_server.grpc_address)
    inp_h = thttp.InferInput("input-0", [2, 4], "FP64")
    inp_h.set_data_from_numpy(np.asarray(ROWS))
    inp_g = tgrpc.InferInput("input-0", [2, 4], "FP64")
    inp_g.set_data_from_numpy(np.asarray(ROWS))
    for call in (
        lambda: http.infer("iris", [inp_h]),
        lambda: http.get_model_metadata("iris"),
        lambda: http.get_model_repository_index(),
        lambda: http.infer("iris", [inp_h], headers={"Authorization": "Bearer nope"}),
    ):
        with pytest.raises(Exception) as info:
            call()
        assert "401" in str(info.value) or "bearer" in str(info.value).lower(), info.value
    for call in (
        lambda: grpc_client.infer("iris", [inp_g]),
        lambda: grpc_client.get_model_metadata("iris"),
        lambda: grpc_client.get_server_metadata(),
        lambda: grpc_client.get_model_repository_index(),
        lambda: grpc_client.infer("iris", [inp_g], headers={"authorization": "Bearer nope"}),
    ):
        with pytest.raises(Exception) as info:
            call()
        assert "UNAUTHENTICATED" in str(info.value), info.value
    http.close()
    grpc_client.close()


# -- accepted with any configured token ------------------------------------------------


@pytest.mark.parametrize("token", TOKENS)
def test_every_token_is_accepted_on_rest(
    auth_server: ServerProcess, expected: list[int], token: str
) -> None:
    with httpx.Client(base_url=auth_server.http_url, headers=bearer(token), timeout=10) as c:
        r = c.post("/v2/models/iris/infer", json=v2_body())
        assert r.status_code == 200, r.text
        assert r.json()["outputs"][0]["data"] == expected
        r = c.post("/v1/models/iris:predict", json={"instances": ROWS})
        assert r.status_code == 200, r.text
        assert r.json() == {"predictions": expected}
        assert c.get("/v2/models/iris").json()["name"] == "iris"
        assert c.get("/v2").status_code == 200
        assert c.get("/v1/models").json() == {"models": ["iris"]}
        index = c.post("/v2/repository/index")
        assert index.status_code == 200, index.text
        assert [(e["name"], e["state"]) for e in index.json()] == [("iris", "READY")]
        # the scheme is matched case-insensitively and extra spaces are tolerated (RFC 7235)
        r = c.post(
            "/v2/models/iris/infer", json=v2_body(), headers={"authorization": f"bearer  {token}"}
        )
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("token", TOKENS)
def test_every_token_is_accepted_by_tritonclient(
    auth_server: ServerProcess, expected: list[int], token: str
) -> None:
    headers = bearer(token)
    http = thttp.InferenceServerClient(auth_server.http_address)
    inp_h = thttp.InferInput("input-0", [2, 4], "FP64")
    inp_h.set_data_from_numpy(np.asarray(ROWS))
    result = http.infer("iris", [inp_h], headers={"Authorization": f"Bearer {token}"})
    assert result.as_numpy("predict").tolist() == expected
    assert http.get_model_metadata("iris", headers=headers)["name"] == "iris"
    assert [m["name"] for m in http.get_model_repository_index(headers=headers)] == ["iris"]
    http.close()

    g = tgrpc.InferenceServerClient(auth_server.grpc_address)
    inp_g = tgrpc.InferInput("input-0", [2, 4], "FP64")
    inp_g.set_data_from_numpy(np.asarray(ROWS))
    assert g.infer("iris", [inp_g], headers=headers).as_numpy("predict").tolist() == expected
    assert g.get_model_metadata("iris", headers=headers).name == "iris"
    assert g.get_server_metadata(headers=headers).name
    assert [m.name for m in g.get_model_repository_index(headers=headers).models] == ["iris"]
    g.close()


def test_repository_operations_with_token(
    auth_server: ServerProcess, http: httpx.Client, channel: grpc.Channel, expected: list[int]
) -> None:
    """Load and unload work with a token, over REST and gRPC (and probes stay truthful)."""
    md = [("authorization", f"Bearer {TOKENS[3]}")]
    with httpx.Client(base_url=auth_server.http_url, headers=bearer(TOKENS[1]), timeout=30) as c:
        try:
            assert c.post("/v2/repository/models/iris/unload").status_code == 200
            r = c.get("/v2/health/ready", headers={})
            assert r.status_code == 400 and r.json() == {"ready": False}, r.text
            assert c.get("/v2/models/iris/ready", headers={}).status_code == 400
            load = rpc(channel, "RepositoryModelLoad", M.RepositoryModelLoadResponse)
            load(M.RepositoryModelLoadRequest(model_name="iris"), metadata=md, timeout=30)
            assert c.get("/v2/health/ready").status_code == 200
            unload = rpc(channel, "RepositoryModelUnload", M.RepositoryModelUnloadResponse)
            unload(M.RepositoryModelUnloadRequest(model_name="iris"), metadata=md, timeout=30)
            assert c.get("/v2/models/iris/ready").status_code == 400
            r = c.post("/v2/repository/models/iris/load")
            assert r.status_code == 200, r.text
        finally:
            c.post("/v2/repository/models/iris/load")
    assert_iris_serves(http, GOOD, expected)


# -- probes stay open -----------------------------------------------------------------------


@pytest.mark.parametrize("auth", [None, "Bearer tok-wrong-Kd9sLq2Z"], ids=["no_token", "bad_token"])
def test_probes_are_open(http: httpx.Client, channel: grpc.Channel, auth: str | None) -> None:
    for path in PROBES:
        r = http.get(path, headers=headers_for(auth))
        assert r.status_code == 200, (path, r.text)
        assert r.json().get("ready", r.json().get("live")) is True, (path, r.text)
    metadata = None if auth is None else [("authorization", auth)]
    live = rpc(channel, "ServerLive", M.ServerLiveResponse)
    assert live(M.ServerLiveRequest(), metadata=metadata, timeout=10).live is True
    ready = rpc(channel, "ServerReady", M.ServerReadyResponse)
    assert ready(M.ServerReadyRequest(), metadata=metadata, timeout=10).ready is True
    model_ready = rpc(channel, "ModelReady", M.ModelReadyResponse)
    assert model_ready(M.ModelReadyRequest(name="iris"), metadata=metadata, timeout=10).ready


def test_probe_exemption_covers_only_the_probes(iris_dir: Path) -> None:
    """Only readiness is open: not metadata whose URL happens to end in ``/ready``.

    With ``--model_version=ready`` the versioned metadata route is
    ``GET /v2/models/iris/versions/ready``, which must still need a token.
    """
    server = ServerProcess(
        "sklearnserver",
        ["--model_name=iris", f"--model_dir={iris_dir}", "--model_version=ready"],
        env={"AUTH_TOKENS": GOOD},
    )
    with server, httpx.Client(base_url=server.http_url, timeout=10) as c:
        assert c.get("/v2/models/iris/versions/ready/ready").json()["ready"] is True
        assert c.get("/v2/models/iris/ready").status_code == 200
        assert c.get("/v2/models/iris/versions/ready", headers=bearer(GOOD)).status_code == 200
        assert_401(c.get("/v2/models/iris"))
        assert_401(c.get("/v2/models/iris/versions/ready"))


def test_tritonclient_probes_without_token(auth_server: ServerProcess) -> None:
    http = thttp.InferenceServerClient(auth_server.http_address)
    assert http.is_server_live() and http.is_server_ready() and http.is_model_ready("iris")
    http.close()
    g = tgrpc.InferenceServerClient(auth_server.grpc_address)
    assert g.is_server_live() and g.is_server_ready() and g.is_model_ready("iris")
    g.close()


# -- tokens never reach the log ----------------------------------------------------------


def _exercise(server: ServerProcess, tokens: list[str], bad: list[str]) -> None:
    """Requests of every kind with good and bad tokens, REST and gRPC."""
    ch = grpc.insecure_channel(server.grpc_address)
    infer = rpc(ch, "ModelInfer", M.ModelInferResponse)
    c = httpx.Client(base_url=server.http_url, timeout=10)
    try:
        for value in [*(f"Bearer {t}" for t in tokens + bad), *bad, *tokens]:
            h = {"authorization": value}
            c.post("/v2/models/iris/infer", json=v2_body(), headers=h)
            c.post("/v1/models/iris:predict", json={"instances": 1}, headers=h)
            c.get("/v2/models/nope", headers=h)
            c.post("/v2/repository/index", headers=h)
            c.get("/v2/health/ready", headers=h)
            for request in (grpc_infer_request(), M.ModelInferRequest(model_name="nope")):
                with contextlib.suppress(grpc.RpcError):
                    infer(request, metadata=[("authorization", value)], timeout=10)
    finally:
        c.close()
        ch.close()


def _assert_not_logged(log: str, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret not in log, f"{secret!r} appears in the server log"
        # nor any long piece of it
        assert secret[-12:] not in log, f"part of {secret!r} appears in the server log"


def test_tokens_never_logged(auth_server: ServerProcess) -> None:
    bad = ["tok-bad-guess-Pw7cV3nA", f"{GOOD}-longer"]
    _exercise(auth_server, TOKENS, bad)
    log = auth_server.output()
    assert "401" in log or "bearer" in log.lower(), log  # the refusals were logged...
    assert "4 token(s)" in log, log  # ...and the token count, not the tokens
    _assert_not_logged(log, TOKENS + bad)


def test_tokens_never_logged_at_debug_with_access_log(iris_dir: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text("tok-debug-file-Zq8rT2mK\n", encoding="utf-8")
    tokens = ["tok-debug-file-Zq8rT2mK", "tok-debug-env-Lf5hN9cB"]
    bad = ["tok-debug-bad-Wm3gS6yE"]
    server = ServerProcess(
        "sklearnserver",
        [
            "--model_name=iris",
            f"--model_dir={iris_dir}",
            f"--auth_token_file={token_file}",
            "--log_level=debug",
            "--access_log=true",
            "--access_log_probes=true",
        ],
        env={"AUTH_TOKENS": tokens[1]},
    )
    with server:
        _exercise(server, tokens, bad)
        log = server.output()
    assert "DEBUG" in log and "/v2/models/iris/infer" in log, log  # debug and access logging on
    _assert_not_logged(log, tokens + bad)


# -- auth off and misconfiguration --------------------------------------------------------


def test_auth_off_needs_no_header(iris_server: ServerProcess, expected: list[int]) -> None:
    with httpx.Client(base_url=iris_server.http_url, timeout=10) as c:
        r = c.post("/v2/models/iris/infer", json=v2_body())
        assert r.status_code == 200 and r.json()["outputs"][0]["data"] == expected, r.text
        r = c.post("/v1/models/iris:predict", json={"instances": ROWS})
        assert r.json() == {"predictions": expected}, r.text
        assert c.get("/v2/models/iris").status_code == 200
        assert c.post("/v2/repository/index").status_code == 200
        # an Authorization header is simply ignored when auth is off
        r = c.post("/v2/models/iris/infer", json=v2_body(), headers=bearer("anything"))
        assert r.status_code == 200, r.text
    g = tgrpc.InferenceServerClient(iris_server.grpc_address)
    inp = tgrpc.InferInput("input-0", [2, 4], "FP64")
    inp.set_data_from_numpy(np.asarray(ROWS))
    assert g.infer("iris", [inp]).as_numpy("predict").tolist() == expected
    assert g.get_model_metadata("iris").name == "iris"
    assert [m.name for m in g.get_model_repository_index().models] == ["iris"]
    g.close()
    assert "token(s) accepted" not in iris_server.output()


def test_missing_token_file_is_a_clear_startup_error(iris_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-tokens"
    result = run_to_exit(
        "sklearnserver",
        [
            "--model_name=iris",
            f"--model_dir={iris_dir}",
            f"--auth_token_file={missing}",
            "--http_port=0",
            "--grpc_port=0",
            "--host=127.0.0.1",
        ],
        timeout=30,
    )
    assert result.returncode != 0, result.stderr
    assert str(missing) in result.stderr, result.stderr
    assert "traceback" not in result.stderr.lower(), result.stderr

"""The gRPC servicer in process: grpc.aio on a free localhost port, a real client channel.

Requests are the protocol's messages (``modelserver.protos``) sent through
``channel.unary_unary``, or raw bytes where a client sends something that is
not a message at all; each RPC answers from the real data plane, and every
error leaves with the status code the architecture's table gives it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from inproc import Arith, Stack, eventually, factory_of, grpc_channel, loaded, options, stack
from modelserver import __version__
from modelserver import protos as pb
from modelserver.observability.metrics import REGISTRY

SERVICE = "/inference.GRPCInferenceService/"
TOKEN = "sesame"
X = np.array([[1.0, 2.0], [3.0, 4.0]])

Rpc = Callable[..., Awaitable[Any]]


def rpc(channel: grpc.aio.Channel, method: str) -> Rpc:
    """A stub for one RPC of the service, its messages from our descriptor pool."""
    descriptor = pb.SERVICE.methods_by_name[method]
    request_cls = pb.message_class(descriptor.input_type.full_name)
    response_cls = pb.message_class(descriptor.output_type.full_name)
    return channel.unary_unary(  # type: ignore[no-any-return]
        SERVICE + method,
        request_serializer=request_cls.SerializeToString,
        response_deserializer=response_cls.FromString,
    )


def raw_rpc(channel: grpc.aio.Channel, method: str) -> Rpc:
    """A stub that sends whatever bytes it is given."""
    return channel.unary_unary(SERVICE + method)  # type: ignore[no-any-return]


def run(s: Stack, test: Callable[[grpc.aio.Channel], Awaitable[Any]]) -> Any:
    """``test(channel)`` against the servicer of ``s``, in a fresh event loop."""

    async def main() -> Any:
        async with grpc_channel(s) as channel:
            return await test(channel)

    return asyncio.run(main())


def infer_request(x: np.ndarray = X, *outputs: str, raw: bool = False, **fields: Any) -> Any:
    request = pb.ModelInferRequest(model_name="arith", **fields)
    tensor = request.inputs.add(name="x", datatype="FP64", shape=list(x.shape))
    if raw:
        request.raw_input_contents.append(x.astype("<f8").tobytes())
    else:
        tensor.contents.fp64_contents.extend(x.ravel().tolist())
    for name in outputs:
        request.outputs.add(name=name)
    return request


def outputs_of(response: Any) -> dict[str, np.ndarray]:
    """name -> array of every output, from typed contents or raw bytes."""
    arrays = {}
    for i, out in enumerate(response.outputs):
        assert out.datatype == "FP64"
        if response.raw_output_contents:
            data = np.frombuffer(response.raw_output_contents[i], dtype="<f8")
        else:
            data = np.asarray(out.contents.fp64_contents)
        arrays[out.name] = data.reshape(list(out.shape))
    return arrays


def requests_counted(status: str) -> float:
    labels = {"model": "arith", "protocol": "v2-grpc", "status": status}
    return REGISTRY.get_sample_value("modelserver_requests_total", labels) or 0.0


async def status_of(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    """The code and details of an RPC that must fail."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value.code(), info.value.details() or ""


@pytest.fixture
def model() -> Arith:
    return Arith()


@pytest.fixture
def s(model: Arith) -> Stack:
    return stack(loaded(model))


# -- health and metadata -------------------------------------------------------------------------


def test_health_rpcs(s: Stack) -> None:
    async def test(channel: grpc.aio.Channel) -> None:
        assert (await rpc(channel, "ServerLive")(pb.ServerLiveRequest())).live
        assert (await rpc(channel, "ServerReady")(pb.ServerReadyRequest())).ready
        model_ready = rpc(channel, "ModelReady")
        assert (await model_ready(pb.ModelReadyRequest(name="arith"))).ready
        assert (await model_ready(pb.ModelReadyRequest(name="arith", version="1"))).ready
        s.dataplane.draining = True
        assert not (await rpc(channel, "ServerReady")(pb.ServerReadyRequest())).ready
        assert not (await model_ready(pb.ModelReadyRequest(name="arith"))).ready
        assert (await rpc(channel, "ServerLive")(pb.ServerLiveRequest())).live

    run(s, test)


def test_model_ready_of_unknown_models_and_versions_is_not_found(s: Stack) -> None:
    async def test(channel: grpc.aio.Channel) -> None:
        model_ready = rpc(channel, "ModelReady")
        code, details = await status_of(model_ready(pb.ModelReadyRequest(name="nope")))
        assert code == grpc.StatusCode.NOT_FOUND
        assert details == "Model with name nope does not exist. Served models: arith."
        code, details = await status_of(
            model_ready(pb.ModelReadyRequest(name="arith", version="2"))
        )
        assert code == grpc.StatusCode.NOT_FOUND and "version 2" in details

    run(s, test)


def test_server_metadata(s: Stack) -> None:
    async def test(channel: grpc.aio.Channel) -> Any:
        return await rpc(channel, "ServerMetadata")(pb.ServerMetadataRequest())

    meta = run(s, test)
    assert (meta.name, meta.version) == ("inproc", __version__)
    assert list(meta.extensions) == [
        "binary_tensor_data",
        "model_repository",
        "statistics",
        "model_configuration",
    ]


def test_model_metadata_is_the_data_planes(s: Stack) -> None:
    async def test(channel: grpc.aio.Channel) -> Any:
        return await rpc(channel, "ModelMetadata")(pb.ModelMetadataRequest(name="arith"))

    meta = run(s, test)
    expected = s.dataplane.model_metadata("arith")
    assert (meta.name, list(meta.versions), meta.platform) == ("arith", ["1"], "arith")
    for key in ("inputs", "outputs"):
        assert [
            {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
            for t in getattr(meta, key)
        ] == expected[key]


def test_model_metadata_of_an_unknown_model_is_not_found(s: Stack) -> None:
    async def test(channel: grpc.aio.Channel) -> tuple[grpc.StatusCode, str]:
        return await status_of(rpc(channel, "ModelMetadata")(pb.ModelMetadataRequest(name="x")))

    code, details = run(s, test)
    assert code == grpc.StatusCode.NOT_FOUND and "Served models: arith." in details


# -- inference -----------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [False, True], ids=["typed", "raw"])
def test_model_infer_answers_as_the_model_does_in_the_form_it_was_asked(
    s: Stack, model: Arith, raw: bool
) -> None:
    async def test(channel: grpc.aio.Channel) -> Any:
        request = infer_request(X, "negate", "total", raw=raw, id="g-1")
        return await rpc(channel, "ModelInfer")(request)

    response = run(s, test)
    assert (response.model_name, response.model_version, response.id) == ("arith", "1", "g-1")
    # Answered raw whatever the request used, as Triton answers (hand-written clients
    # read raw_output_contents).
    assert response.raw_output_contents
    expected = model.expected(X, ["negate", "total"])
    got = outputs_of(response)
    assert list(got) == list(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value)


def test_model_infer_with_no_outputs_named_gives_the_defaults(s: Stack, model: Arith) -> None:
    async def test(channel: grpc.aio.Channel) -> Any:
        return await rpc(channel, "ModelInfer")(infer_request(X))

    assert list(outputs_of(run(s, test))) == model.outputs.defaults()


@pytest.mark.parametrize("method", ["ModelInfer", "ModelMetadata", "ServerLive"])
def test_bytes_that_are_not_a_message_are_invalid_argument(s: Stack, method: str) -> None:
    async def test(channel: grpc.aio.Channel) -> tuple[grpc.StatusCode, str]:
        return await status_of(raw_rpc(channel, method)(b"\xff\xff\xff\xff"))

    code, details = run(s, test)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith(f"Malformed {method}Request message")


@pytest.mark.parametrize(
    ("request_", "code", "details"),
    [
        (
            infer_request(X).__class__(model_name="nope"),
            grpc.StatusCode.NOT_FOUND,
            "Model with name nope does not exist. Served models: arith.",
        ),
        (
            infer_request(X, "nope"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Model 'arith' has no output named 'nope'; available: double, total, negate",
        ),
        (
            infer_request(np.array([[666.0]])),
            grpc.StatusCode.INTERNAL,
            "Model 'arith' failed: RuntimeError: the model broke on 666",
        ),
        (
            infer_request(np.array([[np.nan]])),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Model 'arith' rejected the input: NaN is not a number this model takes",
        ),
        (
            infer_request(X, model_version="9"),
            grpc.StatusCode.NOT_FOUND,
            "Model with name arith and version 9 does not exist.",
        ),
    ],
    ids=["unknown-model", "unknown-output", "model-crash", "input-error", "unknown-version"],
)
def test_inference_errors_leave_with_their_status(
    s: Stack, request_: Any, code: grpc.StatusCode, details: str
) -> None:
    async def test(channel: grpc.aio.Channel) -> tuple[grpc.StatusCode, str]:
        return await status_of(rpc(channel, "ModelInfer")(request_))

    got_code, got_details = run(s, test)
    assert got_code == code
    assert got_details.startswith(details), got_details


def test_a_tensor_that_does_not_match_its_shape_is_invalid_argument(s: Stack) -> None:
    request = infer_request(X)
    request.inputs[0].contents.fp64_contents.append(9.0)

    async def test(channel: grpc.aio.Channel) -> tuple[grpc.StatusCode, str]:
        return await status_of(rpc(channel, "ModelInfer")(request))

    code, details = run(s, test)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "needs 4 elements, fp64_contents has 5" in details


def test_an_unloaded_model_is_unavailable(s: Stack) -> None:
    asyncio.run(s.repository.unload("arith"))

    async def test(channel: grpc.aio.Channel) -> None:
        code, details = await status_of(rpc(channel, "ModelInfer")(infer_request(X)))
        assert code == grpc.StatusCode.UNAVAILABLE
        assert details == "Model with name arith is not ready: unloaded."
        ready = await rpc(channel, "ModelReady")(pb.ModelReadyRequest(name="arith"))
        assert not ready.ready

    run(s, test)


def test_past_the_server_timeout_the_answer_is_deadline_exceeded(model: Arith) -> None:
    s = stack(loaded(model, options(predict_executor="thread")), timeout_s=0.05)

    async def test(channel: grpc.aio.Channel) -> tuple[grpc.StatusCode, str]:
        model.block()
        try:
            return await status_of(rpc(channel, "ModelInfer")(infer_request(X), timeout=5))
        finally:
            model.unblock()

    code, details = run(s, test)
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert details == "Request timed out after 0.05s"


def test_a_client_deadline_keeps_predict_off_the_loop_until_it_proved_fast(
    s: Stack, model: Arith
) -> None:
    async def test(channel: grpc.aio.Channel) -> str:
        infer = rpc(channel, "ModelInfer")
        await infer(infer_request(X), timeout=10)
        await infer(infer_request(X))
        await infer(infer_request(X), timeout=10)
        return threading.current_thread().name

    loop_thread = run(s, test)
    unproved, without, proved = model.threads
    assert unproved.startswith("predict"), "an unproved predict with a deadline ran inline"
    assert without == loop_thread
    assert proved == loop_thread, "a proved-fast predict with a roomy deadline left the loop"


def test_past_the_concurrency_limit_the_answer_is_unavailable(model: Arith) -> None:
    s = stack(loaded(model, options(predict_executor="thread")), max_concurrent=1)

    async def test(channel: grpc.aio.Channel) -> tuple[grpc.StatusCode, str]:
        infer = rpc(channel, "ModelInfer")
        model.block()
        first = asyncio.ensure_future(infer(infer_request(X)))
        await model.wait_entered()
        try:
            return await status_of(infer(infer_request(X)))
        finally:
            model.unblock()
            await first

    code, details = run(s, test)
    assert code == grpc.StatusCode.UNAVAILABLE
    assert details.startswith("Server busy: 1 requests in flight")


def test_a_cancelled_call_drops_its_queued_work(model: Arith) -> None:
    served = loaded(model, options(max_batch_size=8, predict_executor="thread"))
    s = stack(served)

    async def test(channel: grpc.aio.Channel) -> Any:
        infer = rpc(channel, "ModelInfer")
        model.block()
        first = infer(infer_request(X))
        await model.wait_entered()
        second = infer(infer_request(X + 10))
        await eventually(lambda: served.inflight == 2, "the second call to queue")
        second.cancel()
        await eventually(lambda: served.inflight == 1, "the cancelled call to leave")
        model.unblock()
        return await first

    cancelled = requests_counted("CANCELLED")
    internal = requests_counted("INTERNAL")
    np.testing.assert_array_equal(outputs_of(run(s, test))["double"], X * 2)
    assert [c.tolist() for c in model.calls] == [X.tolist()]
    assert requests_counted("INTERNAL") == internal, "a client's cancel counted as a server error"
    assert requests_counted("CANCELLED") == cancelled + 1


# -- repository --------------------------------------------------------------------------------


def test_repository_rpcs(tmp_path: Path, model: Arith) -> None:
    (tmp_path / "extra").mkdir()
    s = stack(loaded(model), factory=factory_of(Arith), root=tmp_path)

    async def test(channel: grpc.aio.Channel) -> None:
        index = rpc(channel, "RepositoryIndex")
        models = (await index(pb.RepositoryIndexRequest())).models
        assert [(m.name, m.version, m.state) for m in models] == [
            ("arith", "1", "READY"),
            ("extra", "", ""),
        ]
        await rpc(channel, "RepositoryModelLoad")(pb.RepositoryModelLoadRequest(model_name="extra"))
        ready = (await index(pb.RepositoryIndexRequest(ready=True))).models
        assert [m.name for m in ready] == ["arith", "extra"]
        unload = rpc(channel, "RepositoryModelUnload")
        await unload(pb.RepositoryModelUnloadRequest(model_name="extra"))
        (extra,) = [
            m for m in (await index(pb.RepositoryIndexRequest())).models if m.name == "extra"
        ]
        assert (extra.state, extra.reason) == ("UNAVAILABLE", "unloaded")
        code, details = await status_of(unload(pb.RepositoryModelUnloadRequest(model_name="zz")))
        assert code == grpc.StatusCode.NOT_FOUND
        s.dataplane.workers = 2
        code, details = await status_of(unload(pb.RepositoryModelUnloadRequest(model_name="arith")))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "--workers 2" in details

    run(s, test)
    assert s.repository.get("arith").ready


# -- authentication ------------------------------------------------------------------------------

CALLS: dict[str, Any] = {
    "ServerLive": pb.ServerLiveRequest(),
    "ServerReady": pb.ServerReadyRequest(),
    "ModelReady": pb.ModelReadyRequest(name="arith"),
    "ServerMetadata": pb.ServerMetadataRequest(),
    "ModelMetadata": pb.ModelMetadataRequest(name="arith"),
    "ModelInfer": infer_request(X),
    "RepositoryIndex": pb.RepositoryIndexRequest(),
    "RepositoryModelLoad": pb.RepositoryModelLoadRequest(model_name="arith"),
    "RepositoryModelUnload": pb.RepositoryModelUnloadRequest(model_name="arith"),
    "ModelStatistics": pb.message_class("inference.ModelStatisticsRequest")(name="arith"),
    "ModelConfig": pb.message_class("inference.ModelConfigRequest")(name="arith"),
    "SystemSharedMemoryStatus": pb.message_class("inference.SystemSharedMemoryStatusRequest")(),
    "SystemSharedMemoryRegister": pb.message_class("inference.SystemSharedMemoryRegisterRequest")(
        name="r", key="/r", byte_size=8
    ),
    "SystemSharedMemoryUnregister": pb.message_class(
        "inference.SystemSharedMemoryUnregisterRequest"
    )(),
}
PROBES = {"ServerLive", "ServerReady", "ModelReady"}
#: Refused past authentication here: shared memory is off unless --allow_shared_memory.
REFUSED_ANYWAY = {
    "SystemSharedMemoryStatus",
    "SystemSharedMemoryRegister",
    "SystemSharedMemoryUnregister",
}
#: Bidirectional streams, checked on their own below.
STREAMS = {"ModelStreamInfer"}


def test_every_rpc_of_the_service_is_covered() -> None:
    assert set(CALLS) | STREAMS == {m.name for m in pb.SERVICE.methods}


@pytest.mark.parametrize("method", list(CALLS))
def test_with_auth_on_only_probes_are_open(tmp_path: Path, method: str) -> None:
    (tmp_path / "arith").mkdir()
    served = factory_of(Arith)("arith", tmp_path / "arith")
    served.load()
    s = stack(served, factory=factory_of(Arith), root=tmp_path, tokens=[TOKEN.encode()])

    async def test(channel: grpc.aio.Channel) -> None:
        call = rpc(channel, method)
        for metadata in ((), (("authorization", "Bearer wrong"),), (("authorization", TOKEN),)):
            if method in PROBES:
                await call(CALLS[method], metadata=metadata)
            else:
                code, details = await status_of(call(CALLS[method], metadata=metadata))
                assert code == grpc.StatusCode.UNAUTHENTICATED
                assert details == "Missing or invalid bearer token"
        authorized = call(CALLS[method], metadata=(("authorization", f"Bearer {TOKEN}"),))
        if method in REFUSED_ANYWAY:
            code, details = await status_of(authorized)
            assert code == grpc.StatusCode.INVALID_ARGUMENT and "--allow_shared_memory" in details
        else:
            await authorized

    run(s, test)


def test_with_auth_on_the_stream_needs_a_token(tmp_path: Path) -> None:
    (tmp_path / "arith").mkdir()
    served = factory_of(Arith)("arith", tmp_path / "arith")
    served.load()
    s = stack(served, factory=factory_of(Arith), root=tmp_path, tokens=[TOKEN.encode()])
    response_cls = pb.message_class("inference.ModelStreamInferResponse")

    async def test(channel: grpc.aio.Channel) -> None:
        stream = channel.stream_stream(
            SERVICE + "ModelStreamInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=response_cls.FromString,
        )
        refused = stream(iter([infer_request(X, id="s-1")]))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in refused:
                pass
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        allowed = stream(
            iter([infer_request(X, id="s-2")]),
            metadata=(("authorization", f"Bearer {TOKEN}"),),
        )
        answers = [answer async for answer in allowed]
        assert [a.infer_response.id for a in answers] == ["s-2"]
        assert not answers[0].error_message

    run(s, test)

"""The request pipeline of one served model, in process: ServedModel.infer with a context.

Output selection, joint and own-function outputs, dynamic output tables, how
the model's own errors are answered, batching, where predict runs, clients
that leave, the in-flight count, metadata and readiness.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from echo_model import EchoModel
from inproc import (
    WAIT_S,
    Arith,
    Disconnect,
    eventually,
    loaded,
    options,
    request,
    tensor,
)
from modelserver import InferenceError, InvalidInput, Model, ModelNotReady, Outputs
from modelserver.dataplane.context import RequestContext
from modelserver.dataplane.served import ModelState, ServedModel
from modelserver.errors import ClientDisconnected
from modelserver.types import InferResponse

X = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])


def infer(served: ServedModel, *args: Any, **kwargs: Any) -> InferResponse:
    """One request through the pipeline in a fresh event loop."""
    return asyncio.run(served.infer(request(served.name, *args, **kwargs), RequestContext("test")))


def outputs_of(response: InferResponse) -> dict[str, np.ndarray]:
    return {t.name: t.data for t in response.outputs}


def assert_outputs(response: InferResponse, expected: dict[str, np.ndarray]) -> None:
    """The response carries exactly ``expected``, in its order, with matching tensor facts."""
    assert [t.name for t in response.outputs] == list(expected)
    for t in response.outputs:
        np.testing.assert_array_equal(t.data, expected[t.name])
        assert t.shape == t.data.shape
        assert t.datatype == "FP64"


# -- output selection ------------------------------------------------------------------------


def test_no_outputs_named_gives_the_defaults() -> None:
    model = Arith()
    served = loaded(model)
    response = infer(served, tensor("x", X), id="r1")
    assert_outputs(response, model.expected(X, ["double", "total"]))
    assert (response.model_name, response.model_version, response.id) == ("arith", "1", "r1")


def test_named_outputs_come_back_in_the_order_asked() -> None:
    model = Arith()
    served = loaded(model)
    names = ["negate", "total", "double"]
    assert_outputs(infer(served, tensor("x", X), outputs=names), model.expected(X, names))


def test_an_unknown_output_is_invalid_input_listing_what_is_available() -> None:
    model = Arith()
    served = loaded(model)
    with pytest.raises(InvalidInput) as info:
        infer(served, tensor("x", X), outputs=["double", "nope"])
    assert "'nope'" in info.value.message
    assert "available: double, total, negate" in info.value.message
    assert info.value.http_status == 400
    assert model.calls == [], "predict ran for a request refused before it"


def test_an_output_asked_for_twice_is_invalid_input() -> None:
    model = Arith()
    with pytest.raises(InvalidInput, match="'double' requested more than once"):
        infer(loaded(model), tensor("x", X), outputs=["double", "total", "double"])
    assert model.calls == []


def test_a_ragged_output_is_a_500_naming_it() -> None:
    class Ragged(Arith):
        def postprocess(self, result: Any) -> Any:
            return {"double": [[1.0], [1.0, 2.0]], "total": result}

    with pytest.raises(InferenceError, match="Output 'double' is not a regular array"):
        infer(loaded(Ragged()), tensor("x", X), outputs=["double"])


def test_joint_outputs_share_one_predict_and_own_outputs_skip_it() -> None:
    model = Arith()
    served = loaded(model)
    infer(served, tensor("x", X), outputs=["double", "total"])
    assert len(model.calls) == 1 and model.negations == []
    infer(served, tensor("x", X), outputs=["negate"])
    assert len(model.calls) == 1, "an output with its own function ran the joint predict"
    assert len(model.negations) == 1
    infer(served, tensor("x", X), outputs=["negate", "double"])
    assert len(model.calls) == 2 and len(model.negations) == 2


def test_a_joint_output_missing_from_postprocess_is_a_clear_500() -> None:
    class Forgetful(Arith):
        def postprocess(self, result: Any) -> Any:
            return {"double": result}  # "total" is declared but never returned

    served = loaded(Forgetful())
    with pytest.raises(InferenceError, match="returned outputs double but not 'total'"):
        infer(served, tensor("x", X), outputs=["total"])


def test_a_model_that_declares_no_outputs_has_predict() -> None:
    class Plain(Model):
        def load(self) -> None:
            pass

        def predict(self, inputs: Any) -> Any:
            return np.asarray(inputs).sum(axis=1)

    served = loaded(Plain("plain"))
    response = infer(served, tensor("x", X))
    assert [t.name for t in response.outputs] == ["predict"]
    np.testing.assert_array_equal(response.outputs[0].data, X.sum(axis=1))
    params = served.metadata()["parameters"]
    assert params["default_outputs"] == ["predict"]
    assert params.keys() == {"default_outputs", "explanations"}


def test_changed_defaults_are_what_a_plain_request_gets() -> None:
    class ProbaFirst(Arith):
        def load(self) -> None:
            super().load()
            self.outputs.set_defaults(["negate"])

    model = ProbaFirst()
    served = loaded(model)
    assert_outputs(infer(served, tensor("x", X)), model.expected(X, ["negate"]))
    assert served.metadata()["parameters"]["default_outputs"] == ["negate"]


# -- dynamic output tables ----------------------------------------------------------------------


def test_a_dynamic_table_answers_every_output_predict_returns() -> None:
    served = loaded(EchoModel("echo"))
    a, b = tensor("a", X), tensor("b", np.array([7, 8], dtype=np.int32), "INT32")
    response = infer(served, a, b)
    assert [(t.name, t.datatype, t.shape) for t in response.outputs] == [
        ("a", "FP64", (2, 3)),
        ("b", "INT32", (2,)),
    ]
    np.testing.assert_array_equal(outputs_of(response)["b"], b.data)


def test_a_dynamic_table_selects_by_name_and_refuses_what_predict_did_not_return() -> None:
    served = loaded(EchoModel("echo"))
    a, b = tensor("a", X), tensor("b", X + 1)
    response = infer(served, a, b, outputs=["b"])
    assert list(outputs_of(response)) == ["b"]
    np.testing.assert_array_equal(response.outputs[0].data, X + 1)
    with pytest.raises(InvalidInput, match=r"no output named 'c'; available: a, b"):
        infer(served, a, b, outputs=["b", "c"])


def test_a_dynamic_table_has_no_default_outputs_in_metadata_and_never_batches(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, "modelserver.dataplane"):
        served = loaded(EchoModel("echo"), options(max_batch_size=8))
    assert served.batcher is None
    assert "batching is off" in caplog.text
    meta = served.metadata()
    assert meta["outputs"] == []
    assert "default_outputs" not in meta.get("parameters", {})


# -- the model's own errors ---------------------------------------------------------------------


@pytest.mark.parametrize("where", ["preprocess", "predict"])
def test_input_errors_of_the_model_are_400(where: str) -> None:
    served = loaded(Arith())
    if where == "preprocess":
        call = {"parameters": {"preprocess": "reject"}}
        x = X
    else:
        call = {}
        x = np.array([[1.0, np.nan]])
    with pytest.raises(InvalidInput) as info:
        infer(served, tensor("x", x), **call)
    assert info.value.http_status == 400
    assert info.value.message.startswith("Model 'arith' rejected the input: ")
    assert ("no column named" if where == "preprocess" else "NaN is not a number") in str(
        info.value
    )
    assert served.inflight == 0


@pytest.mark.parametrize("where", ["preprocess", "predict"])
def test_other_errors_of_the_model_are_500_and_logged_with_the_request_id(
    where: str, caplog: pytest.LogCaptureFixture
) -> None:
    served = loaded(Arith())
    if where == "preprocess":
        call: dict[str, Any] = {"parameters": {"preprocess": "crash"}}
        x, kind = X, "ZeroDivisionError"
    else:
        call, x, kind = {}, np.array([[666.0]]), "RuntimeError"
    with (
        caplog.at_level(logging.ERROR, "modelserver.dataplane"),
        pytest.raises(InferenceError) as info,
    ):
        infer(served, tensor("x", x), id=f"req-{where}", **call)
    assert info.value.http_status == 500
    assert info.value.message.startswith(f"Model 'arith' failed: {kind}: ")
    (record,) = [r for r in caplog.records if r.name == "modelserver.dataplane"]
    assert f"request id req-{where}" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0].__name__ == kind
    assert served.inflight == 0


def test_an_output_of_no_protocol_datatype_is_a_500_naming_it() -> None:
    class Dated(Arith):
        def postprocess(self, result: Any) -> Any:
            return {"double": result, "total": np.array(["2024-01-01"], dtype="datetime64[D]")}

    served = loaded(Dated())
    with pytest.raises(InferenceError, match="Output 'total'"):
        infer(served, tensor("x", X))


# -- batching -----------------------------------------------------------------------------------


def test_concurrent_requests_share_a_predict_and_each_gets_its_own_rows() -> None:
    model = Arith()
    served = loaded(model, options(max_batch_size=64, predict_executor="thread"))
    assert served.batcher is not None
    rng = np.random.default_rng(7)
    inputs = [rng.random((int(n), 3)) for n in (1, 3, 2, 5, 1, 4)]

    async def main() -> list[InferResponse]:
        return await asyncio.gather(
            *(
                served.infer(request("arith", tensor("x", x), id=str(i)), RequestContext("t"))
                for i, x in enumerate(inputs)
            )
        )

    responses = asyncio.run(main())
    for i, (x, response) in enumerate(zip(inputs, responses, strict=True)):
        assert response.id == str(i)
        assert_outputs(response, model.expected(x, ["double", "total"]))
    assert len(model.calls) < len(inputs), "nothing was batched"
    assert sum(len(c) for c in model.calls) == sum(len(x) for x in inputs)


def test_requests_for_different_outputs_are_not_merged_but_all_answered() -> None:
    model = Arith()
    served = loaded(model, options(max_batch_size=64, predict_executor="thread"))
    asks = [["double"], ["total"], ["double"], ["negate", "total"]]
    xs = [X + i for i in range(len(asks))]

    async def main() -> list[InferResponse]:
        return await asyncio.gather(
            *(
                served.infer(request("arith", tensor("x", x), outputs=names), RequestContext("t"))
                for x, names in zip(xs, asks, strict=True)
            )
        )

    for x, names, response in zip(xs, asks, asyncio.run(main()), strict=True):
        assert_outputs(response, model.expected(x, names))


def test_a_failing_row_fails_only_its_own_request_with_the_models_error_mapped() -> None:
    model = Arith()
    served = loaded(model, options(max_batch_size=64, predict_executor="thread"))

    async def main() -> list[Any]:
        return await asyncio.gather(
            served.infer(request("arith", tensor("x", X)), RequestContext("t")),
            served.infer(request("arith", tensor("x", [[666.0, 0, 0]])), RequestContext("t")),
            return_exceptions=True,
        )

    good, bad = asyncio.run(main())
    assert [len(c) for c in model.calls] == [3, 2, 1], "not one batch, then each alone"
    assert_outputs(good, model.expected(X, ["double", "total"]))
    assert isinstance(bad, InferenceError), bad
    assert served.inflight == 0


def test_a_slow_batch_does_not_hold_up_the_requests_behind_it() -> None:
    """With a pool of several threads, a request queued behind a stuck predict runs beside it."""
    model = Arith()
    served = loaded(model, options(max_batch_size=8, predict_executor="thread"))
    assert served.batcher is not None and served.batcher.parallel > 1

    async def main() -> InferResponse:
        model.block()
        stuck = asyncio.ensure_future(
            served.infer(request("arith", tensor("x", X)), RequestContext("t"))
        )
        await model.wait_entered()
        try:
            gate = model._gate
            model._gate = None  # the next predict runs freely; the first still waits
            quick = await asyncio.wait_for(
                served.infer(request("arith", tensor("x", X + 1)), RequestContext("t")), WAIT_S
            )
        finally:
            if gate is not None:
                gate.set()
        await stuck
        return quick

    quick = asyncio.run(main())
    assert_outputs(quick, model.expected(X + 1, ["double", "total"]))


# -- where predict runs -------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [0, 8], ids=["unbatched", "batcher"])
def test_a_limited_request_runs_inline_only_once_predict_proved_fast_with_room(batch: int) -> None:
    """A time limit forces the pool only while predict could outlast it.

    Unproved (no call timed yet) or with little of the limit left, predict
    runs in the pool, where the limit can interrupt the wait; once it has
    proved fast and the limit leaves ample room, inline like any request.
    """
    model = Arith()
    served = loaded(model, options(predict_executor="inline", max_batch_size=batch))
    assert (served.batcher is not None) == bool(batch)

    async def main() -> str:
        def ctx(left_s: float) -> RequestContext:
            return RequestContext("t", deadline=asyncio.get_running_loop().time() + left_s)

        await served.infer(request("arith", tensor("x", X)), ctx(30.0))  # nothing proved yet
        await served.infer(request("arith", tensor("x", X)), RequestContext("t"))
        await served.infer(request("arith", tensor("x", X)), ctx(30.0))  # fast, ample room
        await served.infer(request("arith", tensor("x", X)), ctx(0.005))  # too little left
        return threading.current_thread().name

    loop_thread = asyncio.run(main())
    unproved, unlimited, roomy, tight = model.threads
    assert unproved.startswith("predict"), "an unproved predict ran inline under a limit"
    assert unlimited == loop_thread
    assert roomy == loop_thread, "a proved-fast predict with ample time left went to the pool"
    assert tight.startswith("predict"), "a predict with little time left ran inline"


# -- clients that leave -------------------------------------------------------------------------


def test_a_client_that_leaves_while_queued_in_the_batcher_is_dropped_from_the_batch() -> None:
    model = Arith()
    served = loaded(model, options(max_batch_size=64, predict_executor="thread"))
    first, queued, after = X, X + 100, X + 200

    async def main() -> tuple[InferResponse, InferResponse]:
        model.block()
        running = asyncio.ensure_future(
            served.infer(request("arith", tensor("x", first)), RequestContext("t"))
        )
        await model.wait_entered()
        client = Disconnect()
        leaving = asyncio.ensure_future(
            served.infer(request("arith", tensor("x", queued)), client.context())
        )
        await eventually(lambda: served.inflight == 2, "the second request to queue")
        client.left.set()
        with pytest.raises(ClientDisconnected):
            await leaving
        assert served.inflight == 1
        model.unblock()
        done = await running
        later = await served.infer(request("arith", tensor("x", after)), RequestContext("t"))
        return done, later

    done, later = asyncio.run(main())
    assert_outputs(done, model.expected(first, ["double", "total"]))
    assert_outputs(later, model.expected(after, ["double", "total"]))
    assert [c.tolist() for c in model.calls] == [first.tolist(), after.tolist()]
    assert served.inflight == 0


def test_a_client_that_leaves_while_waiting_for_a_pool_thread_never_runs() -> None:
    model = Arith()
    one_thread = ThreadPoolExecutor(1, thread_name_prefix="predict-one")
    served = loaded(model, options(executor=one_thread, predict_executor="thread"))

    async def main() -> None:
        model.block()
        running = asyncio.ensure_future(
            served.infer(request("arith", tensor("x", X)), RequestContext("t"))
        )
        await model.wait_entered()
        client = Disconnect()
        leaving = asyncio.ensure_future(
            served.infer(request("arith", tensor("x", X + 1)), client.context())
        )
        await eventually(lambda: served.inflight == 2, "the second request to wait")
        client.left.set()
        with pytest.raises(ClientDisconnected):
            await leaving
        model.unblock()
        await running
        # The one thread is free again: anything still queued on it would run now.
        await asyncio.get_running_loop().run_in_executor(one_thread, lambda: None)

    try:
        asyncio.run(main())
    finally:
        one_thread.shutdown()
    assert [c.tolist() for c in model.calls] == [X.tolist()]
    assert served.inflight == 0


def test_a_client_that_stays_gets_its_answer_and_no_watcher_outlives_it() -> None:
    model = Arith()
    served = loaded(model, options(predict_executor="thread"))
    client = Disconnect()

    async def main() -> InferResponse:
        response = await served.infer(request("arith", tensor("x", X)), client.context())
        await asyncio.sleep(0)
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert others == [], f"the disconnect watcher outlived the request: {others}"
        return response

    assert_outputs(asyncio.run(main()), model.expected(X, ["double", "total"]))


# -- in flight, readiness -------------------------------------------------------------------------


def test_inflight_counts_requests_inside_the_pipeline() -> None:
    model = Arith()
    served = loaded(model, options(predict_executor="thread"))

    async def main() -> None:
        model.block()
        tasks = [
            asyncio.ensure_future(
                served.infer(request("arith", tensor("x", X)), RequestContext("t"))
            )
            for _ in range(3)
        ]
        await eventually(lambda: served.inflight == 3, "three requests in flight")
        model.unblock()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert served.inflight == 0


def test_a_model_not_loaded_stopped_or_failed_is_not_ready() -> None:
    pending = ServedModel(Arith(), options())
    with pytest.raises(ModelNotReady, match="arith is not ready"):
        infer(pending, tensor("x", X))
    stopped = loaded(Arith())
    stopped.stop()
    with pytest.raises(ModelNotReady, match="not ready: unloaded"):
        infer(stopped, tensor("x", X))
    assert stopped.inflight == 0

    class Broken(Arith):
        def load(self) -> None:
            raise OSError("weights.bin is truncated")

    failed = ServedModel(Broken(), options())
    with pytest.raises(OSError):
        failed.load()
    assert failed.state is ModelState.FAILED
    with pytest.raises(ModelNotReady, match=r"weights\.bin is truncated") as info:
        infer(failed, tensor("x", X))
    assert info.value.http_status == 503


def test_a_released_model_is_not_ready_either() -> None:
    served = loaded(Arith())
    served.stop()
    served.release()
    assert served.model is None and served.batcher is None
    with pytest.raises(ModelNotReady):
        infer(served, tensor("x", X))
    with pytest.raises(ModelNotReady):
        served.require_model()


# -- metadata ---------------------------------------------------------------------------------


def test_metadata_of_a_ready_model_comes_from_its_output_table() -> None:
    served = loaded(Arith())
    assert served.metadata() == {
        "name": "arith",
        "versions": ["1"],
        "platform": "arith",
        "inputs": [{"name": "x", "datatype": "FP64", "shape": [-1, -1]}],
        "outputs": [
            {"name": "double", "datatype": "FP64", "shape": [-1, -1]},
            {"name": "total", "datatype": "FP64", "shape": [-1]},
            {"name": "negate", "datatype": "FP64", "shape": [-1, -1]},
        ],
        "parameters": {
            "operation": "double",
            "default_outputs": ["double", "total"],
            "explanations": {
                "supported": False,
                "reason": "modelserver computes no per-feature contributions for its models; "
                "only :predict is served",
            },
        },
    }


def test_metadata_leaves_out_outputs_whose_datatype_the_model_does_not_say() -> None:
    class Vague(Arith):
        def load(self) -> None:
            self.outputs = Outputs()
            self.outputs.add("double")
            self.outputs.add("total", "FP64")

    meta = loaded(Vague()).metadata()
    assert [o["name"] for o in meta["outputs"]] == ["total"]
    assert meta["parameters"]["default_outputs"] == ["double", "total"]


def test_metadata_of_a_model_not_ready_gives_its_state_and_reason() -> None:
    pending = ServedModel(Arith(), options())
    meta = pending.metadata()
    assert (meta["state"], meta["inputs"], meta["outputs"]) == ("LOADING", [], [])
    assert "reason" not in meta and "parameters" not in meta

    stopped = loaded(Arith())
    stopped.stop()
    meta = stopped.metadata()
    assert (meta["state"], meta["reason"]) == ("UNAVAILABLE", "unloaded")

    class Broken(Arith):
        def load(self) -> None:
            raise OSError("no weights in \x00\x01 here")

    failed = ServedModel(Broken(), options())
    with pytest.raises(OSError):
        failed.load()
    meta = failed.metadata()
    assert meta["state"] == "FAILED"
    assert meta["reason"] == "no weights in \\x00\\x01 here"

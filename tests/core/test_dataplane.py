"""The data plane and the inference gate in process, over a real repository.

Readiness with draining, the metadata answers kept in step with the
repository, repository operations refused with several workers, inference
through the gate: the concurrency limit, the time limit, and the metrics.
"""

from __future__ import annotations

import asyncio
import threading
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from inproc import Arith, Stack, factory_of, loaded, options, request, stack, tensor
from modelserver import InvalidInput, Model, ModelNotFound, ModelNotReady, __version__
from modelserver.dataplane.context import RequestContext
from modelserver.errors import DeadlineExceeded, ServerBusy
from modelserver.observability.metrics import REGISTRY
from modelserver.types import InferRequest, InferResponse

X = np.array([[1.0, 2.0], [3.0, 4.0]])


class Width(Model):
    """Sums the first ``width`` columns; ``width`` is read from ``model.width`` in its folder."""

    platform = "width"

    def load(self) -> None:
        assert self.model_dir is not None
        self.width = int((self.model_dir / "model.width").read_text())
        self.outputs.add("predict", "FP64", [-1])

    def predict(self, inputs: Any) -> Any:
        return np.asarray(inputs)[:, : self.width].sum(axis=1)

    def inputs_metadata(self) -> list[dict[str, Any]]:
        return [{"name": "x", "datatype": "FP64", "shape": [-1, self.width]}]


def write_width(folder: Path, width: int | str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.width").write_text(str(width))
    return folder


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_width(tmp_path / "a", 1)
    write_width(tmp_path / "b", 2)
    return tmp_path


@pytest.fixture
def widths(root: Path) -> Stack:
    """A data plane over the multi-model folder ``root``, models a and b loaded."""
    factory = factory_of(Width)
    served = [factory(name, root / name) for name in ("a", "b")]
    for model in served:
        model.load()
    return stack(*served, factory=factory, root=root)


def metadata_json(s: Stack, name: str) -> dict[str, Any]:
    """The cached answer, checked against a fresh description of the model."""
    cached = s.dataplane.model_metadata_json(name)
    assert orjson.loads(cached) == s.dataplane.model_metadata(name), "stale metadata"
    return orjson.loads(cached)  # type: ignore[no-any-return]


async def through_gate(
    s: Stack, req: InferRequest, ctx: RequestContext | None = None, **kwargs: Any
) -> InferResponse:
    """One inference as a transport makes it: the gate around the data plane."""
    ctx = ctx if ctx is not None else RequestContext("gate-test")
    return await s.gate.serve(req.model_name, ctx, partial(s.dataplane.infer, req), **kwargs)


def requests_counted(model: str, status: str, protocol: str = "gate-test") -> float:
    labels = {"model": model, "protocol": protocol, "status": status}
    return REGISTRY.get_sample_value("modelserver_requests_total", labels) or 0.0


# -- readiness ------------------------------------------------------------------------------------


def test_ready_needs_models_all_of_them_ready_and_no_draining() -> None:
    assert not stack().dataplane.ready(), "a server with no model is ready"
    a, b = loaded(Arith("a")), loaded(Arith("b"))
    s = stack(a, b)
    assert s.dataplane.ready() and s.dataplane.live()
    assert s.dataplane.model_ready("a") and s.dataplane.model_ready("a", "1")
    b.stop()
    assert not s.dataplane.ready()
    assert s.dataplane.model_ready("a") and not s.dataplane.model_ready("b")
    s.dataplane.draining = True
    assert not s.dataplane.model_ready("a")
    assert s.dataplane.live()


def test_model_ready_of_an_unknown_model_or_version_is_not_found() -> None:
    s = stack(loaded(Arith()))
    with pytest.raises(ModelNotFound, match="Served models: arith"):
        s.dataplane.model_ready("nope")
    with pytest.raises(ModelNotFound, match="version 7"):
        s.dataplane.model_ready("arith", "7")


# -- metadata -----------------------------------------------------------------------------------


def test_server_metadata() -> None:
    s = stack()
    assert orjson.loads(s.dataplane.server_metadata_json) == {
        "name": "inproc",
        "version": __version__,
        "extensions": [
            "binary_tensor_data",
            "model_repository",
            "statistics",
            "model_configuration",
        ],
    }


def test_model_metadata_follows_every_change_of_the_repository(widths: Stack, root: Path) -> None:
    assert metadata_json(widths, "a")["inputs"] == [
        {"name": "x", "datatype": "FP64", "shape": [-1, 1]}
    ]

    write_width(root / "a", 3)
    asyncio.run(widths.dataplane.load("a"))  # reload
    assert metadata_json(widths, "a")["inputs"][0]["shape"] == [-1, 3]

    asyncio.run(widths.dataplane.unload("a"))
    meta = metadata_json(widths, "a")
    assert (meta["state"], meta["reason"], meta["inputs"]) == ("UNAVAILABLE", "unloaded", [])

    write_width(root / "c", 5)
    asyncio.run(widths.dataplane.load("c"))  # a new sub-folder
    assert metadata_json(widths, "c")["inputs"][0]["shape"] == [-1, 5]

    write_width(root / "d", "not a number")
    with pytest.raises(InvalidInput, match="Failed to load model d: invalid literal"):
        asyncio.run(widths.dataplane.load("d"))
    meta = metadata_json(widths, "d")
    assert meta["state"] == "FAILED" and "invalid literal" in meta["reason"]


def test_model_metadata_of_a_model_added_after_the_data_plane_was_made() -> None:
    s = stack()
    s.repository.add(loaded(Arith()))
    assert metadata_json(s, "arith")["platform"] == "arith"
    assert s.dataplane.ready()


def test_a_model_that_fails_to_describe_itself_still_gets_an_answer() -> None:
    class Mute(Arith):
        def inputs_metadata(self) -> list[dict[str, Any]]:
            raise RuntimeError("lost my shapes")

    s = stack(loaded(Mute()))
    meta = orjson.loads(s.dataplane.model_metadata_json("arith"))
    assert meta["reason"] == "metadata unavailable: RuntimeError: lost my shapes"
    assert (meta["name"], meta["versions"], meta["inputs"]) == ("arith", ["1"], [])


def test_model_metadata_of_another_version_is_not_found() -> None:
    s = stack(loaded(Arith()))
    assert orjson.loads(s.dataplane.model_metadata_json("arith", "1"))["name"] == "arith"
    with pytest.raises(ModelNotFound, match="version 2"):
        s.dataplane.model_metadata_json("arith", "2")


# -- repository operations ---------------------------------------------------------------------


def test_with_several_workers_the_repository_cannot_change(widths: Stack, root: Path) -> None:
    widths.dataplane.workers = 2
    write_width(root / "c", 1)
    for operation in (widths.dataplane.load, widths.dataplane.unload):
        for name in ("a", "c"):
            with pytest.raises(InvalidInput, match="with --workers 2") as info:
                asyncio.run(operation(name))
            assert info.value.http_status == 400
    assert list(widths.repository.models) == ["a", "b"]
    assert widths.dataplane.ready()


def test_repository_errors_keep_their_status(widths: Stack) -> None:
    with pytest.raises(ModelNotFound):
        asyncio.run(widths.dataplane.load("missing"))
    with pytest.raises(ModelNotFound):
        asyncio.run(widths.dataplane.unload("missing"))
    with pytest.raises(InvalidInput, match="Invalid model name"):
        asyncio.run(widths.dataplane.load(".."))
    assert widths.dataplane.repository_index() == [
        {"name": "a", "version": "1", "state": "READY"},
        {"name": "b", "version": "1", "state": "READY"},
    ]


# -- inference through the gate ----------------------------------------------------------------


def test_inference_answers_as_the_model_does_and_is_counted() -> None:
    model = Arith()
    s = stack(loaded(model))
    before = requests_counted("arith", "200")
    response = asyncio.run(through_gate(s, request("arith", tensor("x", X), outputs=["total"])))
    (out,) = response.outputs
    np.testing.assert_array_equal(out.data, model.expected(X, ["total"])["total"])
    assert requests_counted("arith", "200") == before + 1


def test_unknown_and_unready_models_are_refused_and_counted() -> None:
    served = loaded(Arith())
    s = stack(served)
    unknown = requests_counted("<unknown>", "404")
    unknown_grpc = requests_counted("<unknown>", "NOT_FOUND")
    with pytest.raises(ModelNotFound):
        asyncio.run(through_gate(s, request("nope", tensor("x", X))))
    with pytest.raises(ModelNotFound):
        asyncio.run(through_gate(s, request("nope", tensor("x", X)), grpc_status=True))
    assert requests_counted("<unknown>", "404") == unknown + 1
    assert requests_counted("<unknown>", "NOT_FOUND") == unknown_grpc + 1

    served.stop()
    not_ready = requests_counted("arith", "503")
    with pytest.raises(ModelNotReady):
        asyncio.run(through_gate(s, request("arith", tensor("x", X))))
    assert requests_counted("arith", "503") == not_ready + 1


def test_past_the_concurrency_limit_requests_are_refused_busy() -> None:
    model = Arith()
    s = stack(loaded(model, options(predict_executor="thread")), max_concurrent=1)

    async def main() -> None:
        model.block()
        first = asyncio.ensure_future(through_gate(s, request("arith", tensor("x", X))))
        await model.wait_entered()
        with pytest.raises(ServerBusy, match="max_concurrent_requests=1") as info:
            await through_gate(s, request("arith", tensor("x", X)))
        assert info.value.http_status == 503
        model.unblock()
        await first
        await through_gate(s, request("arith", tensor("x", X)))  # room again

    asyncio.run(main())
    assert s.policy.inflight == 0
    assert len(model.calls) == 2


def test_past_the_time_limit_the_request_is_answered_504_without_waiting_for_predict() -> None:
    model = Arith()
    served = loaded(model)  # predict inline: the limit must move it to the pool
    s = stack(served, timeout_s=0.05)

    async def main() -> RequestContext:
        model.block()
        ctx = RequestContext("gate-test")
        with pytest.raises(DeadlineExceeded, match=r"timed out after 0\.05s"):
            await through_gate(s, request("arith", tensor("x", X)), ctx)
        assert served.inflight == 0 and s.policy.inflight == 0
        model.unblock()
        return ctx

    ctx = asyncio.run(main())
    assert ctx.limited
    assert model.threads[0] != threading.current_thread().name


def test_a_client_deadline_shorter_than_the_timeout_wins() -> None:
    s = stack(loaded(Arith()), timeout_s=30.0)
    assert s.policy.limit(0.5) == 0.5 and s.policy.limit(None) == 30.0
    assert stack(loaded(Arith())).policy.limit(None) is None

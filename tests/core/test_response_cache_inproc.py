"""The response cache in process: keys, hits that skip the model, bounds, and forgetting.

``Arith`` records every predict and preprocess-free output call, so a hit
is seen not to reach the model. Keys are compared on requests built the way
the codecs build them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from inproc import Arith, factory_of, loaded, options, request, tensor
from modelserver import InferRequest, InvalidInput, RequestedOutput, Tensor
from modelserver.dataplane.context import RequestContext
from modelserver.dataplane.repository import ModelRepository
from modelserver.dataplane.response_cache import (
    INLINE_HASH_BYTES,
    ResponseCache,
    request_key,
)
from modelserver.dataplane.served import ServedModel
from modelserver.types import InferResponse

X = [[1.0, 2.0], [3.0, 4.0]]


def key(req: InferRequest, version: str = "1") -> bytes:
    return request_key(req, version)


def base(**kwargs) -> InferRequest:
    return request("m", tensor("x", X), **kwargs)


# -- keys ---------------------------------------------------------------------------------


def test_the_key_ignores_the_id_and_how_the_data_is_laid_out() -> None:
    assert key(base(id="a")) == key(base(id="b"))
    strided = np.asarray(X).T.copy().T  # same values, Fortran order
    assert not strided.flags.c_contiguous
    assert key(request("m", Tensor("x", "FP64", (2, 2), strided))) == key(base())


@pytest.mark.parametrize(
    "other",
    [
        lambda: request("m", tensor("x", [[1.0, 2.0], [3.0, 4.5]])),
        lambda: request("m", tensor("x", np.asarray(X, np.float32), "FP32")),
        lambda: request("m", tensor("x", np.asarray(X).reshape(4, 1))),
        lambda: request("m", tensor("y", X)),
        lambda: base(outputs=["negate"]),
        lambda: base(outputs=[]),
        lambda: base(parameters={"k": 1}),
        lambda: request("m", Tensor("x", "FP64", (2, 2), np.asarray(X), {"content_type": "np"})),
    ],
    ids=["data", "datatype", "shape", "name", "outputs", "outputs-empty", "parameters", "tensor"],
)
def test_anything_that_may_change_the_answer_changes_the_key(other) -> None:
    assert key(other()) != key(base())


def test_the_model_version_is_part_of_the_key() -> None:
    assert key(base(), "1") != key(base(), "2")


def test_output_parameters_are_part_of_the_key() -> None:
    plain = base(outputs=["double"])
    asked = base()
    asked.outputs = [RequestedOutput("double", {"classification": 2})]
    assert key(plain) != key(asked)


def test_how_the_bytes_travel_is_not_part_of_the_key() -> None:
    """The binary extension's and shared memory's parameters: one entry for every transport."""
    plain = base(outputs=["double"])
    binary = base(outputs=["double"], parameters={"binary_data_output": True})
    assert binary.outputs is not None
    binary.outputs[0].parameters = {"binary_data": True, "shared_memory_region": "out"}
    shared = request(
        "m", Tensor("x", "FP64", (2, 2), np.asarray(X), {"shared_memory_region": "in"})
    )
    shared.outputs = [RequestedOutput("double")]
    assert key(plain) == key(binary) == key(shared)


def _text(*values: object) -> InferRequest:
    data = np.empty(len(values), dtype=object)
    data[:] = values
    return request("m", Tensor("t", "BYTES", (len(values),), data))


def test_bytes_elements_are_told_apart_by_their_boundaries_and_kind() -> None:
    assert key(_text(b"ab", b"c")) != key(_text(b"a", b"bc"))
    assert key(_text("ab")) != key(_text(b"ab"))
    assert key(_text(b"ab", b"c")) == key(_text(b"ab", b"c"))


# -- hits and misses -------------------------------------------------------------------------


def cached(model: Arith, **limits: int) -> ServedModel:
    cache = ResponseCache(limits.get("entries", 100), limits.get("bytes", 1 << 20))
    return loaded(model, options(cache=cache))


def infer(served: ServedModel, req: InferRequest) -> InferResponse:
    return asyncio.run(served.infer(req, RequestContext("test")))


def test_an_identical_request_is_answered_without_the_model() -> None:
    model = Arith("cache-hit")
    served = cached(model)
    first = infer(served, base(id="one"))
    second = infer(served, base(id="two"))
    assert len(model.calls) == 1
    assert second.id == "two" and first.id == "one"
    assert [t.name for t in second.outputs] == [t.name for t in first.outputs]
    for got, want in zip(second.outputs, first.outputs, strict=True):
        np.testing.assert_array_equal(got.data, want.data)
        assert (got.datatype, got.shape) == (want.datatype, want.shape)
    infer(served, base(outputs=["negate"]))
    assert len(model.negations) == 1 and len(model.calls) == 1  # another key: computed
    stats = served.stats.json("cache-hit", "1")
    assert stats["inference_count"] == 4  # the two computed requests' rows, not the hit's
    assert stats["inference_stats"]["success"]["count"] == 3
    assert stats["inference_stats"]["cache_hit"]["count"] == 1
    assert stats["inference_stats"]["cache_miss"]["count"] == 2


def test_hits_and_misses_are_counted_in_metrics() -> None:
    served = cached(Arith("cache-metrics"))
    counters = served.cache_counters
    assert counters is not None
    for _ in range(3):
        infer(served, base())
    assert counters.hits._value.get() == 2
    assert counters.misses._value.get() == 1


def test_what_one_answer_gets_never_reaches_the_kept_one() -> None:
    served = cached(Arith("cache-isolated"))
    first = infer(served, base())
    first.outputs[0].parameters["shared_memory_region"] = "mine"
    hit = infer(served, base())
    assert hit.outputs[0].parameters == {}
    assert not hit.outputs[0].data.flags.writeable
    with pytest.raises(ValueError):
        hit.outputs[0].data[0, 0] = 99.0


def test_errors_are_never_kept() -> None:
    model = Arith("cache-errors")
    served = cached(model)
    bad = request("cache-errors", tensor("x", [[np.nan]]))
    for _ in range(2):
        with pytest.raises(InvalidInput):
            infer(served, bad)
    assert len(model.calls) == 2
    assert len(served.options.cache or ()) == 0


def test_large_inputs_are_hashed_off_the_loop_and_still_hit() -> None:
    model = Arith("cache-large")
    served = cached(model, bytes=64 << 20)
    big = np.linspace(0.0, 1.0, INLINE_HASH_BYTES // 8 + 8).reshape(-1, 8)
    for _ in range(2):
        infer(served, request("cache-large", tensor("x", big)))
    assert len(model.calls) == 1


# -- bounds --------------------------------------------------------------------------------------


def test_the_least_recently_used_answer_goes_first_when_entries_run_out() -> None:
    model = Arith("cache-lru")
    served = cached(model, entries=2)
    rows = {n: request("cache-lru", tensor("x", [[float(n)]])) for n in range(3)}
    infer(served, rows[0])
    infer(served, rows[1])
    infer(served, rows[0])  # a hit: 0 is now the most recent
    infer(served, rows[2])  # evicts 1
    assert len(model.calls) == 3
    infer(served, rows[0])
    assert len(model.calls) == 3
    infer(served, rows[1])
    assert len(model.calls) == 4


def test_the_byte_bound_evicts_and_an_answer_larger_than_it_is_not_kept() -> None:
    cache = ResponseCache(100, 4096)
    response = InferResponse("m", [tensor("y", np.zeros(256))])  # 2 KiB of data
    cache.put("m", b"a", response)
    cache.put("m", b"b", response)  # over 4 KiB with the overheads: evicts a
    assert cache.get("m", b"a") is None and cache.get("m", b"b") is not None
    assert cache.size <= 4096
    cache.put("m", b"c", InferResponse("m", [tensor("y", np.zeros(1024))]))  # 8 KiB
    assert cache.get("m", b"c") is None and len(cache) == 1


# -- forgetting on reload and unload ---------------------------------------------------------------


def test_reload_and_unload_forget_the_model_and_only_that_model(tmp_path: Path) -> None:
    cache = ResponseCache(100, 1 << 20)
    opts = options(cache=cache)
    repository = ModelRepository(factory_of(Arith, opts))
    for name in ("kept", "changed"):
        (tmp_path / name).mkdir()
        repository.add(loaded(Arith(name, tmp_path / name), opts))

    def ask(name: str) -> None:
        asyncio.run(repository.get(name).infer(request(name, tensor("x", X)), RequestContext("t")))

    ask("kept")
    ask("changed")
    assert len(cache) == 2
    asyncio.run(repository.load("changed"))  # a reload swaps a new instance in
    assert len(cache) == 1 and cache.drop("kept") == 1
    ask("kept")
    ask("changed")
    fresh = repository.get("changed").require_model()
    assert isinstance(fresh, Arith) and len(fresh.calls) == 1  # computed again after the reload
    asyncio.run(repository.unload("changed"))
    assert len(cache) == 1  # only "kept" remains


def test_an_instance_stopped_while_computing_keeps_nothing() -> None:
    cache = ResponseCache(100, 1 << 20)
    model = Arith("cache-stopped")
    served = loaded(model, options(cache=cache, predict_executor="thread"))

    async def main() -> None:
        model.block()
        running = asyncio.ensure_future(served.infer(base(), RequestContext("t")))
        await model.wait_entered()
        served.stop()
        model.unblock()
        await running

    asyncio.run(main())
    assert len(cache) == 0

"""Batching changes how predict is called, never what a request gets back.

Hypothesis draws mixes of requests (row counts, widths, dtypes, outputs asked
for, a row that makes the model fail) arriving in waves of concurrent and
one-at-a-time requests, under any batch size and wherever predict runs; each
answer must be exactly the answer of the same request to the same model
served without batching, an error of the same kind included.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from inproc import Arith, loaded, options, request, tensor
from modelserver.dataplane.context import RequestContext
from modelserver.dataplane.served import ServedModel
from modelserver.errors import ModelServerError

OUTPUTS = ["double", "total", "negate"]


@st.composite
def requests(draw: st.DrawFn) -> tuple[np.ndarray, list[str] | None]:
    rows = draw(st.integers(1, 4))
    width = draw(st.sampled_from([2, 3]))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    values = draw(st.lists(st.integers(-50, 50), min_size=rows * width, max_size=rows * width))
    x = np.array(values, dtype=dtype).reshape(rows, width)
    if draw(st.integers(0, 9)) == 0:
        x[draw(st.integers(0, rows - 1)), 0] = 666  # this request's predict fails
    asked = draw(st.one_of(st.none(), st.lists(st.sampled_from(OUTPUTS), min_size=1, max_size=3)))
    return x, asked


def answer(result: Any) -> Any:
    """What a client sees: the outputs by name, or the kind of error."""
    if isinstance(result, ModelServerError):
        return type(result).__name__
    if isinstance(result, BaseException):
        raise result
    return [(t.name, t.datatype, t.shape, t.data.tolist()) for t in result.outputs]


async def serve(served: ServedModel, waves: list[list[tuple[np.ndarray, Any]]]) -> list[Any]:
    """Each wave's requests at once (one alone is a client at c=1), waves one after another."""
    out: list[Any] = []
    for wave in waves:
        out += await asyncio.gather(
            *(
                served.infer(request("arith", tensor("x", x), outputs=asked), RequestContext("t"))
                for x, asked in wave
            ),
            return_exceptions=True,
        )
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    waves=st.lists(st.lists(requests(), min_size=1, max_size=8), min_size=1, max_size=8),
    max_batch_size=st.integers(1, 12),
    executor=st.sampled_from(["inline", "thread", "auto"]),
)
def test_every_request_gets_what_an_unbatched_predict_gives(
    waves: list[list[tuple[np.ndarray, Any]]], max_batch_size: int, executor: str
) -> None:
    batched = loaded(Arith(), options(max_batch_size=max_batch_size, predict_executor=executor))
    plain = loaded(Arith(), options(max_batch_size=0, predict_executor=executor))
    assert batched.batcher is not None and plain.batcher is None
    got = [answer(r) for r in asyncio.run(serve(batched, waves))]
    want = [answer(r) for r in asyncio.run(serve(plain, waves))]
    assert got == want
    assert batched.inflight == 0

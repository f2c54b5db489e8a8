"""The Batcher on its own: who is merged with whom, and who gets which rows back."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pandas as pd
import pytest
from modelserver.dataplane.batching import PROBE_EVERY, SOLO_AFTER, Batcher, batch_key


class Recorder:
    """A model's compute: doubles the rows, remembers each batch it was given."""

    def __init__(self, fail_on: float | None = None, delay: float = 0.0) -> None:
        self.batches: list[Any] = []
        self.fail_on = fail_on
        self.delay = delay

    def compute(self, inputs: Any, names: list[str]) -> dict[str, Any]:
        self.batches.append(inputs)
        values = (
            np.asarray(inputs, dtype=float)
            if not isinstance(inputs, pd.DataFrame)
            else inputs.to_numpy(float)
        )
        if self.fail_on is not None and (values == self.fail_on).any():
            raise ValueError("poison row")
        return {name: values * (i + 2) for i, name in enumerate(names)}


async def run_inline(fn: Any, *args: Any, deadline: float | None = None) -> tuple[Any, int, int]:
    """The runner's contract: the result with its start and end times."""
    await asyncio.sleep(0.01)  # a predict that takes a while lets others queue
    return fn(*args), 1, 2


async def submit_all(batcher: Batcher, requests: list[tuple[Any, list[str]]]) -> list[Any]:
    """Each request's outputs (or its exception); checks the predict timing came along."""
    results = await asyncio.gather(
        *(batcher.submit(x, names, batch_key(x, names)) for x, names in requests),
        return_exceptions=True,
    )
    outputs = []
    for result in results:
        if isinstance(result, BaseException):
            outputs.append(result)
        else:
            assert result[1:] == (1, 2)
            outputs.append(list(result[0].items()))
    return outputs


def test_each_request_gets_exactly_its_rows_in_order() -> None:
    recorder = Recorder()
    rng = np.random.default_rng(0)
    requests = [(rng.random((int(n), 4)), ["predict"]) for n in rng.integers(1, 7, size=40)]

    async def main() -> list[Any]:
        batcher = Batcher("m", recorder.compute, run_inline, max_batch_size=64)
        return await submit_all(batcher, requests)

    results = asyncio.run(main())
    for (x, _), result in zip(requests, results, strict=True):
        ((name, value),) = result
        assert name == "predict"
        np.testing.assert_array_equal(value, x * 2)
    assert len(recorder.batches) < len(requests), "nothing was merged"
    assert all(len(b) <= 64 for b in recorder.batches)


def test_batches_respect_max_rows_but_never_split_a_request() -> None:
    recorder = Recorder()
    requests = [(np.full((5, 2), i, dtype=float), ["predict"]) for i in range(6)]
    requests.append((np.full((20, 2), 99.0), ["predict"]))

    async def main() -> list[Any]:
        batcher = Batcher("m", recorder.compute, run_inline, max_batch_size=10)
        return await submit_all(batcher, requests)

    results = asyncio.run(main())
    # the 20 rows could join nothing: they ran at once, on their own
    assert [len(b) for b in recorder.batches] == [20, 10, 10, 10]
    np.testing.assert_array_equal(results[-1][0][1], np.full((20, 2), 198.0))


def test_different_width_dtype_or_outputs_are_not_merged() -> None:
    recorder = Recorder()
    requests = [
        (np.ones((1, 4)), ["predict"]),
        (np.ones((1, 3)), ["predict"]),
        (np.ones((1, 4), dtype=np.float32), ["predict"]),
        (np.ones((1, 4)), ["predict", "proba"]),
        (np.ones((2, 4)), ["predict"]),
    ]

    async def main() -> list[Any]:
        batcher = Batcher("m", recorder.compute, run_inline, max_batch_size=64, max_delay_s=0.05)
        return await submit_all(batcher, requests)

    results = asyncio.run(main())
    layouts = sorted((b.shape, b.dtype.str) for b in recorder.batches)
    assert layouts == sorted([((3, 4), "<f8"), ((1, 3), "<f8"), ((1, 4), "<f4"), ((1, 4), "<f8")])
    assert [name for name, _ in results[3]] == ["predict", "proba"]
    np.testing.assert_array_equal(results[3][1][1], np.ones((1, 4)) * 3)


def test_a_failing_batch_is_rerun_alone_so_only_the_failing_request_fails() -> None:
    recorder = Recorder(fail_on=-1.0)
    good_wide = [(np.ones((1, 3)), ["predict"]) for _ in range(3)]
    good = (np.ones((1, 4)), ["predict"])
    poisoned = (np.full((1, 4), -1.0), ["predict"])

    async def main() -> list[Any]:
        batcher = Batcher("m", recorder.compute, run_inline, max_batch_size=64, max_delay_s=0.05)
        return await submit_all(batcher, [good, poisoned, *good_wide])

    results = asyncio.run(main())
    np.testing.assert_array_equal(results[0][0][1], np.ones((1, 4)) * 2)
    assert isinstance(results[1], ValueError)
    for r in results[2:]:
        np.testing.assert_array_equal(r[0][1], np.ones((1, 3)) * 2)
    # the poisoned batch ran once together, then each of its two requests alone
    assert sorted(len(b) for b in recorder.batches) == [1, 1, 2, 3]


def test_outputs_without_one_row_per_input_row_turn_batching_off() -> None:
    calls: list[int] = []

    def compute(inputs: Any, names: list[str]) -> dict[str, Any]:
        calls.append(len(inputs))
        return {"predict": np.array(float(inputs.sum()))}  # one value per call, not per row

    async def main() -> tuple[Batcher, list[Any], list[Any]]:
        batcher = Batcher("m", compute, run_inline, max_batch_size=8)
        first = await submit_all(batcher, [(np.ones((2, 2)), ["predict"])] * 3)
        later = await submit_all(batcher, [(np.ones((1, 2)), ["predict"])] * 3)
        return batcher, first, later

    batcher, first, later = asyncio.run(main())
    assert batcher.disabled
    # every request still gets what predict gives it alone
    assert [r[0][1] for r in first] == [4.0] * 3
    assert [r[0][1] for r in later] == [2.0] * 3
    assert calls == [6, 2, 2, 2, 1, 1, 1]


def test_dataframes_batch_by_columns() -> None:
    recorder = Recorder()
    frames = [pd.DataFrame({"a": [float(i)], "b": [1.0]}) for i in range(5)]
    other = pd.DataFrame({"a": [1.0], "c": [1.0]})

    async def main() -> list[Any]:
        batcher = Batcher("m", recorder.compute, run_inline, max_batch_size=64, max_delay_s=0.05)
        return await submit_all(batcher, [(f, ["predict"]) for f in [*frames, other]])

    results = asyncio.run(main())
    for i, r in enumerate(results[:5]):
        np.testing.assert_array_equal(r[0][1], [[2.0 * i, 2.0]])
    assert sorted(len(b) for b in recorder.batches) == [1, 5]


def test_observer_sees_every_batch() -> None:
    seen: list[tuple[int, int]] = []
    recorder = Recorder()

    async def main() -> None:
        batcher = Batcher(
            "m",
            recorder.compute,
            run_inline,
            max_batch_size=64,
            observe=lambda n, r: seen.append((n, r)),
        )
        await submit_all(batcher, [(np.ones((2, 2)), ["predict"])] * 10)

    asyncio.run(main())
    assert sum(n for n, _ in seen) == 10
    assert sum(r for _, r in seen) == 20


def test_zero_batch_size_is_refused() -> None:
    with pytest.raises(ValueError):
        Batcher("m", Recorder().compute, run_inline, max_batch_size=0)


#: The task each ``run_now`` call ran in (the queue's worker is ``batcher-<model>``).
WHERE: list[str] = []


async def run_now(fn: Any, *args: Any, deadline: float | None = None) -> tuple[Any, int, int]:
    """An inline predict: returns without giving the loop a turn; notes where it ran."""
    task = asyncio.current_task()
    WHERE.append(task.get_name() if task is not None else "")
    return fn(*args), 1, 2


def test_requests_one_at_a_time_run_alone_without_the_queue() -> None:
    """At c=1 batching costs nothing: after a few batches of one, requests run at once.

    Only every PROBE_EVERY-th still takes the queue's turn of the loop, to
    notice when requests start to overlap.
    """
    WHERE.clear()

    async def main() -> list[Any]:
        batcher = Batcher("m", Recorder().compute, run_now, max_batch_size=32)
        x = np.ones((1, 4))
        return [await batcher.submit(x, ["predict"], batch_key(x, ["predict"])) for _ in range(80)]

    results = asyncio.run(main())
    assert all(np.array_equal(r[0]["predict"], np.ones((1, 4)) * 2) for r in results)
    queued = WHERE.count("batcher-m")
    assert queued <= SOLO_AFTER + 80 // PROBE_EVERY, WHERE
    assert len(WHERE) - queued >= 80 - SOLO_AFTER - 80 // PROBE_EVERY


def test_concurrent_requests_batch_again_after_a_quiet_spell() -> None:
    recorder = Recorder()

    async def main() -> None:
        batcher = Batcher("m", recorder.compute, run_now, max_batch_size=32)
        x = np.ones((1, 4))
        key = batch_key(x, ["predict"])
        for _ in range(20):  # one at a time: solo
            await batcher.submit(x, ["predict"], key)
        recorder.batches.clear()
        # at most PROBE_EVERY run alone before one queues and the rest join it
        n = PROBE_EVERY + 24
        await asyncio.gather(*(batcher.submit(x, ["predict"], key) for _ in range(n)))

    asyncio.run(main())
    sizes = [len(b) for b in recorder.batches]
    assert sum(sizes) == PROBE_EVERY + 24
    assert max(sizes) >= 24, sizes

"""Where predict runs: the adaptive runner's moves between the pool and inline."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from modelserver.dataplane.execution import FAST_STREAK, PredictRunner


def where() -> str:
    return threading.current_thread().name


def test_starts_in_the_pool_goes_inline_when_fast_and_back_when_blocking() -> None:
    async def main() -> list[str]:
        loop_thread = where()
        runner = PredictRunner(ThreadPoolExecutor(2, thread_name_prefix="pool"), "auto")
        seen = []
        for _ in range(FAST_STREAK):
            result, start, end = await runner.run(where)
            assert start <= end
            seen.append("pool" if result != loop_thread else "loop")
        assert runner.inline
        result, _, _ = await runner.run(where)
        seen.append("pool" if result != loop_thread else "loop")
        await runner.run(time.sleep, 0.1)  # clearly blocking: back to the pool at once
        assert not runner.inline
        result, _, _ = await runner.run(where)
        seen.append("pool" if result != loop_thread else "loop")
        return seen

    seen = asyncio.run(main())
    assert seen[:FAST_STREAK] == ["pool"] * FAST_STREAK
    assert seen[FAST_STREAK:] == ["loop", "pool"]


@pytest.mark.parametrize(("mode", "expected"), [("inline", "loop"), ("thread", "pool")])
def test_forced_modes_never_move(mode: str, expected: str) -> None:
    async def main() -> set[str]:
        loop_thread = where()
        runner = PredictRunner(ThreadPoolExecutor(1), mode)
        places = set()
        for i in range(FAST_STREAK + 3):
            result, _, _ = await runner.run(
                lambda i=i: (time.sleep(0.03 if i == 2 else 0), where())[1]
            )
            places.add("loop" if result == loop_thread else "pool")
        return places

    assert asyncio.run(main()) == {expected}


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError):
        PredictRunner(None, "sometimes")

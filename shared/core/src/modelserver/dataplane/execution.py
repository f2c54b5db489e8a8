"""Where a model's predict runs: inline on the event loop, or in a thread pool.

Inline is cheapest (no thread hop) but a slow predict would stall every other
request and the health probes. The adaptive runner starts in the pool, and
only once predict has proved fast (a run of calls under the threshold) does it
run inline; an inline call far over the threshold, or a few in a row over it,
send it back to the pool.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

#: Consecutive fast calls in the pool before predict may run inline.
FAST_STREAK = 16
#: Consecutive slow inline calls that send predict back to the pool. One call
#: is not enough: on a busy core a fast predict is sometimes preempted.
SLOW_STREAK = 3
#: An inline call this many times over the threshold goes back at once (a
#: predict that really blocks, e.g. sleeps, must not get three chances).
BLOCKING_FACTOR = 10


def _timed(fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Any, int, int]:
    start = time.time_ns()
    result = fn(*args)
    return result, start, time.time_ns()


class PredictRunner:
    """Runs predict calls in the mode chosen by ``--predict_executor``.

    ``mode`` is ``auto`` (adaptive, the default), ``inline`` or ``thread``.
    """

    def __init__(self, executor: Executor | None, mode: str = "auto", threshold_s: float = 0.002):
        if mode not in ("auto", "inline", "thread"):
            raise ValueError(f"unknown predict executor mode {mode!r}")
        self.executor = executor
        self.mode = mode
        self.threshold_ns = int(threshold_s * 1e9)
        self.inline = mode == "inline"
        self._fast = 0
        self._slow = 0

    async def run(
        self, fn: Callable[..., Any], *args: Any, pool: bool = False
    ) -> tuple[Any, int, int]:
        """``fn(*args)`` with its start and end (epoch nanoseconds) for metrics and traces.

        ``pool`` forces the thread pool for this call (a request with a time
        limit must not run where the limit cannot interrupt it).
        """
        if self.inline and not (pool and self.executor is not None):
            timed = _timed(fn, args)
            if self.mode == "auto":
                elapsed = timed[2] - timed[1]
                if elapsed <= self.threshold_ns:
                    self._slow = 0
                else:
                    self._slow += 1
                    if self._slow >= SLOW_STREAK or elapsed > BLOCKING_FACTOR * self.threshold_ns:
                        self.inline = False
                        self._fast = 0
                        self._slow = 0
            return timed
        loop = asyncio.get_running_loop()
        timed = await loop.run_in_executor(self.executor, _timed, fn, args)
        if self.mode == "auto":
            if timed[2] - timed[1] <= self.threshold_ns:
                self._fast += 1
                if self._fast >= FAST_STREAK:
                    self.inline = True
            else:
                self._fast = 0
        return timed

"""Where a model's predict runs: inline on the event loop, or in a thread pool.

Inline is cheapest (no thread hop) but a slow predict would stall every other
request and the health probes. The adaptive runner starts in the pool, and
only once predict has proved fast (a run of calls under the threshold) does it
run inline; an inline call far over the threshold, or a few in a row over it,
send it back to the pool.

A request with a time limit (``--request_timeout``, a gRPC client's deadline)
runs inline too when predict has proved fast and what is left of its limit is
many times the slowest recent call: then the limit cannot run out during the
call, and the thread hop would only cost time. Otherwise it runs in the pool,
where the limit can interrupt the wait.
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
#: An inline call under a time limit needs this many times the slowest recent
#: inline call (and at least ``BLOCKING_FACTOR`` thresholds) left of the limit.
HEADROOM = 10


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
        #: The slowest of the recent calls (decays by half each call), in ns;
        #: -1 until a call was timed (nothing proved yet).
        self._slowest_ns = -1
        #: The least left of a time limit that still lets a call run inline, in s.
        self._floor_s = BLOCKING_FACTOR * threshold_s

    def inline_for(self, deadline: float | None) -> bool:
        """Whether a call now, for a request with this deadline (loop time), runs inline."""
        if not self.inline:
            return False
        if deadline is None or self.executor is None:
            return True
        if self._slowest_ns < 0:
            return False
        left = deadline - asyncio.get_running_loop().time()
        return left > self._floor_s and left * 1e9 > HEADROOM * self._slowest_ns

    async def run(
        self, fn: Callable[..., Any], *args: Any, deadline: float | None = None
    ) -> tuple[Any, int, int]:
        """``fn(*args)`` with its start and end (epoch nanoseconds) for metrics and traces.

        ``deadline`` (event-loop time) is the request's time limit: the call
        runs inline only if predict is proved fast enough to end well before it.
        """
        if self.inline_for(deadline):
            timed = _timed(fn, args)
            elapsed = timed[2] - timed[1]
            self._slowest_ns = max(elapsed, self._slowest_ns >> 1)
            if self.mode == "auto":
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
        self._slowest_ns = max(timed[2] - timed[1], self._slowest_ns >> 1)
        if self.mode == "auto":
            if timed[2] - timed[1] <= self.threshold_ns:
                self._fast += 1
                if self._fast >= FAST_STREAK:
                    self.inline = True
            else:
                self._fast = 0
        return timed

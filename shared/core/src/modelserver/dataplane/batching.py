"""Adaptive batching: concurrent requests to one model share a predict call.

A model's predict usually costs the same for one row as for dozens (sklearn's
is about 120 µs either way), so at concurrency the per-call cost, not the
rows, is what limits throughput. Requests queue per model; one batch runs at a
time; when it finishes, everything compatible that queued meanwhile (same
column layout and dtype, same outputs, up to ``max_batch_size`` rows) becomes
the next batch, waiting up to ``max_delay_s`` for more only if a delay is
configured.

On by default, so it must cost nothing when requests come one at a time: a
request that finds nothing queued and nothing running runs alone at once,
like an unbatched predict, once the last few batches held one request each
("solo"). Every ``PROBE_EVERY``-th such request still takes one turn of the
event loop to see whether others are waiting (requests whose bytes arrived
in the same poll); if they are, batching resumes. A request of
``max_batch_size`` rows or more, which nothing could join, always runs alone.
One batch runs at a time, unless requests wait ``STALL_S`` behind a predict
still running (a slow one, in the pool): then another starts beside it, up to
the pool's threads.

Each request gets exactly its own rows of every output back, the answer an
unbatched predict would give: a batch that fails is run again one request at
a time, so only a request that fails alone fails; a model whose outputs do
not have one row per input row cannot batch, and is never batched again.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InferenceError
from ..model.tabular import is_frame

logger = logging.getLogger(__name__)

Compute = Callable[[Any, list[str]], Mapping[str, Any]]
#: A request's outputs, with the batch's predict start and end (epoch ns).
Batched = tuple[Mapping[str, Any], int, int]
Runner = Callable[..., Any]


def batch_key(inputs: Any, names: list[str]) -> Hashable | None:
    """What must match for two requests to share a batch; None if not batchable.

    Arrays: rank, trailing dimensions and dtype. DataFrames: column names and
    dtypes. Named tensors (a graph model's ``{name: array}``): each name's
    trailing dimensions and dtype, all with the same row count. Object
    (string) arrays are batchable like any other dtype.
    """
    if isinstance(inputs, dict):
        arrays = list(inputs.values())
        if not arrays or any(a.ndim < 1 or a.shape[0] != arrays[0].shape[0] for a in arrays):
            return None
        layout = tuple((n, a.dtype.str, a.shape[1:]) for n, a in inputs.items())
        return ("feeds", layout, tuple(names))
    if isinstance(inputs, np.ndarray):
        if inputs.ndim < 1:
            return None
        return ("array", inputs.dtype.str, inputs.shape[1:], tuple(names))
    columns = getattr(inputs, "columns", None)
    dtypes = getattr(inputs, "dtypes", None)
    if columns is not None and dtypes is not None:
        return ("frame", tuple(map(str, columns)), tuple(map(str, dtypes)), tuple(names))
    return None


def _rows(inputs: Any) -> int:
    if isinstance(inputs, dict):
        return int(next(iter(inputs.values())).shape[0])
    return int(inputs.shape[0])


def rows_of(inputs: Any) -> int:
    """How many inferences a model input holds (its first dimension; 1 when it has none)."""
    try:
        return _rows(inputs)
    except (AttributeError, IndexError, StopIteration, TypeError):
        return 1


def _concat(parts: list[Any]) -> Any:
    if len(parts) == 1:
        return parts[0]
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts, axis=0)
    if isinstance(parts[0], dict):
        return {name: np.concatenate([p[name] for p in parts], axis=0) for name in parts[0]}
    import pandas as pd

    return pd.concat(parts, ignore_index=True)


@dataclass(slots=True)
class _Pending:
    key: Hashable
    inputs: Any
    rows: int
    future: asyncio.Future[Batched] = field(repr=False)
    #: The request's time limit (event-loop time): its batch runs within the earliest.
    deadline: float | None = None


#: Batches of one request in a row before requests that find the queue idle run at once.
SOLO_AFTER = 4
#: While solo, every this many requests one still queues, to notice concurrency.
PROBE_EVERY = 64
#: A request queued this long behind a predict still running (a slow one, in the
#: pool) gets another batch started beside it, up to ``parallel`` at once.
STALL_S = 0.01


class Batcher:
    """The batching queue of one model."""

    def __init__(
        self,
        model_name: str,
        compute: Compute,
        run: Runner,
        max_batch_size: int,
        max_delay_s: float = 0.0,
        observe: Callable[[int, int], None] | None = None,
        executed: Callable[[int, int, int], None] | None = None,
        parallel: int = 1,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self.model_name = model_name
        self.compute = compute
        self.run = run
        self.max_batch_size = max_batch_size
        self.max_delay_s = max(0.0, max_delay_s)
        self.observe = observe
        #: Told each batch that ran: its rows, its predict's start and end (epoch ns).
        self.executed = executed
        #: Set when the model's outputs proved it cannot batch: every request runs alone.
        self.disabled = False
        self._queue: deque[_Pending] = deque()
        self._arrived = asyncio.Event()
        #: Batches that may run at once (the predict pool's threads): a slow
        #: batch does not hold up every request behind it.
        self.parallel = max(1, parallel)
        #: The tasks taking batches off the queue (one, more while one stalls).
        self._workers: set[asyncio.Task[None]] = set()
        #: A check for a stalled queue is scheduled.
        self._watching = False
        #: Requests running alone (outside the queue) right now.
        self._alone = 0
        #: Batches of one request in a row (reset by any batch of more).
        self._single = 0
        #: Requests since the last probe, while solo.
        self._since_probe = 0

    async def submit(
        self, inputs: Any, names: list[str], key: Hashable, deadline: float | None = None
    ) -> Batched:
        """Queue one request's inputs; its own slice of the batch's outputs comes back.

        Cancelling the wait (a client that left) takes the request out of any
        batch not yet started. ``deadline``: the request's time limit, so the
        batch it joins runs inline only if it can end well before it.
        """
        rows = _rows(inputs)
        if self.alone(rows):
            return await self.run_alone(inputs, names, deadline, rows)
        return await self.enqueue(inputs, names, key, deadline, rows)

    def alone(self, rows: int) -> bool:
        """Whether a request of ``rows`` runs on its own, now, rather than queue.

        So it does when batching is off for this model, when nothing could
        join it (``max_batch_size`` rows or more), and while solo when
        nothing waits or runs (but for every ``PROBE_EVERY``-th request).
        """
        if self.disabled or rows >= self.max_batch_size:
            return True
        if self._single < SOLO_AFTER or self._queue or self._alone or self._workers:
            return False
        self._since_probe += 1
        if self._since_probe < PROBE_EVERY:
            return True
        self._since_probe = 0
        return False

    async def run_alone(
        self, inputs: Any, names: list[str], deadline: float | None, rows: int
    ) -> Batched:
        """One request's predict, now (see ``alone``); requests arriving meanwhile queue.

        Observed as a batch of one, as a request that queued alone is: the batch
        metrics count every request the batcher answered.
        """
        if self.observe is not None:
            self.observe(1, rows)
        self._alone += 1
        try:
            return await self._alone_call(inputs, names, deadline, rows)
        finally:
            self._alone -= 1
            if self._queue:
                self._wake(asyncio.get_running_loop())

    async def enqueue(
        self, inputs: Any, names: list[str], key: Hashable, deadline: float | None, rows: int
    ) -> Batched:
        """Queue a request for the next batch; its own slice of the outputs comes back."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Batched] = loop.create_future()
        self._queue.append(_Pending(key, inputs, rows, future, deadline))
        self._arrived.set()
        self._wake(loop)
        return await future

    def _wake(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start a worker for the queue, or, while a predict runs, check back if it stalls."""
        if not self._queue:
            return
        if not self._workers and not self._alone:
            self._start_worker(loop)
        elif self.parallel > 1 and not self._watching:
            self._watching = True
            loop.call_later(STALL_S, self._stalled, loop)

    def _stalled(self, loop: asyncio.AbstractEventLoop) -> None:
        """Requests still wait ``STALL_S`` later: start a batch beside the running one(s)."""
        self._watching = False
        busy = len(self._workers) + self._alone
        if self._queue and busy < self.parallel:
            self._start_worker(loop)

    def _start_worker(self, loop: asyncio.AbstractEventLoop) -> None:
        self._workers.add(loop.create_task(self._serve(), name=f"batcher-{self.model_name}"))

    async def _alone_call(
        self, inputs: Any, names: list[str], deadline: float | None, rows: int
    ) -> Batched:
        """One request's predict on its own (not counted as a batch)."""
        results, start_ns, end_ns = await self.run(self.compute, inputs, names, deadline=deadline)
        if self.executed is not None:
            self.executed(rows, start_ns, end_ns)
        return results, start_ns, end_ns

    async def _serve(self) -> None:
        try:
            while self._queue:
                # One turn of the loop first: requests whose bytes arrived in the
                # same poll (gRPC hands them over one task at a time) join in.
                await asyncio.sleep(0)
                if not self._queue:
                    break
                batch = await self._collect()
                if batch:
                    self._single = self._single + 1 if len(batch) == 1 else 0
                    await self._execute(batch)
        finally:
            # At once (a done callback would come a turn late and miss a wake-up).
            task = asyncio.current_task()
            if task is not None:
                self._workers.discard(task)

    async def _collect(self) -> list[_Pending]:
        """Take the head of the queue and every compatible request behind it."""
        queue = self._queue
        first = queue.popleft()
        if first.future.done():  # the client went away
            return []
        batch, rows, skipped = [first], first.rows, []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_delay_s
        while rows < self.max_batch_size:
            if not queue:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except TimeoutError:
                    break
                continue
            item = queue.popleft()
            if item.future.done():
                continue
            if item.key != first.key or rows + item.rows > self.max_batch_size:
                skipped.append(item)
                continue
            batch.append(item)
            rows += item.rows
        queue.extendleft(reversed(skipped))
        return batch

    async def _execute(self, batch: list[_Pending]) -> None:
        total = sum(item.rows for item in batch)
        names = list(batch[0].key[-1])  # type: ignore[index]
        if self.observe is not None:
            self.observe(len(batch), total)
        if len(batch) == 1:
            await self._retry_alone(batch[0], names)
            return
        try:
            inputs = _concat([item.inputs for item in batch])
            limits = [item.deadline for item in batch if item.deadline is not None]
            deadline = min(limits) if limits else None
            results, start_ns, end_ns = await self.run(
                self.compute, inputs, names, deadline=deadline
            )
            if self.executed is not None:
                self.executed(total, start_ns, end_ns)
            slices = _split(results, [item.rows for item in batch], total)
        except Exception as exc:
            if isinstance(exc, _NotPerRow):
                logger.warning(
                    "model %s cannot batch (%s); its requests run one at a time from now on",
                    self.model_name,
                    exc,
                )
                self.disabled = True
            # Each request alone: only one that fails on its own fails.
            for item in batch:
                await self._retry_alone(item, names)
            return
        except BaseException as exc:  # cancelled: every request of the batch gets it
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            raise
        for item, outputs in zip(batch, slices, strict=True):
            if not item.future.done():
                item.future.set_result((outputs, start_ns, end_ns))

    async def _retry_alone(self, item: _Pending, names: list[str]) -> None:
        """Run one queued request on its own and settle its future."""
        if item.future.done():
            return
        try:
            outcome = await self._alone_call(item.inputs, names, item.deadline, item.rows)
        except Exception as exc:
            if not item.future.done():
                item.future.set_exception(exc)
            return
        if not item.future.done():
            item.future.set_result(outcome)


class _NotPerRow(InferenceError):
    """A batch's output lacks one row per input row: the model cannot batch."""


def _split(results: Mapping[str, Any], counts: list[int], total: int) -> list[Mapping[str, Any]]:
    """Cut every output of a batch into each request's rows, in order.

    A table (DataFrame) stays a table, so each request is answered as an
    unbatched predict would be.
    """
    if is_frame(results):
        frame: Any = results
        if len(frame) != total:
            raise _NotPerRow(
                f"the output table has {len(frame)} rows for a batch of {total} rows; "
                "a batched model must return one row per input row"
            )
        bounds = np.cumsum([0, *counts])
        return [
            frame.iloc[int(a) : int(b)].reset_index(drop=True)
            for a, b in itertools.pairwise(bounds)
        ]
    arrays = []
    for name, value in results.items():
        if hasattr(value, "to_numpy"):
            value = value.to_numpy()
        arr = np.asarray(value)
        if arr.ndim == 0 or arr.shape[0] != total:
            raise _NotPerRow(
                f"Output '{name}' has shape {list(arr.shape)} for a batch of {total} rows; "
                "a batched model must return one row per input row"
            )
        arrays.append((name, arr))
    out: list[Mapping[str, Any]] = []
    start = 0
    for count in counts:
        end = start + count
        out.append({name: arr[start:end] for name, arr in arrays})
        start = end
    return out

"""Adaptive batching: concurrent requests to one model share a predict call.

A model's predict usually costs the same for one row as for dozens (sklearn's
is about 120 µs either way), so at concurrency the per-call cost, not the
rows, is what limits throughput. Requests queue per model; one batch runs at a
time; when it finishes, everything compatible that queued meanwhile (same
column layout and dtype, same outputs, up to ``max_batch_size`` rows) becomes
the next batch, waiting up to ``max_delay_s`` for more only if a delay is
configured. Each request gets exactly its own rows of every output back; a
failing batch fails every request in it with the same error, and no other.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InferenceError

logger = logging.getLogger(__name__)

Compute = Callable[[Any, list[str]], Mapping[str, Any]]
#: A request's outputs, with the batch's predict start and end (epoch ns).
Batched = tuple[dict[str, Any], int, int]
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
        self._queue: deque[_Pending] = deque()
        self._arrived = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None

    async def submit(
        self, inputs: Any, names: list[str], key: Hashable, deadline: float | None = None
    ) -> Batched:
        """Queue one request's inputs; its own slice of the batch's outputs comes back.

        Cancelling the wait (a client that left) takes the request out of any
        batch not yet started. ``deadline``: the request's time limit, so the
        batch it joins runs inline only if it can end well before it.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Batched] = loop.create_future()
        self._queue.append(_Pending(key, inputs, _rows(inputs), future, deadline))
        self._arrived.set()
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._serve(), name=f"batcher-{self.model_name}")
        return await future

    async def _serve(self) -> None:
        while self._queue:
            # One turn of the loop first: requests whose bytes arrived in the
            # same poll (gRPC hands them over one task at a time) join in.
            await asyncio.sleep(0)
            batch = await self._collect()
            if batch:
                await self._execute(batch)

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
        except BaseException as exc:  # every request of the batch gets the error
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for item, outputs in zip(batch, slices, strict=True):
            if not item.future.done():
                item.future.set_result((outputs, start_ns, end_ns))


def _split(results: Mapping[str, Any], counts: list[int], total: int) -> list[dict[str, Any]]:
    """Cut every output of a batch into each request's rows, in order."""
    arrays = []
    for name, value in results.items():
        if hasattr(value, "to_numpy"):
            value = value.to_numpy()
        arr = np.asarray(value)
        if arr.ndim == 0 or arr.shape[0] != total:
            raise InferenceError(
                f"Output '{name}' has shape {list(arr.shape)} for a batch of {total} rows; "
                "a batched model must return one row per input row"
            )
        arrays.append((name, arr))
    out: list[dict[str, Any]] = []
    start = 0
    for count in counts:
        end = start + count
        out.append({name: arr[start:end] for name, arr in arrays})
        start = end
    return out

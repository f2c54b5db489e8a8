"""Per-model inference statistics, in Triton's statistics-extension schema.

Triton's clients (``get_inference_statistics``, perf_analyzer) read a
model's cumulative counts and durations: successful and failed requests,
time queued, time preparing the input (``compute_input``: the model's
preprocess), in predict (``compute_infer``), packing the outputs
(``compute_output``), and the same per executed batch size. They are kept
here as plain integers on the served model, so recording one request is a
few additions and no lock (the event loop is the only writer); the answer
is built as Triton's JSON object only when someone asks, and the gRPC
message is parsed from that same object.
"""

from __future__ import annotations

from typing import Any


class Duration:
    """A cumulative count and duration (Triton's ``$duration_stat``)."""

    __slots__ = ("count", "ns")

    def __init__(self) -> None:
        self.count = 0
        self.ns = 0

    def add(self, ns: int) -> None:
        self.count += 1
        self.ns += max(ns, 0)

    def json(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


class BatchStatistics:
    """The executions of one batch size."""

    __slots__ = ("compute_infer", "compute_input", "compute_output")

    def __init__(self) -> None:
        self.compute_input = Duration()
        self.compute_infer = Duration()
        self.compute_output = Duration()


class ModelStatistics:
    """The counters of one served model since it loaded."""

    __slots__ = (
        "batches",
        "cache_hit",
        "cache_miss",
        "compute_infer",
        "compute_input",
        "compute_output",
        "execution_count",
        "fail",
        "inference_count",
        "last_inference_ms",
        "queue",
        "success",
    )

    def __init__(self) -> None:
        self.last_inference_ms = 0
        self.inference_count = 0
        self.execution_count = 0
        self.success = Duration()
        self.fail = Duration()
        self.queue = Duration()
        self.compute_input = Duration()
        self.compute_infer = Duration()
        self.compute_output = Duration()
        self.cache_hit = Duration()
        self.cache_miss = Duration()
        self.batches: dict[int, BatchStatistics] = {}

    def _batch(self, size: int) -> BatchStatistics:
        found = self.batches.get(size)
        if found is None:
            found = self.batches[size] = BatchStatistics()
        return found

    def execution(self, size: int, infer_ns: int, end_epoch_ns: int) -> None:
        """One call of the model's predict over ``size`` rows (one request, or a batch)."""
        self.execution_count += 1
        self.last_inference_ms = end_epoch_ns // 1_000_000
        self._batch(size).compute_infer.add(infer_ns)

    def request(
        self,
        rows: int,
        total_ns: int,
        queue_ns: int,
        phases: tuple[int, int, int],
        own_execution: bool,
    ) -> None:
        """One request answered with ``rows`` inferences (Triton counts every row).

        ``phases`` are its compute_input, compute_infer and compute_output
        nanoseconds; a request that was an execution of its own (no batch
        with others) also counts its input and output phases for its size.
        """
        input_ns, infer_ns, output_ns = phases
        self.inference_count += rows
        self.success.add(total_ns)
        self.queue.add(queue_ns)
        self.compute_input.add(input_ns)
        self.compute_infer.add(infer_ns)
        self.compute_output.add(output_ns)
        if own_execution:
            batch = self._batch(rows)
            batch.compute_input.add(input_ns)
            batch.compute_output.add(output_ns)

    def hit(self, total_ns: int, end_epoch_ns: int) -> None:
        """A request answered from the response cache: a success, but no inference.

        As Triton counts them: ``success``, ``queue`` and ``cache_hit`` (the
        lookup and the copy out), neither ``inference_count`` nor
        ``execution_count``.
        """
        self.last_inference_ms = end_epoch_ns // 1_000_000
        self.success.add(total_ns)
        self.queue.add(0)  # Triton counts hits in ``queue`` too; they wait for nothing
        self.cache_hit.add(total_ns)

    def miss(self, lookup_ns: int) -> None:
        """The response cache did not hold a request: its lookup and insertion time."""
        self.cache_miss.add(lookup_ns)

    def failure(self, total_ns: int) -> None:
        self.fail.add(total_ns)

    def json(self, name: str, version: str) -> dict[str, Any]:
        """Triton's ``$model_stat`` object."""
        return {
            "name": name,
            "version": version,
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {
                "success": self.success.json(),
                "fail": self.fail.json(),
                "queue": self.queue.json(),
                "compute_input": self.compute_input.json(),
                "compute_infer": self.compute_infer.json(),
                "compute_output": self.compute_output.json(),
                "cache_hit": self.cache_hit.json(),
                "cache_miss": self.cache_miss.json(),
            },
            "batch_stats": [
                {
                    "batch_size": size,
                    "compute_input": batch.compute_input.json(),
                    "compute_infer": batch.compute_infer.json(),
                    "compute_output": batch.compute_output.json(),
                }
                for size, batch in sorted(self.batches.items())
            ],
        }

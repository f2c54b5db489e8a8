"""Prometheus metrics, served as text at ``GET /metrics`` on the HTTP port.

Kept in one private registry so that a user's own metrics in the same process
do not collide with ours; the exposition is rendered only when scraped.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

REGISTRY = CollectorRegistry(auto_describe=True)

_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

BATCH_REQUESTS = Histogram(
    "modelserver_batch_requests",
    "Requests merged into one predict call by adaptive batching",
    ["model"],
    buckets=_SIZES,
    registry=REGISTRY,
)
BATCH_ROWS = Histogram(
    "modelserver_batch_rows",
    "Rows in one batched predict call",
    ["model"],
    buckets=_SIZES,
    registry=REGISTRY,
)


def batch_observer(model: str) -> Callable[[int, int], None]:
    """The callback a model's Batcher reports each batch's size to."""
    requests = BATCH_REQUESTS.labels(model)
    rows = BATCH_ROWS.labels(model)

    def observe(n_requests: int, n_rows: int) -> None:
        requests.observe(n_requests)
        rows.observe(n_rows)

    return observe


def exposition() -> tuple[bytes, str]:
    """The current metrics in Prometheus text format, with its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST

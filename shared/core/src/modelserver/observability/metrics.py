"""Prometheus metrics, served as text at ``GET /metrics`` on the HTTP port.

Kept in one private registry so that a user's own metrics in the same process
do not collide with ours. With ``--workers`` > 1 the supervisor sets
``PROMETHEUS_MULTIPROC_DIR`` before the workers start, every worker writes its
samples there, and any worker's ``/metrics`` shows the sum over all of them.
Label children are created once per model and protocol, so recording a
request costs a few attribute lookups, not a label resolution.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

REGISTRY = CollectorRegistry(auto_describe=True)

_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_LATENCY = (0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

REQUESTS = Counter(
    "modelserver_requests",
    "Inference requests by model, protocol and status (HTTP code or gRPC code name)",
    ["model", "protocol", "status"],
    registry=REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "modelserver_request_duration_seconds",
    "Whole inference request: read, decode, queue, predict, encode",
    ["model", "protocol"],
    buckets=_LATENCY,
    registry=REGISTRY,
)
QUEUE_SECONDS = Histogram(
    "modelserver_queue_duration_seconds",
    "Time a decoded request waited for predict (batching queue or thread pool)",
    ["model"],
    buckets=_LATENCY,
    registry=REGISTRY,
)
PREDICT_SECONDS = Histogram(
    "modelserver_predict_duration_seconds",
    "Time in the model's predict (for a batch: the whole batch's call)",
    ["model"],
    buckets=_LATENCY,
    registry=REGISTRY,
)
INFLIGHT = Gauge(
    "modelserver_inflight_requests",
    "Inference requests being served now",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
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
MODEL_LOAD_SECONDS = Gauge(
    "modelserver_model_load_seconds",
    "How long the model's last load took",
    ["model"],
    registry=REGISTRY,
    multiprocess_mode="max",
)
MODEL_STATE = Gauge(
    "modelserver_model_state",
    "1 for the state each model is in (LOADING, READY, UNAVAILABLE, FAILED), else 0",
    ["model", "state"],
    registry=REGISTRY,
    multiprocess_mode="livemax",
)
GENERATED_TOKENS = Counter(
    "modelserver_generated_tokens",
    "Tokens written by generative models (every sequence of every request)",
    ["model"],
    registry=REGISTRY,
)
GENERATIONS = Gauge(
    "modelserver_generations",
    "Generations in progress (each writes in a thread of its own)",
    ["model"],
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
FIRST_TOKEN_SECONDS = Histogram(
    "modelserver_time_to_first_token_seconds",
    "From a generation's start until its first text",
    ["model"],
    buckets=_LATENCY,
    registry=REGISTRY,
)
CACHE_HITS = Counter(
    "modelserver_response_cache_hits",
    "Inference requests answered from the response cache (--response_cache_size)",
    ["model"],
    registry=REGISTRY,
)
CACHE_MISSES = Counter(
    "modelserver_response_cache_misses",
    "Inference requests the response cache did not hold: computed, then kept",
    ["model"],
    registry=REGISTRY,
)
CACHE_ENTRIES = Gauge(
    "modelserver_response_cache_entries",
    "Answers held in the response cache",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
CACHE_BYTES = Gauge(
    "modelserver_response_cache_bytes",
    "Bytes of output data held in the response cache",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
LOGGER_EVENTS = Counter(
    "modelserver_logger_events",
    "Request/response CloudEvents by outcome (sent, dropped, failed)",
    ["outcome"],
    registry=REGISTRY,
)

STATES = ("LOADING", "READY", "UNAVAILABLE", "FAILED")


class ModelMetrics:
    """The pre-labelled metric children of one model."""

    __slots__ = ("_requests", "_seconds", "name", "predict", "queue")

    def __init__(self, name: str) -> None:
        self.name = name
        self.queue = QUEUE_SECONDS.labels(name)
        self.predict = PREDICT_SECONDS.labels(name)
        self._requests: dict[tuple[str, int | str], Counter] = {}
        self._seconds: dict[str, Histogram] = {}

    def request(self, protocol: str, status: int | str, seconds: float) -> None:
        counter = self._requests.get((protocol, status))
        if counter is None:
            counter = self._requests[(protocol, status)] = REQUESTS.labels(
                self.name, protocol, str(status)
            )
        counter.inc()
        hist = self._seconds.get(protocol)
        if hist is None:
            hist = self._seconds[protocol] = REQUEST_SECONDS.labels(self.name, protocol)
        hist.observe(seconds)


_models: dict[str, ModelMetrics] = {}


def for_model(name: str) -> ModelMetrics:
    """The metrics of a model (created on first use; ``<unknown>`` keeps cardinality bounded)."""
    return _children(_models, name, ModelMetrics)


C = TypeVar("C")


def _children(made: dict[str, C], name: str, make: Callable[[str], C]) -> C:
    """A model's labelled children, made once."""
    found = made.get(name)
    if found is None:
        found = made[name] = make(name)
    return found


class GenerationMetrics:
    """The pre-labelled metric children of one generative model (made on its first generation)."""

    __slots__ = ("active", "first_token", "tokens")

    def __init__(self, name: str) -> None:
        self.tokens = GENERATED_TOKENS.labels(name)
        self.active = GENERATIONS.labels(name)
        self.first_token = FIRST_TOKEN_SECONDS.labels(name)


_generations: dict[str, GenerationMetrics] = {}


def for_generation(name: str) -> GenerationMetrics:
    return _children(_generations, name, GenerationMetrics)


def batch_observer(model: str) -> Callable[[int, int], None]:
    """The callback a model's Batcher reports each batch's size to."""
    requests = BATCH_REQUESTS.labels(model)
    rows = BATCH_ROWS.labels(model)

    def observe(n_requests: int, n_rows: int) -> None:
        requests.observe(n_requests)
        rows.observe(n_rows)

    return observe


@dataclass(frozen=True, slots=True)
class CacheCounters:
    """A model's response-cache hit and miss counters."""

    hits: Counter
    misses: Counter


def cache_counters(model: str) -> CacheCounters:
    return CacheCounters(CACHE_HITS.labels(model), CACHE_MISSES.labels(model))


def model_state(model: str, state: str, load_seconds: float | None = None) -> None:
    """Record a model's lifecycle state (and its load time once loaded)."""
    for candidate in STATES:
        MODEL_STATE.labels(model, candidate).set(1 if candidate == state else 0)
    if load_seconds is not None:
        MODEL_LOAD_SECONDS.labels(model).set(load_seconds)


def exposition() -> tuple[bytes, str]:
    """The current metrics in Prometheus text format, with its content type."""
    if MULTIPROCESS:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST

"""Warm-up in process: requests through the pipeline before a model is READY.

``Arith`` records every predict call, so the tests see exactly which rows
warm-up ran (from metadata or from ``warmup.json``), that statistics and
metrics do not count them, that a request the model refuses is skipped
unless ``warmup.json`` asked for it, and that nothing runs with warm-up off.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from inproc import Arith, loaded, options, request, tensor
from modelserver import InferRequest, Model, ModelLoadError, tensor_spec
from modelserver.dataplane import warmup
from modelserver.dataplane.context import RequestContext
from modelserver.dataplane.served import ModelState, ServedModel
from modelserver.model.discovery import WARMUP_FILE, find_model_file
from modelserver.observability import metrics

WARM = options(warmup=True)


def _count(name: str) -> float:
    """Predict calls the model's metrics recorded."""
    for family in metrics.REGISTRY.collect():
        for sample in family.samples:
            counted = sample.name == "modelserver_predict_duration_seconds_count"
            if counted and sample.labels.get("model") == name:
                return sample.value
    return 0.0


def test_metadata_builds_one_row_of_every_input_for_the_defaults_and_every_output() -> None:
    model = Arith("warm-metadata")
    served = loaded(model, WARM)
    assert served.state is ModelState.READY
    # One request for the defaults, one for every output; each ROUNDS times.
    assert len(model.calls) == 2 * warmup.ROUNDS
    assert all(call.shape == (1, 1) and not call.any() for call in model.calls)
    assert len(model.negations) == warmup.ROUNDS  # the non-default output ran too


def test_warm_up_is_not_counted_in_statistics_or_metrics() -> None:
    served = loaded(Arith("warm-uncounted"), WARM)
    stats = served.stats.json("warm-uncounted", "1")
    assert stats["inference_count"] == stats["execution_count"] == 0
    assert stats["inference_stats"]["success"]["count"] == 0
    assert _count("warm-uncounted") == 0
    asyncio.run(served.infer(request(served.name, tensor("x", [[1.0]])), RequestContext("t")))
    assert served.stats.json("warm-uncounted", "1")["inference_count"] == 1
    assert _count("warm-uncounted") == 1


def test_warmup_json_beside_the_model_replaces_the_metadata_requests(tmp_path: Path) -> None:
    body = {
        "inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP64", "data": [1, 2, 3, 4, 5, 6]}],
        "outputs": [{"name": "negate"}],
    }
    (tmp_path / WARMUP_FILE).write_text(json.dumps([body]))
    model = Arith("warm-file", tmp_path)
    loaded(model, WARM)
    assert model.calls == []  # negate alone: no joint predict
    assert len(model.negations) == warmup.ROUNDS
    np.testing.assert_array_equal(model.negations[0], [[1, 2, 3], [4, 5, 6]])


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "cannot read warm-up requests"),
        ("[]", "non-empty JSON list"),
        ('{"inputs": []}', "non-empty JSON list"),
        ("[1]", "request 0 is not a JSON object"),
        (
            '[{"inputs": [{"name": "x", "shape": [2], "datatype": "FP64", "data": [1]}]}]',
            "request 0",
        ),
        (
            '[{"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP64", "data": [666]}]}]',
            "the model broke on 666",
        ),
    ],
    ids=["not-json", "empty", "not-a-list", "not-an-object", "bad-request", "model-fails"],
)
def test_an_invalid_warmup_json_fails_the_load_naming_it(
    tmp_path: Path, content: str, reason: str
) -> None:
    (tmp_path / WARMUP_FILE).write_text(content)
    served = ServedModel(Arith("warm-invalid", tmp_path), WARM)
    with pytest.raises(ModelLoadError, match=r"warmup\.json") as info:
        served.load()
    assert reason in str(info.value)
    assert served.state is ModelState.FAILED and "warmup.json" in served.reason


class Picky(Model):
    """Declares a text input it refuses unless it is a known colour."""

    platform = "picky"

    def __init__(self, name: str = "picky") -> None:
        super().__init__(name)
        self.seen: list[Any] = []

    def load(self) -> None:
        self.outputs.add("colour", "BYTES", [-1])

    def predict(self, inputs: Any) -> Any:
        self.seen.append(inputs)
        if any(value not in ("red", "green") for value in np.asarray(inputs).ravel()):
            raise ValueError(f"unknown colour in {inputs!r}")
        return inputs

    def inputs_metadata(self) -> list[dict[str, Any]]:
        return [tensor_spec("colour", "BYTES", [-1])]


def test_a_metadata_request_the_model_refuses_is_logged_and_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = Picky()
    with caplog.at_level(logging.WARNING):
        served = loaded(model, WARM)
    assert served.state is ModelState.READY
    assert [list(seen) for seen in model.seen] == [["warm-up"]]  # BYTES: a short string, once
    assert "warm-up request warmup-defaults skipped" in caplog.text
    assert "unknown colour" in caplog.text


def test_nothing_runs_with_warm_up_off_or_without_declared_inputs() -> None:
    model = Arith("warm-off")
    loaded(model, options(warmup=False))
    assert model.calls == []

    class NoInputs(Arith):
        def inputs_metadata(self) -> list[dict[str, Any]]:
            return []

    silent = NoInputs("warm-none")
    assert loaded(silent, WARM).ready
    assert silent.calls == []


def test_metadata_requests_for_every_datatype() -> None:
    class Typed(Arith):
        def inputs_metadata(self) -> list[dict[str, Any]]:
            return [
                tensor_spec("f", "FP16", [-1, 3]),
                tensor_spec("b", "BOOL", [-1]),
                tensor_spec("t", "BYTES", [2, -1]),
            ]

    model = Typed()
    model.load()
    requests, reason = warmup.from_metadata(model, "typed")
    assert reason == ""
    assert [isinstance(r, InferRequest) for r in requests] == [True, True]
    f, b, t = requests[0].inputs
    assert (f.shape, f.data.dtype, b.shape, b.data.dtype) == ((1, 3), np.float16, (1,), np.bool_)
    assert t.shape == (2, 1) and t.data.tolist() == [[b"warm-up"], [b"warm-up"]]
    assert requests[1].outputs is not None
    assert [o.name for o in requests[1].outputs] == ["double", "total", "negate"]


def test_load_inside_a_running_loop_warms_up_in_a_thread_of_its_own() -> None:
    model = Arith("warm-in-loop")

    async def main() -> ServedModel:
        return loaded(model, WARM)

    assert asyncio.run(main()).ready
    assert len(model.calls) == 2 * warmup.ROUNDS


def test_warm_up_then_batching_serves_as_before() -> None:
    model = Arith("warm-batched")
    served = loaded(model, options(warmup=True, max_batch_size=8))
    assert served.batcher is not None
    response = asyncio.run(
        served.infer(request(served.name, tensor("x", [[2.0]])), RequestContext("t"))
    )
    assert response.outputs[0].data.tolist() == [[4.0]]


def test_discovery_never_takes_warmup_json_for_the_model(tmp_path: Path) -> None:
    (tmp_path / "model.json").write_text("{}")
    (tmp_path / WARMUP_FILE).write_text("[]")
    assert find_model_file(tmp_path, (".json",)) == tmp_path / "model.json"

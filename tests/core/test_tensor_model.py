"""TensorModel: matching named feeds to the declaration, and when batching is allowed."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from modelserver import Feeds, InferRequest, InvalidInput, Tensor, TensorModel, TensorSpec
from modelserver.dataplane.served import ServedModel, ServingOptions


class Graph(TensorModel):
    """Two inputs, two outputs: sum and product of the inputs' row sums."""

    def __init__(self, first_dim: int = -1) -> None:
        super().__init__("g")
        self.first_dim = first_dim

    def load(self) -> None:
        d = self.first_dim
        self.declare(
            [TensorSpec("a", "FP32", (d, 2)), TensorSpec("b", "INT64", (d,))],
            [TensorSpec("sum", "FP32", (d,)), TensorSpec("prod", "FP32", (d,))],
        )

    def run(self, feeds: Feeds, names: Sequence[str]) -> list[np.ndarray]:
        total = feeds["a"].sum(axis=1) + feeds["b"]
        prod = feeds["a"].prod(axis=1) * feeds["b"]
        values = {"sum": total.astype(np.float32), "prod": prod.astype(np.float32)}
        return [values[name] for name in names]


def _request(*tensors: Tensor) -> InferRequest:
    return InferRequest(model_name="g", inputs=list(tensors))


def _tensor(name: str, datatype: str, data: np.ndarray) -> Tensor:
    return Tensor(name, datatype, tuple(data.shape), data)


def _started(first_dim: int = -1) -> Graph:
    model = Graph(first_dim)
    model.load()
    return model


def test_feeds_are_cast_within_kind_and_checked() -> None:
    model = _started()
    feeds = model.preprocess(
        _request(
            _tensor("b", "INT32", np.array([1, 2], dtype=np.int32)),
            _tensor("a", "FP64", np.ones((2, 2))),
        )
    )
    assert feeds["a"].dtype == np.float32 and feeds["b"].dtype == np.int64
    assert dict(model.compute(feeds, ["prod"]))["prod"].tolist() == [1.0, 2.0]
    assert model.outputs.defaults() == ["sum", "prod"]
    assert [o["name"] for o in model.outputs.metadata()] == ["sum", "prod"]


@pytest.mark.parametrize(
    ("tensors", "reason"),
    [
        ([_tensor("a", "FP32", np.ones((1, 2), np.float32))], "missing input 'b'"),
        ([_tensor("zzz", "FP32", np.ones((1, 2), np.float32))], "no input named 'zzz'"),
        (
            [
                _tensor("a", "FP32", np.ones((1, 3), np.float32)),
                _tensor("b", "INT64", np.ones(1, np.int64)),
            ],
            "expects shape [-1, 2]",
        ),
        (
            [
                _tensor("a", "FP32", np.ones((1, 2), np.float32)),
                _tensor("b", "FP32", np.ones(1, np.float32)),
            ],
            "is INT64, got FP32",
        ),
    ],
)
def test_bad_feeds_are_invalid_input(tensors: list[Tensor], reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason.replace("[", r"\[").replace("]", r"\]")):
        _started().preprocess(_request(*tensors))


def test_batching_kept_with_a_batch_dimension_and_dropped_without() -> None:
    batching = ServingOptions(max_batch_size=8)
    with_batch_dim = ServedModel(Graph(-1), batching)
    with_batch_dim.load()
    assert with_batch_dim.batcher is not None
    fixed = ServedModel(Graph(4), batching)
    fixed.load()
    assert fixed.batcher is None
    assert fixed.ready


class OneFeature(TensorModel):
    """Rows of one value in, the value doubled out."""

    def load(self) -> None:
        self.declare([TensorSpec("x", "FP32", (-1, 1))], [TensorSpec("y", "FP32", (-1, 1))])

    def run(self, feeds: Feeds, names: Sequence[str]) -> list[np.ndarray]:
        return [feeds["x"] * 2]


def test_single_values_are_rows_of_a_one_value_input() -> None:
    """A v1 list of numbers is 1-D: for an input of rows of one value it is N such rows."""
    model = OneFeature("one")
    model.load()
    feeds = model.preprocess(_request(_tensor("x", "FP64", np.array([1.0, 2.0, 3.0]))))
    assert feeds["x"].shape == (3, 1)
    assert model.preprocess(_request(_tensor("x", "FP32", np.ones(1))))["x"].shape == (1, 1)
    graph = _started()
    one_row = graph.preprocess(
        _request(_tensor("a", "FP32", np.ones(2)), _tensor("b", "INT64", np.ones(1, np.int64)))
    )
    assert one_row["a"].shape == (1, 2)  # still one example without its batch dimension

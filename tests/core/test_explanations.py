"""Explanations in process: what ``Model.explains`` declares, served by the real stack.

A small linear model (contributions ``w * x``, bias ``b``, one block per
class when it has several) declares its explainer; the core must offer
``contributions`` as a selectable output over v2 REST and gRPC, answer
``:explain`` in KServe's v1 shape, say in metadata which models explain,
and answer 501 with the reason for a model that does not.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import orjson
import pytest
from inproc import Arith, asgi, grpc_channel, loaded, stack
from modelserver import Model, tensor_spec
from modelserver import protos as pb

X = np.array([[1.0, 2.0, 3.0], [-4.0, 0.5, 6.0]])
FEATURES = ["a", "b", "c"]


class Linear(Model):
    """``x @ w.T + b``: one output per class, explained as ``w * x`` plus ``b``."""

    platform = "linear"

    def __init__(self, name: str, weights: Any, bias: Any, classes: tuple[str, ...] = ()):
        super().__init__(name)
        self.w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        self.b = np.atleast_1d(np.asarray(bias, dtype=np.float64))
        self.classes = classes

    def load(self) -> None:
        self.outputs.add("score", "FP64", [-1, len(self.b)])
        self.explains(
            self._contributions,
            FEATURES,
            sums_to="score",
            method="w * x",
            classes=self.classes,
        )

    def predict(self, inputs: Any) -> Any:
        return np.asarray(inputs) @ self.w.T + self.b

    def _contributions(self, inputs: Any) -> np.ndarray:
        x = np.asarray(inputs, dtype=np.float64)
        parts = x[:, None, :] * self.w[None, :, :]
        bias = np.broadcast_to(self.b, (len(x), len(self.b)))[:, :, None]
        blocks = np.concatenate([parts, bias], axis=2)
        return blocks if self.classes else blocks[:, 0, :]

    def inputs_metadata(self) -> list[dict[str, Any]]:
        return [tensor_spec("x", "FP64", [-1, 3])]


def single() -> Linear:
    return Linear("single", [0.5, -1.0, 2.0], 0.25)


def per_class() -> Linear:
    return Linear("classes", [[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]], [1.0, -2.0], ("cat", "dog"))


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def post(served: Any, path: str, body: dict[str, Any], *others: Any) -> tuple[int, Any]:
    app = stack(served, *others).app()
    reply = run(asgi(app, "POST", path, orjson.dumps(body)))
    return reply.status, orjson.loads(reply.body)


def test_explain_v1_gives_each_row_its_contributions_bias_and_feature_names() -> None:
    model = single()
    status, answer = post(loaded(model), "/v1/models/single:explain", {"instances": X.tolist()})
    assert status == 200, answer
    explanations = answer["explanations"]
    assert len(explanations) == len(X)
    for row, explanation in zip(X, explanations, strict=True):
        assert explanation["feature_names"] == FEATURES
        np.testing.assert_allclose(explanation["contributions"], row * model.w[0])
        assert explanation["bias"] == 0.25
        total = sum(explanation["contributions"]) + explanation["bias"]
        np.testing.assert_allclose(total, model.predict(row[None, :])[0, 0])


def test_explain_v1_of_a_model_per_class_gives_a_block_per_class() -> None:
    model = per_class()
    status, answer = post(loaded(model), "/v1/models/classes:explain", {"instances": X.tolist()})
    assert status == 200, answer
    scores = model.predict(X)
    for row, explanation, score in zip(X, answer["explanations"], scores, strict=True):
        assert explanation["classes"] == ["cat", "dog"]
        assert np.shape(explanation["contributions"]) == (2, 3)
        assert explanation["bias"] == [1.0, -2.0]
        sums = np.sum(explanation["contributions"], axis=1) + explanation["bias"]
        np.testing.assert_allclose(sums, score)
        np.testing.assert_allclose(explanation["contributions"][1], row * model.w[1])


def test_contributions_are_an_output_v2_rest_may_select() -> None:
    model = single()
    body = {
        "inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP64", "data": X.ravel().tolist()}],
        "outputs": [{"name": "contributions"}, {"name": "score"}],
    }
    status, answer = post(loaded(model), "/v2/models/single/infer", body)
    assert status == 200, answer
    by_name = {o["name"]: o for o in answer["outputs"]}
    assert by_name["contributions"]["shape"] == [2, 4]
    blocks = np.reshape(by_name["contributions"]["data"], (2, 4))
    np.testing.assert_allclose(blocks.sum(axis=1), by_name["score"]["data"])
    # ...and a request naming no outputs does not pay for them.
    del body["outputs"]
    _, plain = post(loaded(single()), "/v2/models/single/infer", body)
    assert [o["name"] for o in plain["outputs"]] == ["score"]


def test_contributions_over_grpc() -> None:
    served = loaded(per_class())

    async def call() -> Any:
        async with grpc_channel(stack(served)) as channel:
            rpc = channel.unary_unary(
                "/inference.GRPCInferenceService/ModelInfer",
                request_serializer=pb.ModelInferRequest.SerializeToString,
                response_deserializer=pb.ModelInferResponse.FromString,
            )
            message = pb.ModelInferRequest(model_name="classes")
            tensor = message.inputs.add(name="x", datatype="FP64", shape=[2, 3])
            tensor.contents.fp64_contents.extend(X.ravel().tolist())
            message.outputs.add(name="contributions")
            return await rpc(message)

    answer = run(call())
    (out,) = answer.outputs
    assert out.name == "contributions" and list(out.shape) == [2, 2, 4]
    blocks = np.frombuffer(answer.raw_output_contents[0], dtype=np.float64).reshape(2, 2, 4)
    np.testing.assert_allclose(blocks.sum(axis=2), served.require_model().predict(X))


def test_metadata_says_which_models_explain_and_why_not() -> None:
    explains = loaded(per_class()).metadata()
    assert explains["parameters"]["explanations"] == {
        "supported": True,
        "output": "contributions",
        "feature_names": FEATURES,
        "sums_to": "score",
        "method": "w * x",
        "classes": ["cat", "dog"],
    }
    assert {"name": "contributions", "datatype": "FP64", "shape": [-1, 2, 4]} in explains["outputs"]
    assert "contributions" not in explains["parameters"]["default_outputs"]
    silent = loaded(Arith()).metadata()["parameters"]["explanations"]
    assert silent["supported"] is False and "no per-feature contributions" in silent["reason"]


def test_a_model_that_does_not_explain_is_a_501_that_says_why() -> None:
    status, answer = post(loaded(Arith()), "/v1/models/arith:explain", {"instances": X.tolist()})
    assert status == 501
    assert answer["error"].startswith("Model 'arith' cannot explain its predictions: ")

    class Refusing(Arith):
        def load(self) -> None:
            super().load()
            self.explain_unsupported = "a KNeighborsClassifier has no per-feature weights"

    status, answer = post(loaded(Refusing()), "/v1/models/arith:explain", {"instances": [[1]]})
    assert status == 501 and "KNeighborsClassifier" in answer["error"]


@pytest.mark.parametrize("path", ["/v1/models/nope:explain"])
def test_explain_of_an_unknown_model_is_a_404(path: str) -> None:
    status, answer = post(loaded(single()), path, {"instances": X.tolist()})
    assert status == 404 and "nope" in answer["error"]


def test_a_bad_explain_body_is_a_400_like_predict() -> None:
    status, answer = post(loaded(single()), "/v1/models/single:explain", {"instances": [[1, 2]]})
    assert status == 400, answer
    assert answer["error"]


def test_an_output_already_named_contributions_wins_and_the_model_does_not_explain() -> None:
    class Named(Linear):
        def load(self) -> None:
            self.outputs.add("contributions", "FP64", [-1])
            super().load()

    served = loaded(Named("named", [1.0, 1.0, 1.0], 0.0))
    model = served.require_model()
    assert model.explainer is None
    assert model.outputs["contributions"].shape == (-1,)
    assert "its own output" in served.metadata()["parameters"]["explanations"]["reason"]

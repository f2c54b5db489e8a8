"""The model repository in process: a multi-model directory of real scikit-learn models.

Built the way a server starts (``build_repository`` and ``load_models`` over
``--model_dir``), then loaded, reloaded, broken and unloaded while a test
watches what is served, what each model reports, and what memory is let go.
"""

from __future__ import annotations

import asyncio
import gc
import shutil
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import sample_models
from inproc import POOL, Arith, eventually, loaded, options, request, tensor, unloadable
from modelserver import InvalidInput, ModelLoadError, ModelNotFound, ModelNotReady
from modelserver.dataplane.context import RequestContext
from modelserver.dataplane.repository import ModelRepository
from modelserver.dataplane.served import ModelState, ServedModel
from modelserver.server.process import build_repository, load_models
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearnserver.model import SKLearnModel, SKLearnSettings

X, _ = load_iris(return_X_y=True)
ROWS = X[::30]


@pytest.fixture(scope="module")
def estimator() -> Any:
    """Iris LogisticRegression, as the sample model builder fits it."""
    return sample_models.iris_logistic_regression()


@pytest.fixture
def root(tmp_path: Path, estimator: Any) -> Path:
    """A model directory with two models, a folder that is not one yet, and a hidden one."""
    models = tmp_path / "models"
    for name in ("iris", "setosa"):
        (models / name).mkdir(parents=True)
        joblib.dump(estimator, models / name / "model.joblib")
    (models / "notes").mkdir()
    (models / "notes" / "README.txt").write_text("not a model\n")
    (models / ".cache").mkdir()
    return models


def start(root: Path, **settings: Any) -> ModelRepository:
    """The repository a server starts with over ``root``, every model found loaded."""
    config = SKLearnSettings(model_dir=str(root), **settings)
    repository, found = build_repository(SKLearnModel, config, POOL)
    load_models(repository, found)
    return repository


def predict(repository: ModelRepository, name: str, rows: np.ndarray = ROWS) -> np.ndarray:
    served = repository.get_ready(name)
    response = asyncio.run(served.infer(request(name, tensor("x", rows)), RequestContext("t")))
    (output,) = response.outputs
    return output.data


def estimator_of(served: ServedModel) -> Any:
    model = served.require_model()
    assert isinstance(model, SKLearnModel)
    return model.estimator


@pytest.fixture
def repository(root: Path) -> Iterator[ModelRepository]:
    yield start(root, max_batch_size=8)


# -- startup, index -------------------------------------------------------------------------


def test_startup_serves_each_model_folder_and_the_index_lists_what_could_be_loaded(
    repository: ModelRepository, estimator: Any
) -> None:
    assert list(repository.models) == ["iris", "setosa"]
    assert repository.all_ready
    np.testing.assert_array_equal(predict(repository, "iris"), estimator.predict(ROWS))
    assert repository.index() == [
        {"name": "iris", "version": "1", "state": "READY"},
        {"name": "notes"},
        {"name": "setosa", "version": "1", "state": "READY"},
    ]
    assert [e["name"] for e in repository.index(ready_only=True)] == ["iris", "setosa"]


# -- load -------------------------------------------------------------------------------------


def test_a_new_sub_folder_is_served_once_loaded(
    repository: ModelRepository, root: Path, estimator: Any
) -> None:
    with pytest.raises(ModelNotFound):
        repository.get("fresh")
    shutil.copytree(root / "iris", root / "fresh")
    served = asyncio.run(repository.load("fresh"))
    assert repository.get("fresh") is served and served.ready
    assert served.model_dir == root / "fresh"
    np.testing.assert_array_equal(predict(repository, "fresh"), estimator.predict(ROWS))
    assert {"name": "fresh", "version": "1", "state": "READY"} in repository.index(ready_only=True)


def test_a_sub_folder_that_fails_to_load_is_reported_failed_until_fixed(
    repository: ModelRepository, root: Path, estimator: Any
) -> None:
    (root / "broken").mkdir()
    (root / "broken" / "model.joblib").write_bytes(b"\x80\x04 not a pickle")
    with pytest.raises(ModelLoadError, match="Failed to load model broken: Cannot read"):
        asyncio.run(repository.load("broken"))
    broken = repository.get("broken")
    assert broken.state is ModelState.FAILED and "Cannot read" in broken.reason
    assert not repository.all_ready
    with pytest.raises(ModelNotReady, match="Cannot read"):
        repository.get_ready("broken")
    np.testing.assert_array_equal(predict(repository, "iris"), estimator.predict(ROWS))

    joblib.dump(estimator, root / "broken" / "model.joblib")
    asyncio.run(repository.load("broken"))
    assert repository.get("broken").ready and repository.all_ready


# -- reload -------------------------------------------------------------------------------------


def test_a_reload_is_served_exactly_as_the_first_load(repository: ModelRepository) -> None:
    old = repository.get("iris")
    assert old.batcher is not None

    async def reload() -> ServedModel:
        served = await repository.load("iris")
        await eventually(lambda: old.model is None, "the replaced model to be released")
        return served

    new = asyncio.run(reload())
    assert repository.get("iris") is new and new is not old
    assert new.options is old.options
    assert new.batcher is not None and new.batcher.max_batch_size == 8
    assert new.metrics is old.metrics
    assert old.state is ModelState.UNAVAILABLE
    assert new.ready and new.reason == ""


def test_a_reload_reads_the_file_again(repository: ModelRepository, root: Path) -> None:
    two_features = LogisticRegression().fit(X[:, :2], (X[:, 0] > 5.8) * 1)
    joblib.dump(two_features, root / "iris" / "model.joblib")
    asyncio.run(repository.load("iris"))
    np.testing.assert_array_equal(
        predict(repository, "iris", ROWS[:, :2]), two_features.predict(ROWS[:, :2])
    )
    with pytest.raises(InvalidInput, match="expects 2 features per row, got 4"):
        predict(repository, "iris")


def test_a_failed_reload_keeps_the_loaded_model_serving_and_says_why(
    repository: ModelRepository, root: Path, estimator: Any
) -> None:
    old = repository.get("iris")
    (root / "iris" / "model.joblib").write_bytes(b"garbage")
    with pytest.raises(ModelLoadError, match="Failed to load model iris"):
        asyncio.run(repository.load("iris"))
    assert repository.get("iris") is old and old.ready
    assert old.reason.startswith("reload failed, still serving the previous load: Cannot read")
    np.testing.assert_array_equal(predict(repository, "iris"), estimator.predict(ROWS))
    (entry,) = [e for e in repository.index() if e["name"] == "iris"]
    assert entry["state"] == "READY" and entry["reason"] == old.reason
    assert repository.all_ready

    joblib.dump(estimator, root / "iris" / "model.joblib")
    asyncio.run(repository.load("iris"))
    assert repository.get("iris").reason == ""


def test_a_reload_releases_the_model_it_replaces(repository: ModelRepository) -> None:
    replaced = weakref.ref(estimator_of(repository.get("iris")))
    predict(repository, "iris")

    async def reload() -> None:
        await repository.load("iris")
        await eventually(lambda: replaced() is None, "the replaced estimator to be freed")

    asyncio.run(reload())
    assert repository.get("iris").ready


# -- unload -------------------------------------------------------------------------------------


def test_unload_stops_the_model_and_releases_its_memory_until_loaded_again(
    repository: ModelRepository, estimator: Any
) -> None:
    served = repository.get("iris")
    predict(repository, "iris")  # through the batcher, which holds the model's compute
    model_ref = weakref.ref(served.require_model())
    estimator_ref = weakref.ref(estimator_of(served))

    async def unload() -> None:
        await repository.unload("iris")
        assert served.state is ModelState.UNAVAILABLE and served.reason == "unloaded"
        assert served.model is None and served.batcher is None
        # The pool thread that ran the batch drops its finished work item a moment
        # after the result is delivered; on a loaded machine that can be later.
        await eventually(lambda: gc.collect() >= 0 and model_ref() is None, "the model to be freed")
        await eventually(lambda: estimator_ref() is None, "the estimator to be freed")

    asyncio.run(unload())
    with pytest.raises(ModelNotReady, match="not ready: unloaded"):
        repository.get_ready("iris")
    (entry,) = [e for e in repository.index() if e["name"] == "iris"]
    assert (entry["state"], entry["reason"]) == ("UNAVAILABLE", "unloaded")
    assert not repository.all_ready
    assert repository.get("setosa").ready

    asyncio.run(repository.load("iris"))
    assert repository.all_ready
    np.testing.assert_array_equal(predict(repository, "iris"), estimator.predict(ROWS))


def test_unload_lets_requests_in_flight_finish_first() -> None:
    model = Arith()
    served = loaded(model, options(predict_executor="thread"))
    repository = ModelRepository(unloadable)
    repository.add(served)

    async def main() -> None:
        model.block()
        running = asyncio.ensure_future(
            served.infer(request("arith", tensor("x", [[1.0]])), RequestContext("t"))
        )
        await model.wait_entered()
        unloading = asyncio.ensure_future(repository.unload("arith"))
        await eventually(lambda: served.state is ModelState.UNAVAILABLE, "unload to stop it")
        await asyncio.sleep(0.02)
        assert not unloading.done() and served.model is model
        model.unblock()
        response = await running
        assert response.outputs[0].data.tolist() == [[2.0]]
        await unloading
        assert served.model is None

    asyncio.run(main())


# -- names ------------------------------------------------------------------------------------


def test_unknown_names_are_not_found_and_the_message_lists_the_served_models(
    repository: ModelRepository,
) -> None:
    served = r"Served models: iris, setosa\."
    with pytest.raises(ModelNotFound, match=served) as info:
        repository.get("nope")
    assert info.value.http_status == 404
    with pytest.raises(ModelNotFound, match="name iris and version 2 does not exist"):
        repository.get("iris", "2")
    with pytest.raises(ModelNotFound, match=served):
        asyncio.run(repository.unload("nope"))
    with pytest.raises(ModelNotFound, match=served):
        asyncio.run(repository.load("nope"))  # no such sub-folder


def test_a_single_model_repository_loads_nothing_new(root: Path, estimator: Any) -> None:
    repository = start(root / "iris", model_name="only")
    assert repository.root is None and list(repository.models) == ["only"]
    with pytest.raises(ModelNotFound, match=r"Served models: only\."):
        asyncio.run(repository.load("setosa"))
    asyncio.run(repository.load("only"))  # a reload from its own directory
    np.testing.assert_array_equal(predict(repository, "only"), estimator.predict(ROWS))


@pytest.mark.parametrize("name", ["..", ".", "../iris", "iris/../setosa", "/etc", ".cache", ""])
def test_names_that_are_not_a_folder_of_the_repository_are_refused(
    repository: ModelRepository, name: str
) -> None:
    with pytest.raises(InvalidInput, match="Invalid model name"):
        asyncio.run(repository.load(name))
    assert list(repository.models) == ["iris", "setosa"]


def test_a_link_out_of_the_repository_is_refused(
    repository: ModelRepository, root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    shutil.copytree(root / "iris", outside)
    (root / "escape").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidInput, match="escape resolves outside the model directory"):
        asyncio.run(repository.load("escape"))
    assert "escape" not in repository.models
    assert "escape" not in [e["name"] for e in repository.index()], "listed, yet never loadable"

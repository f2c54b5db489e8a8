"""Shared fixtures: sample models trained once per session, and running servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from serverproc import ServerProcess


@pytest.fixture(scope="session")
def sample_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name -> directory of each sample model (examples/sample_models.py)."""
    import sample_models as samples

    return samples.write_all(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def iris_dir(sample_models: dict[str, Path]) -> Path:
    return sample_models["iris"]


@pytest.fixture(scope="session")
def iris_server(iris_dir: Path) -> Iterator[ServerProcess]:
    """sklearnserver serving the iris LogisticRegression as 'iris'."""
    server = ServerProcess("sklearnserver", ["--model_name=iris", f"--model_dir={iris_dir}"])
    with server:
        yield server


@pytest.fixture(scope="session")
def multi_server(sample_models: dict[str, Path]) -> Iterator[ServerProcess]:
    """sklearnserver over a directory with one sub-folder per model."""
    root = sample_models["iris"].parent
    server = ServerProcess("sklearnserver", ["--model_name=ignored", f"--model_dir={root}"])
    with server:
        yield server


@pytest.fixture(scope="session")
def framework_samples(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[str], dict[str, Path]]:
    """``framework_samples("xgboost")`` -> {sample name: model directory}, built once."""
    import sample_models

    built: dict[str, dict[str, Path]] = {}
    root = tmp_path_factory.mktemp("framework-models")

    def get(framework: str) -> dict[str, Path]:
        if framework not in built:
            built[framework] = sample_models.write(framework, root)
        return built[framework]

    return get

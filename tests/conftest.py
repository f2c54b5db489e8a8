"""Shared fixtures: sample models trained once per session, and running servers."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from serverproc import ServerProcess


def pytest_configure(config: pytest.Config) -> None:
    """Load Paddle before anything loads TensorFlow, in a process that may load both.

    The two frameworks' native libraries clash in one process when TensorFlow
    comes first: importing paddle afterwards dies of a segmentation fault in
    paddle.base.core (Paddle 3.3.1 and tensorflow-cpu 2.21.0). Paddle first,
    then TensorFlow, works. The servers never load both; only a test process
    that compares both frameworks' own answers (test_paddle.py and the
    TensorFlow tests collected by one worker) does.
    """
    import importlib.util

    if importlib.util.find_spec("paddle") and importlib.util.find_spec("tensorflow"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import paddle  # noqa: F401


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
    """``framework_samples("xgboost")`` -> {sample name: model directory}, built once.

    Once per test run, not per pytest-xdist worker: the first worker that
    needs a framework builds its samples in the run's shared temporary folder
    while the others wait on a lock, then all read them (tests copy a sample
    before changing it). Compiled samples (AOTInductor) take tens of seconds.
    """
    import sample_models

    built: dict[str, dict[str, Path]] = {}
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, above each worker's own
    root = root / "framework-models"
    root.mkdir(exist_ok=True)

    def get(framework: str) -> dict[str, Path]:
        if framework in built:
            return built[framework]
        index = root / f"{framework}.json"
        with (root / f"{framework}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not index.exists():
                samples = sample_models.write(framework, root)
                index.write_text(json.dumps({k: str(v) for k, v in samples.items()}))
        built[framework] = {k: Path(v) for k, v in json.loads(index.read_text()).items()}
        return built[framework]

    return get

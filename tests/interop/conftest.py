"""Clients of other servers, unmodified, against ours: tritonclient in this environment,
KServe's SDK and MLServer's codecs and gRPC client each in their own.

``kserve`` 0.21.0 pins pandas < 3 and python-dateutil < 3, and ``mlserver``
1.7.1 pins FastAPI < 0.116 (hence Starlette < 0.47): neither installs beside
our pins. Each runs from the virtual environment the benchmark harness builds
from its complete lock in bench/requirements/ (bench/.envs/kserve and
bench/.envs/mlserver, rebuilt only when the lock changes), as a small script
in ``clients/`` that talks to our real server and prints what the library
decoded as JSON, which the test compares with the framework's own answer.
"""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from serverproc import TEST_MODELS, ServerProcess, serving

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = Path(__file__).resolve().parent / "clients"

#: A client script run in its library's environment: JSON in (stdin), JSON out.
ForeignClient = Callable[[dict[str, Any]], Any]


def _environment(name: str) -> Path:
    """The Python of bench/.envs/<name>, built from its lock once (one builder at a time)."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from harness.envs import SetupError, ensure_venv
        from harness.paths import Paths
    finally:
        sys.path.pop(0)
    paths = Paths(ROOT)
    paths.envs.mkdir(parents=True, exist_ok=True)
    with (paths.envs / f".{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            ensure_venv(paths, name)
        except SetupError as exc:
            pytest.skip(f"the {name} client environment could not be built: {exc}")
    return paths.venv_bin(name)


def _client(name: str) -> ForeignClient:
    python = _environment(name)
    script = CLIENTS / f"{name}_client.py"

    def run(spec: dict[str, Any]) -> Any:
        done = subprocess.run(
            [str(python), str(script)],
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"{script.name} failed:\n{done.stdout}\n{done.stderr}"
        return json.loads(done.stdout)

    return run


@pytest.fixture(scope="session")
def kserve_client() -> ForeignClient:
    """KServe's SDK (InferenceRESTClient v1/v2, InferenceGRPCClient, its pydantic models)."""
    return _client("kserve")


@pytest.fixture(scope="session")
def mlserver_client() -> ForeignClient:
    """MLServer's codecs, its REST types and its gRPC stub and converters."""
    return _client("mlserver")


# -- the servers those clients talk to ------------------------------------------------------


def iris_texts() -> tuple[list[str], list[str]]:
    """Iris as text (each flower's features in words) and its species names: a text task
    built from data scikit-learn ships, for a TfidfVectorizer pipeline."""
    import numpy as np
    from sklearn.datasets import load_iris

    data = load_iris()
    bins = np.quantile(data.data, [1 / 3, 2 / 3], axis=0)
    words = ("short", "medium", "long")
    texts = []
    for row in data.data:
        size = (row > bins[0]).astype(int) + (row > bins[1]).astype(int)
        texts.append(
            " ".join(
                f"{name.split()[0]}{name.split()[1]}{words[s]}"
                for name, s in zip(data.feature_names, size, strict=True)
            )
        )
    return texts, [str(data.target_names[t]) for t in data.target]


@pytest.fixture(scope="session")
def text_pipeline() -> Any:
    """TfidfVectorizer + LogisticRegression on iris_texts(), as KServe's newsgroup example."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    texts, labels = iris_texts()
    return Pipeline([("tfidf", TfidfVectorizer()), ("clf", LogisticRegression(max_iter=1000))]).fit(
        texts, labels
    )


@pytest.fixture(scope="session")
def sklearn_root(
    tmp_path_factory: pytest.TempPathFactory, sample_models: dict[str, Path], text_pipeline: Any
) -> Path:
    """One sub-folder per model: iris, iris-pipeline (named columns, a string one), text."""
    import shutil

    import joblib

    root = tmp_path_factory.mktemp("interop-sklearn")
    for name in ("iris", "iris-pipeline"):
        shutil.copytree(sample_models[name], root / name)
    (root / "text").mkdir()
    joblib.dump(text_pipeline, root / "text" / "model.joblib")
    return root


@pytest.fixture(scope="session")
def sklearn_server(sklearn_root: Path) -> Iterator[ServerProcess]:
    """sklearnserver over sklearn_root, batching on and shared memory allowed."""
    yield from serving(
        "sklearnserver",
        "--model_name=unused",
        f"--model_dir={sklearn_root}",
        "--max_batch_size=8",
        "--allow_shared_memory",
    )


@pytest.fixture(scope="session")
def inspect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The core serving tests/models/inspect_model.py: it says what predict received."""
    model_dir = tmp_path_factory.mktemp("inspect")
    flags = ["--model_class=inspect_model:InspectModel", "--model_name=inspect"]
    yield from serving(
        "modelserver", *flags, f"--model_dir={model_dir}", env={"PYTHONPATH": str(TEST_MODELS)}
    )

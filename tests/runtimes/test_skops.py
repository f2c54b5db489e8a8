"""sklearnserver loading .skops files: only trusted types, untrusted ones named at startup.

The files are written by skops itself from estimators trained here. A
LogisticRegression holds only types skops trusts by default; a
RandomForestClassifier holds ``sklearn.tree._tree.Tree``, which skops does
not, so the server must refuse it by name until ``--trusted_types`` (or the
``TRUSTED_TYPES`` variable) lists it. Answers are compared with the
estimator predicting in this process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import skops.io as sio
from protocol_clients import PROTOCOLS, infer
from samples import tables
from serverproc import ServerProcess, run_to_exit

pytestmark = pytest.mark.e2e

TREE = "sklearn.tree._tree.Tree"


def _dump(estimator: Any, directory: Path) -> Path:
    directory.mkdir()
    sio.dump(estimator, directory / "model.skops")
    return directory


@pytest.fixture(scope="module")
def iris() -> tuple[np.ndarray, np.ndarray]:
    X, y = tables.iris()
    return X.to_numpy(), y.to_numpy()


@pytest.fixture(scope="module")
def linear(iris, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    from sklearn.linear_model import LogisticRegression

    estimator = LogisticRegression(max_iter=1000).fit(*iris)
    return estimator, _dump(estimator, tmp_path_factory.mktemp("skops") / "linear")


@pytest.fixture(scope="module")
def forest(iris, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    from sklearn.ensemble import RandomForestClassifier

    estimator = RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0).fit(*iris)
    directory = _dump(estimator, tmp_path_factory.mktemp("skops") / "forest")
    untrusted = sio.get_untrusted_types(file=estimator_file(directory))
    assert untrusted == [TREE], "skops' defaults changed: train a model of another type"
    return estimator, directory


def estimator_file(directory: Path) -> Path:
    return directory / "model.skops"


def _serves_like(server: ServerProcess, estimator: Any, X: np.ndarray) -> None:
    for protocol in PROTOCOLS:
        got = infer(server, "m", {"input-0": X}, protocol, ["predict", "predict_proba"])
        assert got["predict"].tolist() == estimator.predict(X).tolist(), protocol
        np.testing.assert_allclose(got["predict_proba"], estimator.predict_proba(X))
    reply = httpx.post(
        f"{server.http_url}/v1/models/m:predict", json={"instances": X.tolist()}, timeout=30
    )
    assert reply.json()["predictions"] == estimator.predict(X).tolist()


def test_a_skops_file_of_trusted_types_is_served(linear, iris) -> None:
    estimator, directory = linear
    assert sio.get_untrusted_types(file=estimator_file(directory)) == []
    with ServerProcess("sklearnserver", ["--model_name=m", f"--model_dir={directory}"]) as server:
        _serves_like(server, estimator, iris[0][::10])


def test_untrusted_types_stop_the_start_naming_them(forest) -> None:
    _, directory = forest
    done = run_to_exit("sklearnserver", ["--model_name=m", f"--model_dir={directory}"])
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output, output
    line = next(line for line in output.splitlines() if "cannot start" in line)
    assert TREE in line and f"--trusted_types {TREE}" in line, line


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_trusted_types_extend_the_list(forest, iris, how: str) -> None:
    estimator, directory = forest
    args = ["--model_name=m", f"--model_dir={directory}"]
    env = {}
    if how == "flag":
        args.append(f"--trusted_types=numpy.float64, {TREE}")
    else:
        env["TRUSTED_TYPES"] = TREE
    with ServerProcess("sklearnserver", args, env=env) as server:
        _serves_like(server, estimator, iris[0][::10])


def test_a_corrupt_skops_file_is_refused_by_name(tmp_path: Path) -> None:
    directory = tmp_path / "corrupt"
    directory.mkdir()
    (directory / "model.skops").write_bytes(b"PK\x03\x04 not really a zip archive" * 4)
    done = run_to_exit("sklearnserver", ["--model_name=m", f"--model_dir={directory}"])
    output = done.stdout + done.stderr
    assert done.returncode == 2 and "Traceback" not in output, output
    assert "model.skops" in output, output

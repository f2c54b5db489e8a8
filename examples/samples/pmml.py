"""PMML samples: two written by the standard converter (sklearn2pmml), two by hand.

PMML files come from other tools, so the runtime is tested on what a real
converter writes, and on hand-written files for what converters from
scikit-learn never write (a string categorical input, an integer input, a
tree with an explicit invalid-value treatment; outputs declared under names
of the file's own, as in KServe's pmmlserver example; a regression on a
power and a category)::

    OUT/pmml/iris/model.pmml       LogisticRegression on iris: 4 double fields, string target
    OUT/pmml/diabetes/model.pmml   LinearRegression of diabetes progression on bmi (one field)
    OUT/pmml/fruit/model.pmml      TreeModel, copied from examples/samples/pmml/fruit.pmml
    OUT/pmml/iris-tree/model.pmml  TreeModel on iris, from examples/samples/pmml/iris-tree.pmml
    OUT/pmml/house/model.pmml      RegressionModel of a price on a number, a square and a
                                   category, from examples/samples/pmml/house.pmml

sklearn2pmml starts a JVM per conversion (about 1-2 s each). Its converter
(jpmml-sklearn 1.9.41) refuses pickles from scikit-learn releases newer than
1.9.0, and it reads that version from the pickle; 1.9.1 is a bug-fix
release whose LogisticRegression and LinearRegression keep the same fitted
attributes, so the pickle handed to the converter reports 1.9.0.
"""

from __future__ import annotations

import contextlib
import io
import shutil
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

#: The newest scikit-learn release the bundled converter accepts.
CONVERTER_SKLEARN_VERSION = "1.9.0"

HAND_WRITTEN = Path(__file__).resolve().parent / "pmml"
NAMES = ("iris", "diabetes", "fruit", "iris-tree", "house")


@contextlib.contextmanager
def _converter_compatible_pickles() -> Iterator[None]:
    """Pickles that state a scikit-learn version the converter accepts (see module doc)."""
    import sklearn.base

    installed = sklearn.base.__version__
    if tuple(int(p) for p in installed.split(".")[:3]) <= (1, 9, 0):
        yield
        return
    sklearn.base.__version__ = CONVERTER_SKLEARN_VERSION
    try:
        yield
    finally:
        sklearn.base.__version__ = installed


def _convert(pipeline: Any, directory: Path) -> Path:
    from sklearn2pmml import sklearn2pmml

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "model.pmml"
    # The converter prints the JVM's log and a banner; keep them for a failure only.
    chatter = io.StringIO()
    try:
        with _converter_compatible_pickles(), contextlib.redirect_stdout(chatter):
            sklearn2pmml(pipeline, str(path))
    except Exception as exc:
        raise RuntimeError(f"sklearn2pmml failed for {path}:\n{chatter.getvalue()}") from exc
    return directory


def iris_pipeline() -> Any:
    """LogisticRegression on iris with named fields and species names as the target."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn2pmml.pipeline import PMMLPipeline

    from samples import tables

    X, target = tables.iris()
    names = {i: str(name) for i, name in enumerate(load_iris().target_names)}
    y = target.map(names).rename("species")
    return PMMLPipeline([("classifier", LogisticRegression(max_iter=1000))]).fit(X, y)


def diabetes_pipeline() -> Any:
    """LinearRegression of disease progression on body-mass index (scikit-learn's OLS example)."""
    from sklearn.linear_model import LinearRegression
    from sklearn2pmml.pipeline import PMMLPipeline

    from samples import tables

    X, target = tables.diabetes()
    return PMMLPipeline([("regressor", LinearRegression())]).fit(
        X[["bmi"]], target.rename("progression")
    )


def _hand_written(name: str, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(HAND_WRITTEN / f"{name}.pmml", directory / "model.pmml")
    return directory


def write(out: Path, only: Collection[str] | None = None) -> dict[str, Path]:
    """Write the PMML samples (or ``only`` those) under ``out/pmml/``.

    Returns name -> model directory.
    """
    from samples import chosen

    root = out / "pmml"
    samples = {
        "iris": lambda: _convert(iris_pipeline(), root / "iris"),
        "diabetes": lambda: _convert(diabetes_pipeline(), root / "diabetes"),
        "fruit": lambda: _hand_written("fruit", root / "fruit"),
        "iris-tree": lambda: _hand_written("iris-tree", root / "iris-tree"),
        "house": lambda: _hand_written("house", root / "house"),
    }
    return {name: samples[name]() for name in chosen(NAMES, only)}

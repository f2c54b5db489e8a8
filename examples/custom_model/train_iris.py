"""Train the custom iris model and write its artefact: plain JSON, no pickle.

A StandardScaler and a multinomial LogisticRegression are fitted on
scikit-learn's bundled iris data (nothing is downloaded; lbfgs is
deterministic), and what ``iris_custom.IrisModel`` needs to reproduce them
with numpy alone is written to ``model.json``: feature and class names, the
scaler's mean and scale, and the regression's weights (features x classes)
and bias. Floats are written with ``repr`` precision, so the served model
gives sklearn's probabilities to the last bits.

    python examples/custom_model/train_iris.py [OUT]   # writes OUT/custom/iris/model.json

``write(out)`` is the sample-model hook ``examples/sample_models.py`` calls.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

#: The samples ``write`` makes (examples/sample_models.py's convention).
NAMES = ("iris",)
FEATURE_NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def fit() -> Any:
    """The fitted Pipeline(StandardScaler, LogisticRegression) the artefact describes."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_iris(return_X_y=True)
    steps = [("scale", StandardScaler()), ("softmax", LogisticRegression(max_iter=1000))]
    return Pipeline(steps).fit(X, y)


def class_names() -> list[str]:
    from sklearn.datasets import load_iris

    return [str(name) for name in load_iris().target_names]


def artefact(pipeline: Any) -> dict[str, Any]:
    """The JSON-ready description of a fitted pipeline."""
    scaler, classifier = pipeline.named_steps["scale"], pipeline.named_steps["softmax"]
    return {
        "format": "iris-custom softmax regression, v1",
        "feature_names": FEATURE_NAMES,
        "class_names": class_names(),
        "mean": scaler.mean_.tolist(),
        "scale": scaler.scale_.tolist(),
        "weights": classifier.coef_.T.tolist(),
        "bias": classifier.intercept_.tolist(),
    }


def write_model(directory: Path) -> Path:
    """Train and write ``directory/model.json``; return the file."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "model.json"
    path.write_text(json.dumps(artefact(fit()), indent=1) + "\n", encoding="utf-8")
    return path


def write(out: Path, only: Collection[str] | None = None) -> dict[str, Path]:
    """Sample-model hook: ``out/custom/iris/model.json``; returns {"iris": its directory}."""
    if only is not None and set(only) - set(NAMES):
        raise ValueError(f"no sample {', '.join(sorted(set(only) - set(NAMES)))}; there is iris")
    directory = Path(out) / "custom" / "iris"
    write_model(directory)
    return {"iris": directory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, nargs="?", default=Path("build/models"))
    for name, directory in write(parser.parse_args().out).items():
        print(f"custom/{name}: {directory}")


if __name__ == "__main__":
    main()

"""The tables the tree-model samples are trained on, as DataFrames with usable column names.

scikit-learn ships iris, breast cancer and diabetes with names such as
``sepal length (cm)`` or ``mean radius``; the boosters keep whatever names
they are trained with, and those names become metadata and v2 input names,
so they are normalised here once (lower case, underscores, no units) for
every framework that trains on them.
"""

from __future__ import annotations

from typing import Any


def _clean(name: str) -> str:
    return name.replace(" (cm)", "").replace(" ", "_").lower()


def _frame(loader: Any) -> tuple[Any, Any]:
    data = loader(as_frame=True)
    return data.data.rename(columns=_clean), data.target


def iris() -> tuple[Any, Any]:
    """150 rows, 4 features, 3 classes (0, 1, 2)."""
    from sklearn.datasets import load_iris

    return _frame(load_iris)


def breast_cancer() -> tuple[Any, Any]:
    """569 rows, 30 features, 2 classes (0 malignant, 1 benign)."""
    from sklearn.datasets import load_breast_cancer

    return _frame(load_breast_cancer)


def diabetes() -> tuple[Any, Any]:
    """442 rows, 10 features, a continuous target (disease progression)."""
    from sklearn.datasets import load_diabetes

    return _frame(load_diabetes)

"""Per-feature contributions of scikit-learn models, from what scikit-learn itself exposes.

scikit-learn has no contribution API, so only models whose fitted attributes
determine them exactly explain, each checked at load on probe rows (a model
whose numbers do not add up to its own output does not explain):

* **Linear models** (``coef_``, ``intercept_``: LogisticRegression, Ridge,
  LinearSVC, SGD..., any estimator whose ``decision_function`` (classifiers)
  or ``predict`` (regressors) is ``x · coef + intercept``): contribution
  ``coef_j * x_j``, bias ``intercept``. scikit-learn keeps no mean of the
  training data, so alone the baseline is ``x = 0``; behind per-feature
  scalers in a Pipeline (StandardScaler, ...) ``x`` is the scaled input, and
  after a StandardScaler that is the input centred on the training mean the
  scaler stored (``coef_j * (x_j - mean_j) / scale_j``, the bias the average
  decision over the training data). A GLM whose ``predict`` is not linear
  (PoissonRegressor) fails the check and does not explain.
* **Tree models** (DecisionTree, ExtraTree, RandomForest, ExtraTrees,
  GradientBoosting): each split on a row's ``decision_path`` moves the
  prediction from the node's value to its child's, and that move is the
  split feature's (Saabas' attribution; not TreeSHAP, which scikit-learn does
  not compute); the bias is the root's value. Forests average their trees
  and add up to ``predict_proba`` (classifiers) or ``predict``; gradient
  boosting adds its stages times the learning rate to its constant initial
  score and adds up to ``decision_function`` or ``predict``.
  HistGradientBoosting has no ``decision_path`` and does not explain.

Contributions are per input column, so a Pipeline explains only when every
step before the model maps each column to itself (the scalers); a
ColumnTransformer or OneHotEncoder makes features that are not the inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import is_classifier
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, RobustScaler, StandardScaler
from sklearn.tree import BaseDecisionTree

#: Steps that map each column to itself: contributions stay the inputs'.
PER_FEATURE = (StandardScaler, MinMaxScaler, MaxAbsScaler, RobustScaler)
#: Forests whose prediction is the average of their trees'.
FORESTS = (RandomForestClassifier, RandomForestRegressor, ExtraTreesClassifier, ExtraTreesRegressor)

Rows = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Attribution:
    """How one model's contributions are computed, and what they add up to."""

    #: rows -> [N, K, F + 1], the bias last
    blocks: Rows
    #: rows -> the model's own raw output, [N, K]
    raw: Rows
    sums_to: str
    method: str
    #: the labels of K when there is a block per class
    classes: tuple[Any, ...]

    def contributions(self, rows: np.ndarray) -> np.ndarray:
        """[N, F + 1] for one block, else [N, K, F + 1]."""
        blocks = self.blocks(rows)
        return blocks if self.classes else blocks[:, 0, :]


def attribution(estimator: Any, n_features: int | None) -> Attribution | str:
    """The model's contributions, or why it has none (for the 501 and metadata)."""
    if not n_features:
        return "the estimator does not say how many features it takes"
    steps = getattr(estimator, "steps", None)
    final = steps[-1][1] if steps else estimator
    before = [step for _, step in steps[:-1] if step not in (None, "passthrough")] if steps else []
    mixing = [type(step).__name__ for step in before if not isinstance(step, PER_FEATURE)]
    if mixing:
        return (
            f"the Pipeline's {', '.join(mixing)} makes features that are not the inputs; only "
            "per-feature scalers may come before an explained model"
        )
    scale: Rows = estimator[:-1].transform if before else _same
    found = _trees(estimator, final, scale) or _linear(estimator, final, scale)
    if found is None:
        return (
            f"scikit-learn exposes no per-feature contributions for {type(final).__name__} "
            "models (linear models and DecisionTree, RandomForest, ExtraTrees and "
            "GradientBoosting models explain)"
        )
    if isinstance(found, str):
        return found
    return _checked(found, n_features)


def _same(rows: np.ndarray) -> np.ndarray:
    return rows


def _raw(estimator: Any, method: str) -> Rows:
    call = getattr(estimator, method)

    def raw(rows: np.ndarray) -> np.ndarray:
        values = np.asarray(call(rows), dtype=np.float64)
        return values.reshape(len(rows), -1)

    return raw


def _checked(found: Attribution, n_features: int) -> Attribution | str:
    """``found`` if its contributions add up to the model's own output on probe rows."""
    probe = np.vstack(
        [np.zeros(n_features), np.ones(n_features), np.arange(n_features) - n_features / 2]
    )
    try:
        sums = found.blocks(probe).sum(axis=2)
        raw = found.raw(probe)
    except Exception as exc:  # a model that cannot score the probe explains nothing
        return f"its contributions could not be checked: {type(exc).__name__}: {exc}"
    if sums.shape != raw.shape or not np.allclose(sums, raw, rtol=1e-6, atol=1e-8):
        return f"its contributions do not add up to its {found.sums_to} (checked at load)"
    return found


# -- linear models -------------------------------------------------------------------


def _linear(estimator: Any, final: Any, scale: Rows) -> Attribution | str | None:
    coef = getattr(final, "coef_", None)
    if coef is None or sp.issparse(coef):
        return None
    coef = np.atleast_2d(np.asarray(coef, dtype=np.float64))
    intercept = np.broadcast_to(
        np.asarray(getattr(final, "intercept_", 0.0), dtype=np.float64), coef.shape[:1]
    )
    classifier = is_classifier(final)
    if classifier and not hasattr(final, "decision_function"):
        return None
    if not classifier and len(coef) > 1:
        return "a linear model of several targets has no single output to explain"

    def blocks(rows: np.ndarray) -> np.ndarray:
        z = np.asarray(scale(rows), dtype=np.float64)
        parts = z[:, None, :] * coef[None, :, :]
        bias = np.broadcast_to(intercept, (len(z), len(intercept)))[:, :, None]
        return np.concatenate([parts, bias], axis=2)

    classes = tuple(getattr(final, "classes_", ()))
    if classifier:
        per_class = len(coef) > 1
        sums_to = "decision_function" + (
            "" if per_class else f" (the margin of class {_label(classes[-1])})"
        )
        raw = _raw(estimator, "decision_function")
    else:
        per_class, sums_to, raw = False, "predict", _raw(estimator, "predict")
    where = "the scaled input" if scale is not _same else "the input (baseline x = 0)"
    return Attribution(
        blocks,
        raw,
        sums_to,
        f"coef_ * {where}, bias intercept_",
        classes if per_class else (),
    )


def _label(value: Any) -> Any:
    item = getattr(value, "item", None)
    return item() if callable(item) else value


# -- tree models ---------------------------------------------------------------------


def _trees(estimator: Any, final: Any, scale: Rows) -> Attribution | str | None:
    if isinstance(final, BaseDecisionTree):
        members, paths = [(final.tree_, 1.0, None)], _own_paths(final)
    elif isinstance(final, FORESTS):
        weight = 1.0 / len(final.estimators_)
        members = [(tree.tree_, weight, None) for tree in final.estimators_]
        paths = _forest_paths(final)
    elif isinstance(final, GradientBoostingClassifier | GradientBoostingRegressor):
        return _boosted(estimator, final, scale)
    else:
        return None
    if getattr(final, "n_outputs_", 1) > 1:
        return "a tree model of several targets has no single output to explain"
    classifier = is_classifier(final)
    k = len(final.classes_) if classifier else 1
    paths_of = _composed(paths, scale)
    table, bias = _edge_table(members, final.n_features_in_, k, classifier)
    return Attribution(
        _path_blocks(paths_of, table, bias, final.n_features_in_, k),
        _raw(estimator, "predict_proba" if classifier else "predict"),
        "predict_proba" if classifier else "predict",
        "decision paths: each split's change of the node value, to its feature (Saabas)",
        tuple(final.classes_) if classifier else (),
    )


def _boosted(estimator: Any, final: Any, scale: Rows) -> Attribution | str:
    init = final.init_
    if not (init == "zero" or isinstance(init, DummyClassifier | DummyRegressor)):
        return f"its initial estimator ({type(init).__name__}) is not a constant"
    stages = final.estimators_
    k = stages.shape[1]
    members = [
        (stages[s, j].tree_, final.learning_rate, j)
        for s in range(stages.shape[0])
        for j in range(k)
    ]
    trees = [stages[s, j] for s in range(stages.shape[0]) for j in range(k)]

    def paths(rows: np.ndarray) -> Any:
        return sp.hstack([tree.decision_path(rows) for tree in trees], format="csr")

    classifier = is_classifier(final)
    method = "decision_function" if classifier else "predict"
    raw = _raw(estimator, method)
    paths_of = _composed(paths, scale)
    table, bias = _edge_table(members, final.n_features_in_, k, False)
    # The constant the stages start from: the model's score of any row minus its stages'.
    probe = np.zeros((1, final.n_features_in_))
    stage_sum = np.zeros(k)
    for tree, (_, weight, j) in zip(trees, members, strict=True):
        stage_sum[j] += weight * float(tree.predict(np.asarray(scale(probe)))[0])
    start = raw(probe)[0] - stage_sum
    classes = tuple(final.classes_) if classifier and k > 1 else ()
    sums_to = method
    if classifier and k == 1:
        sums_to += f" (the margin of class {_label(final.classes_[-1])})"
    return Attribution(
        _path_blocks(paths_of, table, bias + start, final.n_features_in_, k),
        raw,
        sums_to,
        "decision paths of every stage: each split's change of the node value times the "
        "learning rate, to its feature (Saabas)",
        classes,
    )


def _own_paths(tree: Any) -> Rows:
    return tree.decision_path  # type: ignore[no-any-return]


def _forest_paths(forest: Any) -> Rows:
    def paths(rows: np.ndarray) -> Any:
        indicator, _ = forest.decision_path(rows)
        return indicator

    return paths


def _composed(paths: Rows, scale: Rows) -> Rows:
    if scale is _same:
        return paths
    return lambda rows: paths(np.asarray(scale(rows)))


def _edge_table(
    members: Sequence[tuple[Any, float, int | None]], n_features: int, k: int, proba: bool
) -> tuple[Any, np.ndarray]:
    """The sparse [all nodes, F * K] table of each node's change from its parent, and the bias.

    ``members``: each tree, its weight and the output it adds to (None: all
    K). A path indicator row times this table is the row's contributions.
    """
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    bias = np.zeros(k)
    offset = 0
    for tree, weight, output in members:
        value = tree.value[:, 0, :].astype(np.float64)
        if proba:
            value = value / value.sum(axis=1, keepdims=True)
        left, right = tree.children_left, tree.children_right
        parent = np.full(tree.node_count, -1)
        inner = np.flatnonzero(left >= 0)
        parent[left[inner]] = inner
        parent[right[inner]] = inner
        nodes = np.flatnonzero(parent >= 0)
        delta = (value[nodes] - value[parent[nodes]]) * weight
        feature = tree.feature[parent[nodes]]
        targets = range(k) if output is None else [output]
        for column, t in enumerate(targets):
            rows.append(nodes + offset)
            cols.append(feature * k + t)
            vals.append(delta[:, column])
        root = value[0] * weight
        if output is None:
            bias += root
        else:
            bias[output] += root[0]
        offset += tree.node_count
    table = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(offset, n_features * k),
    )
    return table, bias


def _path_blocks(paths: Rows, table: Any, bias: np.ndarray, n_features: int, k: int) -> Rows:
    def blocks(rows: np.ndarray) -> np.ndarray:
        summed = np.asarray((paths(rows) @ table).todense()).reshape(len(rows), n_features, k)
        parts = summed.transpose(0, 2, 1)
        return np.concatenate([parts, np.broadcast_to(bias, (len(rows), k))[:, :, None]], axis=2)

    return blocks

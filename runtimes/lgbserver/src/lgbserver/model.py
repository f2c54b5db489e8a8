"""LightGBM runtime: one Booster from its model text (.txt, or .bst as KServe names it).

``Booster.save_model`` writes text whatever the suffix, so both load the
same way; a file that is not LightGBM's model text (a README.txt beside the
model) is refused by name at startup.

Named v2 inputs reach the model as a DataFrame: its columns are put in the
booster's feature order, so a client may send them in any order; a feature
the request lacks (or a row's hole) is missing, NaN, as KServe hands it to
LightGBM. Features
trained as pandas categoricals take their category as a string (BYTES): the
booster stores the training categories (``pandas_categorical``), and a
string is turned into its training code exactly as LightGBM does for a
DataFrame (a pandas Categorical with the training categories). A category
never seen in training becomes missing, which is what LightGBM itself does
with it, not an error: the model scores it as it would in the notebook.
Numbers sent for a categorical feature are taken as codes, as LightGBM takes
them from an array.

``--nthread`` becomes LightGBM's ``num_threads`` on every predict (0: its
default, every core). Outputs: ``predict`` (the default) is the Booster's
own prediction, as KServe returns it (probabilities for ``binary`` and
``multiclass``, values for regression); classifier objectives also offer
``predict_proba`` ([N, C]; binary as two columns) and ``predict_label``
(class index, INT64). ``contributions`` (and ``:explain``) are LightGBM's own
``pred_contrib``: per feature (per class for a multi-class objective) and the
bias, adding up to the raw score.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from modelserver import InvalidInput, Model, ModelLoadError, tabular, tensor_spec, without_optional

# A Booster is served, never LightGBM's scikit-learn classes: their import of
# scikit-learn (and SciPy's stack) would cost most of a second of every cold start.
with without_optional("sklearn"):
    import lightgbm as lgb
    from lightgbm.basic import LightGBMError

logger = logging.getLogger(__name__)

EXTENSIONS = (".txt", ".bst")
#: Objectives whose prediction is class probabilities.
CLASSIFIER_OBJECTIVES = frozenset({"binary", "multiclass", "multiclassova"})
#: The first line of every model text LightGBM writes.
HEADER = b"tree"


def is_model_text(path: Path) -> bool:
    """Whether ``path`` starts like LightGBM's model text (a README.txt does not)."""
    try:
        with path.open("rb") as f:
            return f.readline(16).strip() == HEADER
    except OSError:
        return False


def read_booster(path: Path) -> lgb.Booster:
    """Load LightGBM's model text from ``path``, or say why it is not one."""
    try:
        with path.open("rb") as f:
            first = f.readline(16).strip()
    except OSError as exc:
        raise ModelLoadError(f"Cannot read {path}: {exc}") from exc
    if first != HEADER:
        raise ModelLoadError(
            f"{path} is not a LightGBM model: the model text that Booster.save_model writes "
            f"(as .txt or .bst) starts with a '{HEADER.decode()}' line"
        )
    try:
        return lgb.Booster(model_file=str(path))
    except LightGBMError as exc:
        raise ModelLoadError(f"Cannot read {path} as a LightGBM model: {exc}") from None


def training_categories(booster: lgb.Booster) -> dict[int, pd.Index]:
    """Feature index -> its training categories (as strings), for pandas categoricals.

    ``pandas_categorical`` lists the categories of the DataFrame's category
    columns in column order, and the saved ``categorical_feature`` their
    indices; they pair up one to one unless some categorical was declared
    another way (an integer column), and then strings cannot be mapped safely.
    """
    stored = booster.pandas_categorical or []
    declared = booster.params.get("categorical_feature")
    indices = sorted([declared] if isinstance(declared, int) else list(declared or []))
    if len(stored) != len(indices):
        if stored:
            logger.warning(
                "%d pandas categoricals but categorical features %s: categories must be "
                "sent as their codes",
                len(stored),
                indices,
            )
        return {}
    return {
        int(index): pd.Index([str(c) for c in categories])
        for index, categories in zip(indices, stored, strict=True)
    }


class LightGBMModel(Model):
    """Serves one LightGBM Booster."""

    extensions = EXTENSIONS
    platform = "lightgbm"
    server_name = "lgbserver"
    input_errors = (*Model.input_errors, LightGBMError)
    missing_values = True

    @classmethod
    def accepts(cls, path: Path) -> bool:
        return path.suffix.lower() != ".txt" or is_model_text(path)

    def load(self) -> None:
        self.booster = read_booster(self.model_file())
        self.objective = str(self.booster.params.get("objective", ""))
        self.n_features = self.booster.num_feature()
        self.feature_names: list[str] = self.booster.feature_name()
        self.categories = training_categories(self.booster)
        self.nthread = self.settings.nthread
        self.predict_params: dict[str, Any] = {"num_threads": self.nthread} if self.nthread else {}
        self.n_classes = 0
        classifier = self.objective in CLASSIFIER_OBJECTIVES
        if classifier:
            self.n_classes = max(self.booster.num_model_per_iteration(), 2)
        # The shape of one row's prediction, seen rather than derived from the objective.
        predict_shape = list(self.predict(np.zeros((1, self.n_features))).shape[1:])
        tabular.declare_outputs(
            self.outputs,
            self.predict,
            "FP64",
            predict_shape,
            self.predict if classifier else None,
            self.n_classes,
        )
        self.trees_per_round = self.booster.num_model_per_iteration()
        self.explains(
            self._contributions,
            self.feature_names,
            sums_to="the raw score (predict raw_score=True: before the objective's link function)",
            method="LightGBM pred_contrib (TreeSHAP)",
            classes=range(self.trees_per_round) if self.trees_per_round > 1 else (),
        )

    def _features(self, inputs: Any) -> Any:
        """Rows of numbers for Booster.predict: named columns in order, categories as codes."""
        if tabular.is_frame(inputs):
            inputs = tabular.align_columns(self.name, inputs, self.feature_names, True)
        inputs = tabular.check_feature_count(self.name, inputs, self.n_features)
        if not tabular.is_frame(inputs) and inputs.dtype.kind in "biuf":
            return inputs
        table = inputs if tabular.is_frame(inputs) else pd.DataFrame(inputs)
        out = np.empty(table.shape, dtype=np.float64)
        for index in range(table.shape[1]):
            out[:, index] = self._column(index, table.iloc[:, index].to_numpy())
        return out

    def _column(self, index: int, values: np.ndarray) -> np.ndarray:
        """One feature as numbers: categories by their training code, unseen ones missing."""
        if values.dtype.kind in "biuf":
            return values
        categories = self.categories.get(index)
        if categories is None:
            raise InvalidInput(
                f"Model '{self.name}' feature '{self.feature_names[index]}' takes numbers; "
                "got strings (BYTES)"
            )
        codes = pd.Categorical(values, categories=categories).codes
        return np.where(codes < 0, np.nan, codes)

    def predict(self, inputs: Any) -> np.ndarray:
        return np.asarray(self.booster.predict(self._features(inputs), **self.predict_params))

    def _contributions(self, inputs: Any) -> np.ndarray:
        """SHAP values, the bias last: [N, F + 1], or [N, C, F + 1] per class.

        LightGBM lays a multi-class model's out as the C blocks side by side.
        """
        features = self._features(inputs)
        values = self.booster.predict(features, pred_contrib=True, **self.predict_params)
        blocks = np.asarray(values).reshape(len(features), self.trees_per_round, -1)
        return blocks if self.trees_per_round > 1 else blocks[:, 0, :]

    # -- metadata --------------------------------------------------------------

    def inputs_metadata(self) -> list[dict[str, Any]]:
        if not self.categories:
            return [tensor_spec("input-0", "FP64", [-1, self.n_features])]
        # Categories travel as strings, so each feature is its own named input.
        return [
            tensor_spec(name, "BYTES" if index in self.categories else "FP64", [-1])
            for index, name in enumerate(self.feature_names)
        ]

    def metadata_parameters(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "objective": self.objective,
            "feature_names": self.feature_names,
            "n_features": self.n_features,
            # LightGBM takes threads per predict call and keeps no setting to read back.
            "num_threads": self.nthread,
        }
        if self.n_classes:
            params["num_class"] = self.n_classes
        if self.categories:
            params["categories"] = {
                self.feature_names[i]: list(c) for i, c in self.categories.items()
            }
        return params

"""XGBoost runtime: one Booster from .json, .ubj or .bst, predicted in place.

The Booster is loaded once and every request goes through
``Booster.inplace_predict`` on the request's array: no DMatrix is built per
request (KServe's xgbserver builds one each time). ``--nthread`` (KServe
passes ``--nthread=1``) becomes the Booster's ``nthread``; 0 keeps XGBoost's
default (every core).

``.bst`` is KServe's historical file name. XGBoost 3 writes UBJSON into it,
which loads like ``.ubj``; XGBoost before 2.0 wrote its legacy binary format
there (binary was the default for any name but .json), which XGBoost 3.1 and
later cannot read at all, so such a file is recognised and refused at
startup with how to convert it.

Outputs: ``predict`` (the default) is the Booster's own prediction, as
KServe returns it: probabilities for ``binary:logistic`` and
``multi:softprob``, the class for ``multi:softmax``, values for regression.
Classifier objectives also offer ``predict_proba`` ([N, C]; binary as two
columns) and ``predict_label`` (class index, INT64). Metadata comes from the
Booster: feature count and names, objective, number of classes and the
thread count it actually uses.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np
from modelserver import Model, ModelLoadError, tabular, tensor_spec, without_optional

# A Booster is served, never xgboost's scikit-learn classes: their import of
# scikit-learn (SciPy, pandas) would cost about a second of every cold start.
with without_optional("sklearn"):
    import xgboost as xgb
    from xgboost.core import XGBoostError

EXTENSIONS = (".json", ".ubj", ".bst")


#: Classifier objectives whose prediction already is the class probabilities.
PROBABILITY_OBJECTIVES = frozenset({"binary:logistic", "multi:softprob"})
#: Predicts the class; its probabilities are the softmax of the margin, as
#: ``multi:softprob`` computes them.
SOFTMAX = "multi:softmax"


def _softmax(margin: np.ndarray) -> np.ndarray:
    shifted = np.exp(margin - margin.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


# -- the legacy binary format -------------------------------------------------
# Before JSON, XGBoost wrote (optionally after a "binf" magic) a 136-byte
# parameter block, then the objective's and the booster's names, each as a
# little-endian uint64 length and its bytes. JSON and UBJSON both start with "{".
LEGACY_MAGIC = b"binf"
LEGACY_PARAM_BYTES = 136
LEGACY_BOOSTERS = (b"gbtree", b"gblinear", b"dart")


def _legacy_string(head: bytes, offset: int) -> tuple[bytes, int]:
    (length,) = struct.unpack_from("<Q", head, offset)
    offset += 8
    if length >= 2**32:
        # Some old writers put the length in the high half and 4 bytes of padding after
        # it; XGBoost's own loader read both layouts.
        length >>= 32
        offset += 4
    if length > 64:
        raise ValueError("not a name")
    return head[offset : offset + length], offset + length


def is_legacy_binary(head: bytes) -> bool:
    """True when ``head`` (a file's first bytes) is XGBoost's pre-JSON binary model."""
    if head.startswith(LEGACY_MAGIC):
        return True
    try:
        objective, offset = _legacy_string(head, LEGACY_PARAM_BYTES)
        booster, _ = _legacy_string(head, offset)
    except (struct.error, ValueError):
        return False
    return objective.isascii() and booster in LEGACY_BOOSTERS


def _reason(exc: XGBoostError) -> str:
    """XGBoost's message without its timestamp, source location and stack trace."""
    text = str(exc).split("Stack trace:")[0].strip()
    return re.sub(r"^\[[\d:]+\] [^\s:]+:\d+: ", "", text)


def read_booster(path: Path, nthread: int) -> xgb.Booster:
    """Load ``path`` (JSON or UBJSON, told apart by content) or explain why it cannot be."""
    try:
        raw = bytearray(path.read_bytes())
    except OSError as exc:
        raise ModelLoadError(f"Cannot read {path}: {exc}") from exc
    head = bytes(raw[:512])
    if not head.lstrip().startswith(b"{") and is_legacy_binary(head):
        raise ModelLoadError(
            f"{path} is an XGBoost model in the legacy binary format, which XGBoost "
            f"{xgb.__version__} cannot read (support ended in 3.1). Re-save it as .json or .ubj "
            "with an older XGBoost (1.x to 3.0): "
            f"xgboost.Booster(model_file='{path.name}').save_model('model.json'), "
            "and serve that file instead."
        )
    params = {"nthread": nthread} if nthread > 0 else {}
    try:
        # From the buffer, XGBoost tells JSON from UBJSON by content, whatever the suffix.
        return xgb.Booster(params=params, model_file=raw)
    except XGBoostError as exc:
        raise ModelLoadError(f"Cannot read {path} as an XGBoost model: {_reason(exc)}") from None


class XGBoostModel(Model):
    """Serves one XGBoost Booster."""

    extensions = EXTENSIONS
    platform = "xgboost"
    server_name = "xgbserver"
    input_errors = (*Model.input_errors, XGBoostError)
    #: XGBoost scores NaN as a missing value, so named rows may lack a feature.
    missing_values = True

    def load(self) -> None:
        path = self.model_file()
        self.booster = read_booster(path, self.settings.nthread)
        learner = json.loads(self.booster.save_config())["learner"]
        self.objective: str = learner["objective"]["name"]
        self.nthread = int(learner["generic_param"]["nthread"])
        self.n_features = self.booster.num_features()
        names = self.booster.feature_names
        self.feature_names: list[str] | None = list(names) if names is not None else None
        self.n_classes = 0
        classifier = self.objective in PROBABILITY_OBJECTIVES or self.objective == SOFTMAX
        if classifier:
            self.n_classes = max(int(learner["learner_model_param"]["num_class"]), 2)
        # The shape of one row's prediction, seen rather than derived from the objective.
        predict_shape = list(self._inplace(np.zeros((1, self.n_features))).shape[1:])
        tabular.declare_outputs(
            self.outputs,
            self.predict,
            "FP32",
            predict_shape,
            self._probabilities if classifier else None,
            self.n_classes,
        )
        margin_shape = self._inplace(np.zeros((1, self.n_features)), predict_type="margin").shape
        self.explains(
            self._contributions,
            self.feature_names or [f"f{i}" for i in range(self.n_features)],
            sums_to=f"the margin (predict_type='margin': the score before {self.objective}'s "
            "link function)",
            method="XGBoost pred_contribs (TreeSHAP; a linear booster's weight times the value)",
            classes=range(margin_shape[1]) if len(margin_shape) > 1 else (),
            datatype="FP32",
        )

    # -- predict ---------------------------------------------------------------

    def _features(self, inputs: Any) -> Any:
        return tabular.numeric_rows(
            self.name, inputs, self.feature_names, self.n_features, fill_missing=True
        )

    def _inplace(self, features: Any, **kwargs: Any) -> np.ndarray:
        try:
            return self.booster.inplace_predict(features, **kwargs)
        except XGBoostError as exc:
            raise ValueError(_reason(exc)) from exc

    def _probabilities(self, inputs: Any) -> np.ndarray:
        features = self._features(inputs)
        if self.objective == SOFTMAX:
            return _softmax(self._inplace(features, predict_type="margin"))
        return self._inplace(features)

    def predict(self, inputs: Any) -> np.ndarray:
        return self._inplace(self._features(inputs))

    def _contributions(self, inputs: Any) -> np.ndarray:
        """SHAP values, the bias last: [N, F + 1], or [N, C, F + 1] per class."""
        matrix = xgb.DMatrix(self._features(inputs), nthread=self.nthread or None)
        try:
            return self.booster.predict(matrix, pred_contribs=True, validate_features=False)
        except XGBoostError as exc:
            raise ValueError(_reason(exc)) from exc

    # -- metadata --------------------------------------------------------------

    def inputs_metadata(self) -> list[dict[str, Any]]:
        # XGBoost computes in float32; FP64 and integer requests are accepted too.
        return [tensor_spec("input-0", "FP32", [-1, self.n_features])]

    def metadata_parameters(self) -> dict[str, Any]:
        # nthread as the booster reports it: what --nthread actually set.
        params: dict[str, Any] = {"objective": self.objective, "nthread": self.nthread}
        if self.n_classes:
            params["num_class"] = self.n_classes
        params["n_features"] = self.n_features
        if self.feature_names is not None:
            params["feature_names"] = self.feature_names
        return params

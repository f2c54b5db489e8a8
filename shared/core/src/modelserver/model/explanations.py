"""Per-feature contributions, computed by the framework: what a model declares to explain.

A runtime whose framework can say how much each feature moved a prediction
(XGBoost's ``pred_contribs``, LightGBM's ``pred_contrib``, a linear model's
coefficients) declares it once in ``load`` with ``Model.explains``. The core
then serves it everywhere an output goes and more:

* the output ``contributions`` (not a default; any v2 request, REST or gRPC,
  may select it, and batching, statistics and the response cache treat it as
  any other output): one row per input row, ``[N, F + 1]``, or
  ``[N, C, F + 1]`` with one block per class; the last entry of each block is
  the bias, as XGBoost and LightGBM lay theirs out, so each block adds up to
  the model's raw output (``sums_to`` says which);
* KServe v1 ``POST /v1/models/{name}:explain``, answered as
  ``{"explanations": [{"contributions", "bias", "feature_names"}, ...]}``;
* the model's metadata (``parameters.explanations``), which says whether it
  explains, and if not, why.

No explainer library is involved: the numbers are the framework's own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

#: The output that holds the contributions.
CONTRIBUTIONS = "contributions"

#: The model's input -> its contributions, ``[N, F + 1]`` or ``[N, C, F + 1]``, bias last.
Contributions = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Explainer:
    """What a model declared about its contributions."""

    compute: Contributions
    #: One name per feature, in the order of the contributions.
    feature_names: tuple[str, ...]
    #: What contributions plus bias add up to, in words ("the margin (log-odds)").
    sums_to: str
    #: How the framework computes them ("XGBoost pred_contribs (TreeSHAP)").
    method: str
    #: The labels of the class axis, when there is one block per class.
    classes: tuple[Any, ...] = ()

    @property
    def per_class(self) -> bool:
        return bool(self.classes)

    def shape(self) -> list[int]:
        """The output's declared shape: rows, [classes,] features and the bias."""
        features = len(self.feature_names) + 1
        return [-1, len(self.classes), features] if self.per_class else [-1, features]

    def metadata(self) -> dict[str, Any]:
        """``parameters.explanations`` of a model that explains."""
        meta: dict[str, Any] = {
            "supported": True,
            "output": CONTRIBUTIONS,
            "feature_names": list(self.feature_names),
            "sums_to": self.sums_to,
            "method": self.method,
        }
        if self.per_class:
            meta["classes"] = list(self.classes)
        return meta


def explainer(
    compute: Contributions,
    feature_names: Sequence[str],
    sums_to: str,
    method: str,
    classes: Sequence[Any] = (),
) -> Explainer:
    """An ``Explainer``, with feature names and class labels as plain values (for JSON)."""
    return Explainer(
        compute,
        tuple(str(n) for n in feature_names),
        sums_to,
        method,
        tuple(_plain(c) for c in classes),
    )


def _plain(value: Any) -> Any:
    """A numpy scalar (a class label) as the Python value JSON can hold."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value

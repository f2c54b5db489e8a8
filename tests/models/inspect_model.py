"""A custom model that tells what its predict received, for the input-decoding tests.

Served by the real core through ``python -m modelserver --model_class
inspect_model:InspectModel``. The core's default preprocess hands predict
one array (or a DataFrame); the model answers, per element, its Python type
(``kinds``) and its value as text (``values``: bytes as hex, datetimes in
ISO 8601, anything else as ``str``), and the array's ``shape``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
from modelserver import Model


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


class InspectModel(Model):
    platform = "inspect"
    batchable = False

    def load(self) -> None:
        self.outputs.add("values", "BYTES", [-1])
        self.outputs.add("kinds", "BYTES", [-1])
        self.outputs.add("shape", "INT64", [-1])

    def predict(self, inputs: Any) -> dict[str, Any]:
        array = np.asarray(inputs)
        flat = array.reshape(-1).tolist()
        return {
            "values": np.array([_text(v) for v in flat], dtype=object),
            "kinds": np.array([type(v).__name__ for v in flat], dtype=object),
            "shape": np.array(array.shape, dtype=np.int64),
        }

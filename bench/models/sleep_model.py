"""A model whose predict takes a set time, for the non-blocking benchmark.

Each model folder holds ``model.sleep``: ``sleep 0.1`` sleeps 100 ms per call,
``compute 0.1`` keeps numpy busy (GIL released in BLAS) for about as long,
``sleep 0`` answers at once. Served by the real core with ``python -m
modelserver --model_class sleep_model:SleepModel``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from modelserver import Model
from modelserver.model.discovery import find_model_file


class SleepModel(Model):
    extensions = (".sleep",)
    platform = "bench-sleep"

    def load(self) -> None:
        assert self.model_dir is not None
        kind, seconds = find_model_file(self.model_dir, self.extensions).read_text().split()
        self.kind, self.seconds = kind, float(seconds)
        self._matrix = np.random.default_rng(0).random((400, 400))

    def predict(self, inputs: Any) -> Any:
        if self.kind == "sleep":
            time.sleep(self.seconds)
        else:
            deadline = time.perf_counter() + self.seconds
            while time.perf_counter() < deadline:
                self._matrix @ self._matrix
        return np.asarray(inputs, dtype=np.float64).sum(axis=1)

"""Models that take their time, for the non-blocking and load-before-listen tests.

``SlowModel.predict`` sleeps for the number of seconds given as its input;
``SlowLoadModel.load`` sleeps ``SLOW_LOAD_SECONDS`` (default 3) before it is
ready. Both are real models served by the real core.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
from modelserver import Model


class SlowModel(Model):
    platform = "test-slow"

    def load(self) -> None:
        """Nothing to read: the behaviour is all in predict."""

    def predict(self, inputs: Any) -> Any:
        seconds = float(np.asarray(inputs).reshape(-1)[0])
        time.sleep(seconds)
        return np.asarray([seconds])


class SlowLoadModel(SlowModel):
    def load(self) -> None:
        time.sleep(float(os.environ.get("SLOW_LOAD_SECONDS", "3")))


class PidModel(SlowModel):
    """Sleeps for its input in seconds, then answers with the pid of the process that served."""

    def predict(self, inputs: Any) -> Any:
        super().predict(inputs)
        return np.asarray([os.getpid()], dtype=np.int64)

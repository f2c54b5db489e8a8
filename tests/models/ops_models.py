"""A slow model that can be discovered in sub-folders, fail on purpose and count its calls.

For the operations tests (limits, shutdown, repository). Served by the real
core through ``python -m modelserver --model_class ops_models:CountingSlowModel``:

* a model is a directory holding one ``*.slow`` file, so a directory of such
  sub-folders is a multi-model repository (``SlowModel`` has no extension and
  is always served as a single model);
* ``predict`` sleeps for the largest value of its input in seconds and
  returns the first column (one value per row, so batching can split it);
* the ``calls`` output reports how many times ``predict`` of this model name
  ran in this process: a side effect that tells whether abandoned work ran;
* a ``*.slow`` file whose text starts with ``fail`` makes ``load`` raise;
* with ``OPS_LOAD_LOG`` set, every load appends its resolved directory to
  that file, so a test can prove no directory outside the repository was read.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from modelserver import Model
from modelserver.model.discovery import find_model_file

_lock = threading.Lock()
#: model name -> predict calls in this process
CALLS: dict[str, int] = {}


class CountingSlowModel(Model):
    platform = "test-slow"
    extensions = (".slow",)

    def load(self) -> None:
        assert self.model_dir is not None
        log = os.environ.get("OPS_LOAD_LOG")
        if log:
            with Path(log).open("a", encoding="utf-8") as f:
                f.write(f"{self.model_dir.resolve()}\n")
        marker = find_model_file(self.model_dir, self.extensions)
        text = marker.read_text(encoding="utf-8").strip()
        if text.startswith("fail"):
            raise RuntimeError(f"{marker.name} asks to fail: {text}")
        self.outputs.add("predict", "FP64", [-1])
        self.outputs.add("calls", "INT64", [-1], self._calls, default=False)

    def predict(self, inputs: Any) -> Any:
        with _lock:
            CALLS[self.name] = CALLS.get(self.name, 0) + 1
        values = np.asarray(inputs, dtype=np.float64).reshape(len(inputs), -1)
        time.sleep(float(values.max()))
        return values[:, 0]

    def _calls(self, inputs: Any) -> Any:
        with _lock:
            count = CALLS.get(self.name, 0)
        return np.full(len(inputs), count, dtype=np.int64)

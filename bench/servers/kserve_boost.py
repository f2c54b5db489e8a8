"""KServe's xgbserver and lgbserver, as KServe documents and ships them, on ``kserve==0.21.0``.

KServe's framework servers are not on PyPI; this file follows what their
``model.py`` does per request, on the same ``kserve.ModelServer`` as
kserve_iris.py (v1 and v2 REST through uvicorn, v2 gRPC through grpc.aio):

* ``xgboost``: ``xgb.Booster(model_file=...)``; per request the decoded
  input becomes an ``xgb.DMatrix`` (nthread as configured) and
  ``booster.predict(dmatrix)`` answers (one deviation: the DMatrix gets the
  booster's feature names, without which KServe's code refuses the iris
  sample's unnamed array);
* ``lightgbm``: ``lgb.Booster(model_file=...)``; per request the decoded
  input becomes a pandas DataFrame with the booster's feature names and
  ``booster.predict(frame)`` answers.

Per-request logging is off, as in kserve_iris.py. Run in bench/.envs/kserve:

    python kserve_boost.py --framework xgboost --model_name iris --model_dir DIR \
        --http_port P --grpc_port G --workers 1
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kserve import Model, model_server
from kserve.errors import ModelMissingError
from kserve_iris import answer, arguments, serve  # its neighbour: what every KServe server does

MODEL_FILES = (".json", ".ubj", ".bst", ".txt")


class BoosterModel(Model):
    """One XGBoost or LightGBM booster file, predicted the way KServe's runtime does."""

    def __init__(self, name: str, model_dir: str, framework: str, nthread: int = 1):
        super().__init__(name)
        self.model_dir = model_dir
        self.framework = framework
        self.nthread = nthread
        self.ready = False

    def load(self) -> bool:
        files = [p for p in Path(self.model_dir).iterdir() if p.name.endswith(MODEL_FILES)]
        if not files:
            raise ModelMissingError(self.model_dir)
        if self.framework == "xgboost":
            import xgboost as xgb

            self._booster = xgb.Booster(params={"nthread": self.nthread}, model_file=str(files[0]))
        else:
            import lightgbm as lgb

            self._booster = lgb.Booster(model_file=str(files[0]))
        self.ready = True
        return self.ready

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        return answer(payload, self.name, self._predict)

    def _predict(self, instances: Any) -> Any:
        if self.framework == "xgboost":
            import xgboost as xgb

            names = self._booster.feature_names  # KServe's as-is refuses unnamed arrays
            matrix = xgb.DMatrix(instances, nthread=self.nthread, feature_names=names)
            return self._booster.predict(matrix)
        import pandas as pd

        frame = pd.DataFrame(instances, columns=self._booster.feature_name())
        return self._booster.predict(frame)


def main() -> None:
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--framework", required=True, choices=["xgboost", "lightgbm"])
    parser.add_argument("--nthread", type=int, default=1)
    args = arguments(parser)
    serve(BoosterModel(args.model_name, args.model_dir, args.framework, args.nthread), args)


if __name__ == "__main__":
    main()

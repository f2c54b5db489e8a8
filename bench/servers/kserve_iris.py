"""KServe's own sklearnserver, reduced to the benchmark's model file.

KServe's sklearnserver image is ``python -m sklearnserver`` from the KServe
repository, which is not on PyPI; this file is its ``model.py`` and
``__main__.py`` on top of ``kserve==0.21.0``: a ``kserve.Model`` that
``joblib.load``s the file and answers with ``get_predict_input`` /
``get_predict_response`` exactly as KServe does, served by ``kserve.ModelServer``
(v1 and v2 REST through uvicorn, v2 gRPC through its grpc.aio server when
``--enable_grpc`` is true, the default). Run in bench/.envs/kserve:

    python kserve_iris.py --model_name iris --model_dir DIR --http_port P --grpc_port G --workers 1

Per-request logging (uvicorn's access log and the ``kserve.trace`` timing
line KServe writes for every request) is switched off unless
``--request_logs true``, because our server logs nothing per request by
default and a benchmark of log formatting would say little about serving.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
from kserve import Model, ModelServer, model_server
from kserve.errors import InferenceError, ModelMissingError
from kserve.utils.utils import get_predict_input, get_predict_response

MODEL_EXTENSIONS = (".joblib", ".pkl", ".pickle")


class SKLearnModel(Model):
    """KServe's SKLearnModel: one estimator file, ``predict`` on whatever the protocol decoded."""

    def __init__(self, name: str, model_dir: str):
        super().__init__(name)
        self.model_dir = model_dir
        self.ready = False

    def load(self) -> bool:
        files = [p for p in Path(self.model_dir).iterdir() if p.name.endswith(MODEL_EXTENSIONS)]
        if not files:
            raise ModelMissingError(self.model_dir)
        self._model = joblib.load(files[0])
        self.ready = True
        return self.ready

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        return answer(payload, self.name, self._model.predict)


def answer(payload: Any, name: str, predict: Callable[[Any], Any]) -> Any:
    """KServe's per-request path: the protocol's input, ``predict``, its response."""
    try:
        instances = get_predict_input(payload)
        return get_predict_response(payload, predict(instances), name)
    except Exception as exc:
        raise InferenceError(str(exc)) from exc


def arguments(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """KServe's flags plus ours (--model_dir, --request_logs)."""
    parser.add_argument("--model_dir", required=True, help="directory holding the model file")
    parser.add_argument("--request_logs", default="false", choices=["true", "false"])
    args, _ = parser.parse_known_args()
    return args


def serve(model: Model, args: argparse.Namespace) -> None:
    """Load ``model`` and serve it with kserve.ModelServer, per-request logs as asked."""
    model.load()
    server = ModelServer()  # reads --http_port, --grpc_port, --workers... itself
    if args.request_logs == "false":
        logging.getLogger("uvicorn.access").disabled = True
        logging.getLogger("kserve.trace").disabled = True
    server.start([model])


def main() -> None:
    args = arguments(argparse.ArgumentParser(parents=[model_server.parser]))
    serve(SKLearnModel(args.model_name, args.model_dir), args)


if __name__ == "__main__":
    main()

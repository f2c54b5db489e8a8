"""The floor: one Starlette route that decodes a v2 body, predicts inline and answers.

No framework around it (no FastAPI, no validation, no model repository, no
executor hop, no error mapping), on the same uvicorn + httptools + uvloop and
the same model file as our server. What our server costs above this route is
the price of its protocol coverage and robustness; the ratio ours ÷ bare says
how much of the request is ours to optimise. It speaks v2 REST only: JSON,
and the binary tensor extension (FP32 input, binary INT64 output when
``binary_data_output`` is set), which is all the harness sends it.

    python bare.py --model_dir DIR --port P   # run with our venv's Python
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

JSON = "application/json"
#: Little-endian wire dtypes of the outputs the bare routes answer.
WIRE = {"INT64": "<i8", "FP32": "<f4"}


async def read_v2(request: Request) -> tuple[dict[str, Any], np.ndarray]:
    """The v2 body's JSON and its one FP32 input, from JSON or the binary extension."""
    body = await request.body()
    header_length = request.headers.get("inference-header-content-length")
    if header_length is None:
        payload = orjson.loads(body)
        tensor = payload["inputs"][0]
        return payload, np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
    split = int(header_length)
    payload = orjson.loads(body[:split])
    tensor = payload["inputs"][0]
    return payload, np.frombuffer(body[split:], dtype="<f4").reshape(tensor["shape"])


def v2_reply(payload: dict[str, Any], model: str, name: str, datatype: str, y: Any) -> Response:
    """One output as v2 JSON, or binary when the request set ``binary_data_output``."""
    y = np.asarray(y)
    output: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(y.shape)}
    if payload.get("parameters", {}).get("binary_data_output"):
        data = y.astype(WIRE[datatype]).tobytes()
        output["parameters"] = {"binary_data_size": len(data)}
        head = orjson.dumps({"model_name": model, "outputs": [output]})
        return Response(
            head + data,
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(len(head))},
        )
    output["data"] = y.reshape(-1)
    body = orjson.dumps(
        {"model_name": model, "outputs": [output]}, option=orjson.OPT_SERIALIZE_NUMPY
    )
    return Response(body, media_type=JSON)


async def ready(request: Request) -> Response:
    return Response(b'{"ready":true}', media_type=JSON)


def build_app(model: Any, name: str, datatype: str = "INT64") -> Starlette:
    async def infer(request: Request) -> Response:
        payload, x = await read_v2(request)
        return v2_reply(payload, name, "predict", datatype, model.predict(x))

    return Starlette(
        routes=[
            Route(f"/v2/models/{name}/infer", infer, methods=["POST"]),
            Route("/v2/health/ready", ready, methods=["GET"]),
        ]
    )


def serve(app: Starlette, port: int, host: str = "0.0.0.0") -> None:
    """uvicorn with uvloop and httptools, no lifespan, no access log: as our server runs."""
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        server_header=False,
        date_header=False,
    )


class Inplace:
    """An XGBoost Booster scored on the array itself (``inplace_predict``, no DMatrix)."""

    def __init__(self, booster: Any) -> None:
        self.booster = booster

    def predict(self, x: np.ndarray) -> Any:
        return self.booster.inplace_predict(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model_dir", type=Path, required=True)
    parser.add_argument("--model_name", default="iris")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--framework",
        default="sklearn",
        choices=["sklearn", "xgboost", "lightgbm"],
        help="sklearn: the joblib file's predict; xgboost: Booster.inplace_predict; "
        "lightgbm: Booster.predict on the array (FP32 scores out)",
    )
    args = parser.parse_args()
    if args.framework == "sklearn":
        model = joblib.load(next(args.model_dir.glob("*.joblib")))
        serve(build_app(model, args.model_name), args.port)
        return
    model_file = str(next(args.model_dir.glob("model.*")))
    if args.framework == "xgboost":
        import xgboost

        scorer: Any = Inplace(xgboost.Booster(model_file=model_file))
    else:
        import lightgbm

        scorer = lightgbm.Booster(model_file=model_file)
    serve(build_app(scorer, args.model_name, "FP32"), args.port)


if __name__ == "__main__":
    main()

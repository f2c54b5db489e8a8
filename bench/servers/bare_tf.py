"""The TensorFlow floor: one Starlette route per protocol around TF in-process, inline.

TF Serving itself (``tensorflow_model_server``) cannot be had here: it is
neither on PyPI (only its client, ``tensorflow-serving-api``) nor in Debian,
and its own apt repository and Docker image are not reachable. So tfserver is
compared with the least a Python server can do around the same TensorFlow
call: the SavedModel loaded into a session as tfserver loads it, the
``serving_default`` signature run with a ``Session.make_callable`` inline on
the event loop, and two routes that parse with orjson and answer:

* ``POST /v1/models/{name}:predict`` (TF Serving's REST row format,
  ``{"instances": [...]}`` -> ``{"predictions": [...]}``, one input and one output);
* ``POST /v2/models/{name}/infer`` (Open Inference Protocol JSON, and the binary
  tensor extension with ``binary_data_output``).

No validation, no error mapping, no batching, no metrics, same uvicorn +
httptools + uvloop as tfserver.

    python bare_tf.py --model_dir DIR --port P   # with our venv's Python
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

JSON = "application/json"
NUMPY = orjson.OPT_SERIALIZE_NUMPY


def load(model_dir: Path, nthread: int) -> tuple[Any, str]:
    """The callable of serving_default (one FP32 input, one FP32 output) and its output alias."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    config = tf.compat.v1.ConfigProto(
        intra_op_parallelism_threads=nthread, inter_op_parallelism_threads=nthread
    )
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph, config=config)
    with graph.as_default():
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(model_dir))
    signature = meta.signature_def["serving_default"]
    ((info_in),) = signature.inputs.values()
    ((alias_out, info_out),) = signature.outputs.items()
    run = session.make_callable([info_out.name], [info_in.name])
    return run, alias_out


def build_app(model_dir: Path, name: str, nthread: int) -> Starlette:
    run, alias_out = load(model_dir, nthread)

    async def predict(request: Request) -> Response:
        payload = orjson.loads(await request.body())
        x = np.asarray(payload["instances"], dtype=np.float32)
        (y,) = run(x)
        return Response(orjson.dumps({"predictions": y}, option=NUMPY), media_type=JSON)

    async def infer(request: Request) -> Response:
        body = await request.body()
        header_length = request.headers.get("inference-header-content-length")
        if header_length is None:
            payload = orjson.loads(body)
            tensor = payload["inputs"][0]
            x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        else:
            split = int(header_length)
            payload = orjson.loads(body[:split])
            tensor = payload["inputs"][0]
            x = np.frombuffer(body[split:], dtype="<f4").reshape(tensor["shape"])
        (y,) = run(x)
        output: dict[str, Any] = {"name": alias_out, "datatype": "FP32", "shape": list(y.shape)}
        if payload.get("parameters", {}).get("binary_data_output"):
            data = y.astype("<f4").tobytes()
            output["parameters"] = {"binary_data_size": len(data)}
            head = orjson.dumps({"model_name": name, "outputs": [output]})
            return Response(
                head + data,
                media_type="application/octet-stream",
                headers={"Inference-Header-Content-Length": str(len(head))},
            )
        output["data"] = y.reshape(-1)
        body = orjson.dumps({"model_name": name, "outputs": [output]}, option=NUMPY)
        return Response(body, media_type=JSON)

    async def ready(request: Request) -> Response:
        return Response(b'{"ready":true}', media_type=JSON)

    return Starlette(
        routes=[
            Route(f"/v1/models/{name}:predict", predict, methods=["POST"]),
            Route(f"/v2/models/{name}/infer", infer, methods=["POST"]),
            Route("/v2/health/ready", ready, methods=["GET"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_dir", type=Path, required=True)
    parser.add_argument("--model_name", default="m")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--nthread", type=int, default=1)
    args = parser.parse_args()
    uvicorn.run(
        build_app(args.model_dir, args.model_name, args.nthread),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        server_header=False,
        date_header=False,
    )


if __name__ == "__main__":
    main()

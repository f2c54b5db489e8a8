"""The TensorFlow floor: one Starlette route per protocol around TF in-process, inline.

TF Serving itself (``tensorflow_model_server``) cannot be had here: it is
neither on PyPI (only its client, ``tensorflow-serving-api``) nor in Debian,
and its own apt repository and Docker image are not reachable. So tfserver is
compared with the least a Python server can do around the same TensorFlow
call: the SavedModel loaded into a session as tfserver loads it, the
``serving_default`` signature run with the same session callable inline on
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
from bare import JSON, read_v2, ready, serve, v2_reply  # this folder's bare route
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

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
    from tensorflow.core.protobuf import config_pb2

    # The C API's session callable, as tfserver runs a signature (the fastest call there is).
    options = config_pb2.CallableOptions(feed=[info_in.name], fetch=[info_out.name])
    run = session._make_callable_from_options(options)
    return run, alias_out


def build_app(model_dir: Path, name: str, nthread: int) -> Starlette:
    run, alias_out = load(model_dir, nthread)

    async def predict(request: Request) -> Response:
        payload = orjson.loads(await request.body())
        (y,) = run(np.asarray(payload["instances"], dtype=np.float32))
        return Response(orjson.dumps({"predictions": y}, option=NUMPY), media_type=JSON)

    async def infer(request: Request) -> Response:
        payload, x = await read_v2(request)
        (y,) = run(x)
        return v2_reply(payload, name, alias_out, "FP32", y)

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
    serve(build_app(args.model_dir, args.model_name, args.nthread), args.port, "127.0.0.1")


if __name__ == "__main__":
    main()

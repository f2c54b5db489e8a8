"""KServe's SDK against a server: a JSON spec on stdin, what the SDK decoded on stdout.

Run by tests/interop with bench/.envs/kserve's Python (kserve 0.21.0). The
spec is ``{"calls": [...]}``; each call is answered in order, an exception
as ``{"error": "<type>: <message>"}``:

* ``rest`` — ``InferenceRESTClient`` (``protocol`` v1 or v2) posts ``data``
  (a dict, as KServe's sample payloads are) or an ``InferRequest`` built
  from ``inputs`` (no id); v2 answers are KServe's ``InferResponse``;
* ``grpc`` — ``InferenceGRPCClient`` sends an ``InferRequest`` from ``inputs``;
* ``pydantic`` — posts ``data`` and parses the raw answer with KServe's
  pydantic ``InferenceResponse`` (which requires an ``id``).
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.request
from typing import Any

import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.rest.v2_datamodels import InferenceResponse

NUMPY = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}


def _request(model: str, inputs: list[dict[str, Any]]) -> InferRequest:
    tensors = []
    for spec in inputs:
        tensor = InferInput(name=spec["name"], shape=spec["shape"], datatype=spec["datatype"])
        if spec["datatype"] == "BYTES":
            data = np.array([s.encode() for s in spec["data"]], dtype=np.object_)
        else:
            data = np.asarray(spec["data"], dtype=NUMPY[spec["datatype"]])
        tensor.set_data_from_numpy(data.reshape(spec["shape"]), binary_data=False)
        tensors.append(tensor)
    return InferRequest(model_name=model, infer_inputs=tensors)


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _decoded(response: Any) -> Any:
    if isinstance(response, dict):  # v1
        return response
    return {
        "id": response.id,
        "model_name": response.model_name,
        "outputs": [
            {
                "name": out.name,
                "datatype": out.datatype,
                "shape": list(out.shape),
                "parameters": dict(out.parameters or {}),
                "data": _plain(out.as_numpy().tolist()),
            }
            for out in response.outputs
        ],
    }


async def _call(call: dict[str, Any]) -> Any:
    kind = call["op"]
    if kind == "rest":
        client = InferenceRESTClient(RESTConfig(protocol=call["protocol"]))
        data = call["data"] if "data" in call else _request(call["model"], call["inputs"])
        try:
            return _decoded(await client.infer(call["url"], data, model_name=call["model"]))
        finally:
            await client.close()
    if kind == "grpc":
        client = InferenceGRPCClient(call["address"])
        try:
            return _decoded(await client.infer(_request(call["model"], call["inputs"])))
        finally:
            await client.close()
    if kind == "pydantic":
        body = json.dumps(call["data"]).encode()
        url = f"{call['url']}/v2/models/{call['model']}/infer"
        post = urllib.request.Request(url, body, {"content-type": "application/json"})
        with urllib.request.urlopen(post, timeout=60) as reply:
            parsed = InferenceResponse.model_validate_json(reply.read())
        return {"id": parsed.id, "outputs": [o.name for o in parsed.outputs]}
    raise ValueError(f"unknown op {kind!r}")


async def main() -> None:
    spec = json.load(sys.stdin)
    answers = []
    for call in spec["calls"]:
        try:
            answers.append(await _call(call))
        except Exception as exc:
            answers.append({"error": f"{type(exc).__name__}: {exc}"})
    json.dump(answers, sys.stdout)


if __name__ == "__main__":
    asyncio.run(main())

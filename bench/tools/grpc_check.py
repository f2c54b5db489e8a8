"""Send the exact gRPC frame the load generator sends, with a real gRPC client, once.

h2load sends a pre-serialized frame and never reads trailers, so it cannot
tell an answer from a ``grpc-status`` error. This check, run once per server
before its gRPC loads, proves that the same bytes get grpc-status 0 and the
expected predictions, and reports the response's framed size: the harness
compares it with h2load's data bytes per request to spot errors in the run.

    python bench/tools/grpc_check.py --port 8081 --frame grpc-1.frame

prints one JSON object: ``code``, ``details``, ``predictions``, ``response_frame_bytes``.
"""

from __future__ import annotations

import argparse
import json
import struct
from pathlib import Path
from typing import Any

import grpc
from modelserver import protos as pb

METHOD = f"/{pb.SERVICE_NAME}/ModelInfer"

#: Typed-contents field and struct format for the output datatypes an iris classifier returns.
_TYPED = {
    "INT64": "int64_contents",
    "INT32": "int_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_RAW = {"INT64": "q", "INT32": "i", "FP32": "f", "FP64": "d"}


def predictions(response: Any) -> list[Any]:
    """The first output's values, whether the server answered typed or raw."""
    out = response.outputs[0]
    if response.raw_output_contents:
        raw = response.raw_output_contents[0]
        fmt = _RAW[out.datatype]
        return list(struct.unpack(f"<{len(raw) // struct.calcsize(fmt)}{fmt}", raw))
    values = list(getattr(out.contents, _TYPED[out.datatype]))
    return [v.decode() if isinstance(v, bytes) else v for v in values]


def check(port: int, frame: bytes, timeout: float) -> dict[str, Any]:
    message = frame[5:]
    if int.from_bytes(frame[1:5], "big") != len(message):
        raise SystemExit("frame length prefix does not match its message")
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(
            METHOD,
            request_serializer=lambda raw: raw,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        try:
            response, outcome = call.with_call(message, timeout=timeout)
        except grpc.RpcError as exc:
            return {
                "code": exc.code().name,
                "details": exc.details(),
                "predictions": None,
                "response_frame_bytes": None,
            }
        return {
            "code": outcome.code().name,
            "details": outcome.details(),
            "predictions": predictions(response),
            "response_frame_bytes": 5 + response.ByteSize(),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--frame", type=Path, required=True)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    print(json.dumps(check(args.port, args.frame.read_bytes(), args.timeout)))


if __name__ == "__main__":
    main()

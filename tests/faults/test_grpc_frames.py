"""Mutated ``ModelInfer`` frames, every runtime: an unparseable one is INVALID_ARGUMENT.

A real serialized request is mutated by a seeded stream (bit flips, bytes
inserted, deleted or overwritten, truncation, splices of itself); each
mutant is sent as it is. One that protobuf cannot parse must be answered
INVALID_ARGUMENT; one it can parse (a changed name, shape or value) gets
whatever its content deserves, but never a server fault (INTERNAL,
UNKNOWN). The server then answers the good request as before.
"""

from __future__ import annotations

import random

import grpc
import pytest
from conftest import Serving
from google.protobuf.message import DecodeError
from modelserver import protos as pb

pytestmark = pytest.mark.e2e

MUTANTS = 300
SEED = 17
CONTENTS = {
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "BYTES": "bytes_contents",
}
FAULTS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}


def good_message(serving: Serving, raw: bool) -> bytes:
    case = serving.case
    rows = case.array()
    msg = pb.ModelInferRequest(model_name="m", id="good")
    tensor = msg.inputs.add(name=case.input_name, datatype=case.datatype, shape=list(rows.shape))
    if raw:
        msg.raw_input_contents.append(case.raw())
    else:
        field = CONTENTS[case.datatype]
        values = rows.reshape(-1).tolist()
        if case.datatype == "BYTES":
            values = [str(v).encode() for v in values]
        getattr(tensor.contents, field).extend(values)
    return msg.SerializeToString()


def mutate(rng: random.Random, frame: bytes) -> bytes:
    data = bytearray(frame)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(6)
        at = rng.randrange(len(data) + 1) if data else 0
        if op == 0 and data:  # flip a bit
            i = min(at, len(data) - 1)
            data[i] ^= 1 << rng.randrange(8)
        elif op == 1:  # insert random bytes
            data[at:at] = rng.randbytes(rng.randint(1, 8))
        elif op == 2 and data:  # delete a run
            del data[at : at + rng.randint(1, 8)]
        elif op == 3 and data:  # overwrite with an interesting byte
            data[min(at, len(data) - 1)] = rng.choice([0x00, 0x7F, 0x80, 0xFF, 0x0A, 0x12])
        elif op == 4:  # truncate
            del data[at:]
        else:  # splice a piece of the frame elsewhere
            piece = frame[rng.randrange(len(frame)) :][: rng.randint(1, 16)]
            data[at:at] = piece
    return bytes(data)


def parses(frame: bytes) -> bool:
    try:
        pb.ModelInferRequest.FromString(frame)
    except DecodeError:
        return False
    return True


def test_mutated_frames_never_fault_the_server(serving: Serving) -> None:
    rng = random.Random(SEED)
    frames = [good_message(serving, raw=True), good_message(serving, raw=False)]
    with grpc.insecure_channel(serving.server.grpc_address) as channel:
        infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        for frame in frames:
            infer(frame, timeout=30)  # the unmutated frames are good requests
        unparseable = 0
        for n in range(MUTANTS):
            mutant = mutate(rng, frames[n % 2])
            try:
                infer(mutant, timeout=30)
                code = grpc.StatusCode.OK
                details = ""
            except grpc.RpcError as exc:
                code, details = exc.code(), exc.details()
            assert code not in FAULTS, f"mutant {n} {mutant!r}: {code} {details}"
            if not parses(mutant):
                unparseable += 1
                assert code == grpc.StatusCode.INVALID_ARGUMENT, f"mutant {n}: {code} {details}"
        assert unparseable > MUTANTS // 4  # the stream does reach the parser's errors
        for frame in frames:
            infer(frame, timeout=30)
    serving.still_serves()


def test_a_large_unparseable_frame_is_invalid_argument_too(serving: Serving) -> None:
    """Frames past the inline size are parsed in the decoding process: same answers."""
    msg = pb.ModelInferRequest(model_name="m")
    msg.inputs.add(name=serving.case.input_name, datatype="BYTES", shape=[1])
    msg.raw_input_contents.append(b"\x00" * (1 << 20))
    frame = msg.SerializeToString()
    with grpc.insecure_channel(serving.server.grpc_address) as channel:
        infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        for mutant in (frame[:-100], frame[:12] + b"\xff" * 16 + frame[28:]):
            assert not parses(mutant)
            with pytest.raises(grpc.RpcError) as info:
                infer(mutant, timeout=30)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    serving.still_serves()

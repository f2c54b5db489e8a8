"""How many inputs a request may have, checked before any input is decoded (issue 17, item 2).

Each codec gets the model's limit and refuses a request over it first: the
inputs here are all invalid, so an error about any one of them would mean an
input was looked at before the count. Large bodies decode in a child process.
"""

from __future__ import annotations

import asyncio
import os

import orjson
import pytest
from google.protobuf.message import DecodeError
from modelserver import InvalidInput
from modelserver import protos as pb
from modelserver.codecs import mlflow, v1, v2_grpc, v2_rest
from modelserver.codecs.tensor_data import ALWAYS_DECODED
from modelserver.dataplane.decode_pool import INLINE_DECODE_BYTES, DecodePool
from modelserver.dataplane.served import declared_input_limit

LIMIT = 4
#: More inputs than any limit lets through (a few are always decoded, to be named).
N = ALWAYS_DECODED + 1
TOO_MANY = f"The request has {N} inputs; model 'm' takes at most 4"


def test_v2_rest_counts_inputs_before_reading_any() -> None:
    body = orjson.dumps({"inputs": [{"name": f"x{i}"} for i in range(N)]})
    with pytest.raises(InvalidInput, match=TOO_MANY):
        v2_rest.decode_infer_request(body, None, "m", max_inputs=LIMIT)
    with pytest.raises(InvalidInput, match="missing 'datatype'"):
        v2_rest.decode_infer_request(body, None, "m", max_inputs=N)


def test_a_few_inputs_too_many_are_decoded_so_the_wrong_one_is_named() -> None:
    inputs = [{"name": f"x{i}", "shape": [1], "datatype": "FP64", "data": [1.0]} for i in range(5)]
    request = v2_rest.decode_infer_request(orjson.dumps({"inputs": inputs}), None, "m", LIMIT)
    assert [t.name for t in request.inputs] == [f"x{i}" for i in range(5)]


def test_v2_grpc_counts_inputs_before_reading_any() -> None:
    msg = pb.ModelInferRequest(model_name="m")
    for i in range(N):
        msg.inputs.add(name=f"x{i}", datatype="NOPE")
    with pytest.raises(InvalidInput, match=TOO_MANY):
        v2_grpc.decode_infer_request(msg, None, LIMIT)
    with pytest.raises(InvalidInput, match="unsupported datatype"):
        v2_grpc.decode_infer_request(msg, None, N)


@pytest.mark.parametrize(
    "payload",
    [
        {"inputs": {f"x{i}": [{}] for i in range(N)}},
        {"instances": [{f"x{i}": None for i in range(N)}]},
        {"instances": [{"x0": None}, {f"x{i}": None for i in range(1, N)}]},
        {"instances": {f"x{i}": {"0": {}} for i in range(N)}},
    ],
    ids=["columns", "records", "records-with-holes", "index-oriented"],
)
def test_v1_counts_columns_before_building_any(payload: dict) -> None:
    with pytest.raises(InvalidInput, match=TOO_MANY):
        v1.decode_predict_request(orjson.dumps(payload), "m", LIMIT)


@pytest.mark.parametrize(
    "payload",
    [
        {"dataframe_split": {"columns": [f"x{i}" for i in range(N)], "data": "not rows"}},
        {"dataframe_records": [{f"x{i}": 1 for i in range(N)}]},
        {"inputs": {f"x{i}": [{}] for i in range(N)}},
    ],
    ids=["split", "records", "inputs"],
)
def test_mlflow_counts_columns_before_building_any(payload: dict) -> None:
    body = orjson.dumps(payload)
    with pytest.raises(InvalidInput, match=TOO_MANY):
        mlflow.decode_invocations_request(body, "application/json", "m", LIMIT)


def test_mlflow_csv_columns_are_counted() -> None:
    body = (",".join(f"c{i}" for i in range(N)) + "\n" + ",".join("1" * N) + "\n").encode()
    with pytest.raises(InvalidInput, match=TOO_MANY):
        mlflow.decode_invocations_request(body, "text/csv", "m", LIMIT)


@pytest.mark.parametrize(
    ("specs", "limit"),
    [
        ([], None),
        ([{"name": "input-0", "shape": [-1, 4]}], 4),  # a table: 4 named columns at most
        ([{"name": "a", "shape": [-1]}, {"name": "b", "shape": [-1]}], 2),
        ([{"name": "image", "shape": [-1, 3, 224, 224]}, {"name": "scale", "shape": [1]}], 2),
        ([{"name": "input-0", "shape": [-1, -1]}], None),  # width unknown: --max_inputs
        ([{"name": "x", "shape": [-1, 0]}], 1),
    ],
)
def test_declared_input_limit(specs: list[dict], limit: int | None) -> None:
    assert declared_input_limit(specs) == limit


def test_grpc_parse_and_decode_in_one_step() -> None:
    msg = pb.ModelInferRequest(model_name="m", model_version="2", id="r")
    tensor = msg.inputs.add(name="x", datatype="FP32", shape=[1])
    tensor.contents.fp32_contents.append(1.5)
    raw = msg.SerializeToString()
    decoded = v2_grpc.parse_and_decode(raw, {"m": 4})
    assert (decoded.model_name, decoded.model_version, decoded.id) == ("m", "2", "r")
    assert decoded.inputs[0].data.tolist() == [1.5]
    # A model the server does not have: parsed only, for the caller's NOT_FOUND.
    assert v2_grpc.parse_and_decode(raw, {"other": 4}).inputs == []
    many = pb.ModelInferRequest(model_name="m")
    for i in range(N):
        many.inputs.add(name=f"x{i}", datatype="FP32", shape=[1]).contents.fp32_contents.append(1)
    with pytest.raises(InvalidInput, match="takes at most 0"):
        v2_grpc.parse_and_decode(many.SerializeToString(), {"m": 0})
    with pytest.raises(DecodeError):
        v2_grpc.parse_and_decode(b"\xff\xff\xff", {"m": 4})


def test_large_bodies_decode_in_the_child_and_small_ones_inline() -> None:
    async def scenario() -> None:
        pool = DecodePool()
        try:
            assert await pool.decode(10, os.getpid) == os.getpid()
            child = await pool.decode(INLINE_DECODE_BYTES + 1, os.getpid)
            assert child != os.getpid()
            # The same child serves the next body; its errors raise here.
            assert await pool.decode(INLINE_DECODE_BYTES + 1, os.getpid) == child
            body = orjson.dumps({"inputs": [{"name": f"x{i}"} for i in range(N)]})
            with pytest.raises(InvalidInput, match=TOO_MANY):
                await pool.decode(
                    INLINE_DECODE_BYTES + 1,
                    v2_rest.decode_infer_request,
                    body,
                    None,
                    "m",
                    None,
                    None,
                    LIMIT,
                )
        finally:
            pool.close()
        # Off where shared memory is taken: the regions are this process's.
        assert await DecodePool(enabled=False).decode(INLINE_DECODE_BYTES + 1, os.getpid) == (
            os.getpid()
        )

    asyncio.run(scenario())


def test_grpc_decode_size_counts_what_is_walked_element_by_element() -> None:
    msg = pb.ModelInferRequest(model_name="m")
    msg.inputs.add(name="x", datatype="FP32", shape=[1 << 18])
    msg.raw_input_contents.append(b"\x00" * (1 << 20))
    raw = msg.SerializeToString()
    # A large raw tensor is cheap: only the rest of the message counts.
    assert v2_grpc.decode_size(raw) < 64
    typed = pb.ModelInferRequest(model_name="m")
    tensor = typed.inputs.add(name="x", datatype="FP32", shape=[1 << 18])
    tensor.contents.fp32_contents.extend([1.0] * (1 << 18))
    assert v2_grpc.decode_size(typed.SerializeToString()) > 1 << 20
    many = pb.ModelInferRequest(model_name="m")
    for i in range(v2_grpc.SCAN_FIELDS + 1):
        many.inputs.add(name=f"x{i}", datatype="FP32", shape=[1])
    whole = many.SerializeToString()
    assert v2_grpc.decode_size(whole) == len(whole)
    for broken in (raw[:-5], b"\xff" * 12, b"\x0f", raw[:3] + b"\x80"):
        assert v2_grpc.decode_size(broken) == len(broken)


def test_rest_decode_size_counts_json_and_binary_bytes_elements() -> None:
    from modelserver.protocol.rest.handlers import _decode_size

    header = b'{"inputs":[{"name":"x","datatype":"FP32","shape":[262144]}]}'
    body = header + b"\x00" * (1 << 20)
    assert _decode_size(body, None) == len(body)  # all JSON
    assert _decode_size(body, len(header)) == len(header)  # a numeric tensor: a view
    strings = header.replace(b'"FP32"', b'"BYTES"')
    assert _decode_size(strings + b"\x00" * 64, len(strings)) == len(strings) + 64

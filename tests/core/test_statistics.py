"""Triton's statistics schema: what the data plane counts reads back in tritonclient's messages."""

from __future__ import annotations

import tritonclient.grpc.service_pb2 as triton_pb
from google.protobuf import json_format
from modelserver import protos as pb
from modelserver.dataplane.statistics import ModelStatistics


def test_counts_and_their_wire_form() -> None:
    stats = ModelStatistics()
    stats.execution(4, 1_000, 1_700_000_000_123_000_000)
    stats.request(4, 5_000, 200, (300, 1_000, 400), own_execution=True)
    stats.execution(8, 2_000, 1_700_000_000_456_000_000)  # a batch of two requests
    stats.request(3, 6_000, 100, (300, 2_000, 400), own_execution=False)
    stats.request(5, 7_000, 150, (300, 2_000, 400), own_execution=False)
    stats.failure(900)
    entry = stats.json("iris", "1")
    assert (entry["inference_count"], entry["execution_count"]) == (12, 2)
    assert entry["last_inference"] == 1_700_000_000_456
    inference = entry["inference_stats"]
    assert inference["success"] == {"count": 3, "ns": 18_000}
    assert inference["fail"] == {"count": 1, "ns": 900}
    assert inference["compute_infer"] == {"count": 3, "ns": 5_000}
    by_size = {b["batch_size"]: b for b in entry["batch_stats"]}
    assert by_size[4]["compute_input"] == {"count": 1, "ns": 300}
    assert by_size[8]["compute_infer"] == {"count": 1, "ns": 2_000}
    # the gRPC answer is parsed from the same object and reads back in tritonclient's message
    ours = json_format.ParseDict({"model_stats": [entry]}, pb.ModelStatisticsResponse())
    theirs = triton_pb.ModelStatisticsResponse.FromString(ours.SerializeToString())
    as_json = json_format.MessageToDict(theirs, preserving_proto_field_name=True)
    (stat,) = as_json["model_stats"]
    assert stat["inference_count"] == "12"
    assert stat["inference_stats"]["queue"] == {"count": "3", "ns": "450"}
    assert [b["batch_size"] for b in stat["batch_stats"]] == ["4", "8"]

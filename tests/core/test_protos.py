"""The gRPC descriptor: up to date, private, and wire-compatible with tritonclient's."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.model_config_pb2 as triton_config_pb
import tritonclient.grpc.service_pb2 as triton_pb
from codec_strategies import DATATYPES, ROUND_TRIP, arrays, assert_same_tensor_data
from google.protobuf import descriptor_pool, json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import given
from hypothesis import strategies as st
from modelserver import protos as pb
from modelserver.codecs import v2_grpc
from modelserver.types import InferResponse, Tensor
from tritonclient.grpc import _utils as triton_grpc_utils

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gen_protos.py"
PROTO = ROOT / "shared/core/src/modelserver/protos/grpc_predict_v2.proto"
TARGET = ROOT / "shared/core/src/modelserver/protos/_descriptor.py"


def run_script(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(root / "scripts" / "gen_protos.py"), *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )


# -- the generated descriptor is current --------------------------------------------------------


def test_committed_descriptor_is_up_to_date() -> None:
    result = run_script(ROOT, "--check")
    assert result.returncode == 0, result.stderr


def test_check_detects_a_stale_descriptor(tmp_path: Path) -> None:
    """The --check above can fail: on a copy of the layout, staleness is caught and fixed."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(SCRIPT, tmp_path / "scripts" / "gen_protos.py")
    proto_dir = tmp_path / PROTO.relative_to(ROOT).parent
    proto_dir.mkdir(parents=True)
    for proto in PROTO.parent.glob("*.proto"):
        shutil.copy(proto, proto_dir / proto.name)
    target = tmp_path / TARGET.relative_to(ROOT)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(TARGET.read_text().replace("0a", "0b", 1))

    stale = run_script(tmp_path, "--check")
    assert stale.returncode == 1
    assert "stale" in stale.stderr

    assert run_script(tmp_path).returncode == 0
    assert target.read_text() == TARGET.read_text()  # the output is deterministic
    assert run_script(tmp_path, "--check").returncode == 0


# -- living beside tritonclient -------------------------------------------------------------------


@pytest.mark.parametrize(
    "imports",
    [
        "import tritonclient.grpc, tritonclient.grpc.service_pb2; import modelserver.protos",
        "import modelserver.protos; import tritonclient.grpc, tritonclient.grpc.service_pb2",
    ],
    ids=["tritonclient-first", "modelserver-first"],
)
def test_imports_in_either_order(imports: str) -> None:
    code = (
        f"{imports}\n"
        "from modelserver import protos as pb\n"
        "from tritonclient.grpc import service_pb2 as t\n"
        "m = pb.ModelInferRequest(model_name='x')\n"
        "assert t.ModelInferRequest.FromString(m.SerializeToString()).model_name == 'x'\n"
        "assert pb.ModelInferRequest is not t.ModelInferRequest\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_messages_live_in_a_private_pool() -> None:
    default = descriptor_pool.Default()
    ours = pb.ModelInferRequest.DESCRIPTOR
    assert ours.full_name == "inference.ModelInferRequest"
    assert default.FindMessageTypeByName("inference.ModelInferRequest") is not ours
    assert ours.file.pool is not default
    assert pb.message_class("inference.ModelInferRequest") is pb.ModelInferRequest
    assert pb.SERVICE.full_name == "inference.GRPCInferenceService"


def _field_signature(field: FieldDescriptor) -> tuple[Any, ...]:
    message = field.message_type.full_name if field.message_type else None
    enum = field.enum_type.full_name if field.enum_type else None
    repeated = field.is_repeated
    oneof = field.containing_oneof.name if field.containing_oneof else None
    return (field.number, field.type, repeated, message, enum, oneof)


def _compare(ours: Descriptor, theirs: Descriptor) -> list[str]:
    problems = []
    for field in ours.fields:
        other = theirs.fields_by_name.get(field.name)
        if other is None:
            problems.append(f"{ours.full_name}.{field.name} missing in tritonclient")
        elif _field_signature(field) != _field_signature(other):
            problems.append(
                f"{ours.full_name}.{field.name}: {_field_signature(field)} != "
                f"{_field_signature(other)}"
            )
    for nested in ours.nested_types:
        if not nested.GetOptions().map_entry:
            problems += _compare(nested, theirs.nested_types_by_name[nested.name])
    return problems


def test_every_message_matches_tritonclient_field_by_field() -> None:
    """Ours against tritonclient's service and model-configuration messages."""
    ours = pb.ModelInferRequest.DESCRIPTOR.file
    theirs = {**triton_config_pb.DESCRIPTOR.message_types_by_name}
    theirs.update(triton_pb.DESCRIPTOR.message_types_by_name)
    assert ours.package == triton_pb.DESCRIPTOR.package == "inference"
    problems = []
    for name, message in ours.message_types_by_name.items():
        if name not in theirs:
            problems.append(f"{name} missing in tritonclient")
            continue
        problems += _compare(message, theirs[name])
    assert problems == []


def test_enums_match_tritonclient_value_by_value() -> None:
    ours = pb.ModelInferRequest.DESCRIPTOR.file
    theirs = triton_config_pb.DESCRIPTOR
    enums = [(e, theirs.enum_types_by_name[e.name]) for e in ours.enum_types_by_name.values()]
    enums.append(
        (
            pb.message_class("inference.ModelInput").DESCRIPTOR.enum_types_by_name["Format"],
            theirs.message_types_by_name["ModelInput"].enum_types_by_name["Format"],
        )
    )
    for mine, other in enums:
        assert [(v.name, v.number) for v in mine.values] == [
            (v.name, v.number) for v in other.values
        ], mine.full_name


def test_service_methods_match_tritonclient() -> None:
    theirs = triton_pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    for method in pb.SERVICE.methods:
        other = theirs.methods_by_name[method.name]
        assert method.input_type.full_name == other.input_type.full_name
        assert method.output_type.full_name == other.output_type.full_name
        assert method.client_streaming == other.client_streaming
        assert method.server_streaming == other.server_streaming


def full_request(cls: Any) -> Any:
    """A ModelInferRequest of either pool with every field and every parameter kind set."""
    msg = cls(model_name="iris", model_version="2", id="req-1")
    msg.parameters["b"].bool_param = True
    msg.parameters["i"].int64_param = -(2**63)
    msg.parameters["s"].string_param = "é"
    msg.parameters["d"].double_param = -0.5
    msg.parameters["u"].uint64_param = 2**64 - 1
    a = msg.inputs.add(name="a", datatype="FP32", shape=[2, 1])
    a.contents.fp32_contents.extend([1.5, -2.25])
    a.parameters["content_type"].string_param = "np"
    b = msg.inputs.add(name="b", datatype="BYTES", shape=[2])
    b.contents.bytes_contents.extend([b"\x00\xff", b""])
    c = msg.inputs.add(name="c", datatype="INT64", shape=[1])
    c.contents.int64_contents.append(-7)
    c.contents.bool_contents.append(True)
    c.contents.int_contents.append(-3)
    c.contents.uint_contents.append(2**32 - 1)
    c.contents.uint64_contents.append(2**64 - 1)
    c.contents.fp64_contents.append(1e300)
    out = msg.outputs.add(name="y")
    out.parameters["binary_data"].bool_param = True
    msg.raw_input_contents.extend([b"\x01\x02", b""])
    return msg


def as_dict(msg: Any) -> dict[str, Any]:
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


@pytest.mark.parametrize("direction", ["ours-to-triton", "triton-to-ours"])
def test_model_infer_request_wire_compatible(direction: str) -> None:
    src_cls, dst_cls = (
        (pb.ModelInferRequest, triton_pb.ModelInferRequest)
        if direction == "ours-to-triton"
        else (triton_pb.ModelInferRequest, pb.ModelInferRequest)
    )
    source = full_request(src_cls)
    wire = source.SerializeToString()
    parsed = dst_cls.FromString(wire)
    assert as_dict(parsed) == as_dict(source)
    assert parsed.SerializeToString(deterministic=True) == source.SerializeToString(
        deterministic=True
    )
    assert parsed.parameters["u"].uint64_param == 2**64 - 1
    assert list(parsed.inputs[1].contents.bytes_contents) == [b"\x00\xff", b""]


def test_our_encoded_response_parses_identically_in_tritonclient() -> None:
    outs = [
        Tensor("p", "FP64", (1, 2), np.array([[0.25, 0.75]])),
        Tensor("s", "BYTES", (1,), np.array([b"z"], dtype=object), {"k": 1}),
    ]
    for raw in (True, False):
        ours = v2_grpc.encode_infer_response(
            InferResponse("m", outs, id="x", model_version="1", parameters={"t": 2.5}), raw=raw
        )
        theirs = triton_pb.ModelInferResponse.FromString(ours.SerializeToString())
        assert as_dict(theirs) == as_dict(ours)
        assert theirs.parameters["t"].double_param == 2.5
        assert theirs.outputs[1].parameters["k"].int64_param == 1


@ROUND_TRIP
@pytest.mark.parametrize("datatype", DATATYPES)
@given(data=st.data())
def test_tritonclient_reads_our_raw_response(datatype: str, data: st.DataObject) -> None:
    arr = data.draw(arrays(datatype, json_safe=False))
    msg = v2_grpc.encode_infer_response(
        InferResponse("m", [Tensor("out", datatype, arr.shape, arr)], id="r"), raw=True
    )
    result = grpcclient.InferResult(
        triton_pb.ModelInferResponse.FromString(msg.SerializeToString())
    )
    got = result.as_numpy("out")
    assert got.shape == arr.shape
    if datatype == "BYTES":
        assert got.reshape(-1).tolist() == arr.reshape(-1).tolist()
    else:
        assert_same_tensor_data(
            arr, got.astype(got.dtype.newbyteorder("<")), datatype, exact_nan=True
        )
    assert result.get_response().id == "r"


@ROUND_TRIP
@pytest.mark.parametrize("datatype", DATATYPES)
@given(data=st.data())
def test_we_decode_tritonclients_request(datatype: str, data: st.DataObject) -> None:
    arr = data.draw(arrays(datatype, json_safe=False, any_layout=False))
    x = grpcclient.InferInput("x", list(arr.shape), datatype)
    x.set_data_from_numpy(arr)
    # tritonclient's own request builder (what InferenceServerClient.infer sends).
    request = triton_grpc_utils._get_inference_request(
        model_name="m",
        inputs=[x],
        model_version="3",
        request_id="rid",
        outputs=[grpcclient.InferRequestedOutput("y")],
        sequence_id=0,
        sequence_start=False,
        sequence_end=False,
        priority=0,
        timeout=None,
        parameters={"custom": 5},
    )
    ours = pb.ModelInferRequest.FromString(request.SerializeToString())

    decoded = v2_grpc.decode_infer_request(ours)

    assert (decoded.model_name, decoded.model_version, decoded.id) == ("m", "3", "rid")
    assert decoded.parameters == {"custom": 5}
    assert [o.name for o in decoded.outputs] == ["y"]
    (tensor,) = decoded.inputs
    assert (tensor.name, tensor.datatype, tensor.shape) == ("x", datatype, arr.shape)
    assert_same_tensor_data(arr, tensor.data, datatype, exact_nan=True)

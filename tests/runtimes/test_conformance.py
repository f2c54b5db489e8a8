"""Every runtime, the same contract: protocols, bad requests, startup errors.

Each runtime in ``cases/`` is started as ``python -m <runtime>`` on a model
its framework wrote, and driven with tritonclient (HTTP JSON, HTTP binary,
gRPC) and httpx (v1). The three v2 paths must agree exactly; a request with
the wrong width or datatype is a 400 / INVALID_ARGUMENT that names the reason,
and the server then answers a good request correctly.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from protocol_clients import PROTOCOLS, infer, v2_metadata
from runtime_case import NUMPY, RuntimeCase, all_cases
from serverproc import ServerProcess, run_to_exit
from tritonclient.utils import InferenceServerException

pytestmark = pytest.mark.e2e

CASES: list[RuntimeCase] = all_cases()


@pytest.fixture(scope="module", params=CASES, ids=[c.id for c in CASES])
def case(request: pytest.FixtureRequest) -> RuntimeCase:
    return request.param


@pytest.fixture(scope="module")
def model_dir(case: RuntimeCase, framework_samples) -> Path:
    return framework_samples(case.framework)[case.sample]


@pytest.fixture(scope="module")
def server(case: RuntimeCase, model_dir: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        case.module, ["--model_name=m", f"--model_dir={model_dir}", *case.flags], env=case.env
    )
    with proc:
        yield proc


def _array(case: RuntimeCase, rows: list[list[float]]) -> np.ndarray:
    return np.asarray(rows, dtype=NUMPY[case.datatype])


def _infer(server: ServerProcess, case: RuntimeCase, path: str) -> dict[str, np.ndarray]:
    """The case's rows over ``path`` (json, binary or grpc), every declared output asked for."""
    names = [o["name"] for o in v2_metadata(server, "m")["outputs"]]
    return infer(server, "m", {case.input_name: _array(case, case.rows)}, path, names)


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].shape == b[name].shape, name
        if a[name].dtype.kind in "fc":
            np.testing.assert_allclose(a[name], b[name], rtol=1e-6, atol=1e-7, err_msg=name)
        else:
            assert _plain(a[name]) == _plain(b[name]), name


def _plain(values: np.ndarray) -> list:
    """Python values; BYTES as str (tritonclient gives str over JSON, bytes otherwise)."""
    return [v.decode() if isinstance(v, bytes) else v for v in values.reshape(-1).tolist()]


def test_ready_and_metadata(server: ServerProcess, case: RuntimeCase) -> None:
    assert httpx.get(f"{server.http_url}/v2/models/m/ready").status_code == 200
    meta = httpx.get(f"{server.http_url}/v2/models/m").json()
    assert meta["name"] == "m"
    assert meta["platform"]
    assert [i["name"] for i in meta["inputs"]] == list(case.input_names or [case.input_name])
    assert all(i["datatype"] == case.datatype for i in meta["inputs"])
    assert meta["outputs"], meta
    grpc_meta = grpcclient.InferenceServerClient(server.grpc_address).get_model_metadata(
        "m", as_json=True
    )
    assert [o["name"] for o in grpc_meta["outputs"]] == [o["name"] for o in meta["outputs"]]


def test_warmed_up_from_its_metadata_before_ready(server: ServerProcess, case: RuntimeCase) -> None:
    """The requests metadata describes are ones the model takes: warm-up ran them all."""
    log = server.output()
    (line,) = [line for line in log.splitlines() if "model m warmed up: " in line]
    found = re.search(r"warmed up: (\d+) of (\d+) requests from metadata", line)
    assert found is not None and found.group(1) == found.group(2) != "0", line
    assert "warm-up request" not in log, log
    # ...before the model was ready, so before the ports opened.
    assert log.index("warmed up") < log.index("serving m")


def test_default_outputs_are_real_and_every_output_can_be_requested(
    server: ServerProcess, case: RuntimeCase
) -> None:
    """Metadata's outputs and default_outputs come from one table: they cannot disagree."""
    meta = httpx.get(f"{server.http_url}/v2/models/m").json()
    declared = [o["name"] for o in meta["outputs"]]
    defaults = meta["parameters"]["default_outputs"]
    assert defaults, meta
    assert set(defaults) <= set(declared), meta
    x = _array(case, case.rows)
    # A request that names no output gets exactly the defaults...
    plain = infer(server, "m", {case.input_name: x}, "json")
    assert list(plain) == defaults
    # ...and each listed output can be asked for alone, with the datatype metadata gives.
    for spec in meta["outputs"]:
        got = infer(server, "m", {case.input_name: x}, "grpc", [spec["name"]])
        assert list(got) == [spec["name"]]
        assert got[spec["name"]].shape[0] == len(case.rows)
        body = {
            "inputs": [
                {
                    "name": case.input_name,
                    "shape": list(x.shape),
                    "datatype": case.datatype,
                    "data": x.reshape(-1).tolist(),
                }
            ],
            "outputs": [{"name": spec["name"]}],
        }
        reply = httpx.post(f"{server.http_url}/v2/models/m/infer", json=body).json()
        assert [(o["name"], o["datatype"]) for o in reply["outputs"]] == [
            (spec["name"], spec["datatype"])
        ]


def test_v2_paths_agree(server: ServerProcess, case: RuntimeCase) -> None:
    as_json, as_binary, over_grpc = (_infer(server, case, path) for path in PROTOCOLS)
    for outputs in (as_json, as_binary, over_grpc):
        for name, value in outputs.items():
            assert value.shape[0] == len(case.rows), name
    _same(as_json, as_binary)
    _same(as_json, over_grpc)


def test_v1_predict(server: ServerProcess, case: RuntimeCase) -> None:
    reply = httpx.post(f"{server.http_url}/v1/models/m:predict", json={"instances": case.rows})
    assert reply.status_code == 200, reply.text
    assert len(reply.json()["predictions"]) == len(case.rows)


def test_wrong_width_is_400_and_server_keeps_serving(
    server: ServerProcess, case: RuntimeCase
) -> None:
    body = {
        "inputs": [
            {
                "name": case.input_name,
                "shape": [1, len(case.bad_row)],
                "datatype": case.datatype,
                "data": case.bad_row,
            }
        ]
    }
    reply = httpx.post(f"{server.http_url}/v2/models/m/infer", json=body)
    assert reply.status_code == 400, reply.text
    assert case.width_error in reply.json()["error"].lower()
    v1 = httpx.post(f"{server.http_url}/v1/models/m:predict", json={"instances": [case.bad_row]})
    assert v1.status_code == 400, v1.text

    client = grpcclient.InferenceServerClient(server.grpc_address)
    bad = np.asarray([case.bad_row], dtype=NUMPY[case.datatype])
    tensor = grpcclient.InferInput(case.input_name, list(bad.shape), case.datatype)
    tensor.set_data_from_numpy(bad)
    with pytest.raises(InferenceServerException) as info:
        client.infer("m", [tensor])
    assert info.value.status() == str(grpc.StatusCode.INVALID_ARGUMENT)
    _same(_infer(server, case, "json"), _infer(server, case, "grpc"))


def test_wrong_datatype_is_400(server: ServerProcess, case: RuntimeCase) -> None:
    """Text for a model of numbers; numbers for a model of text."""
    width = len(case.rows[0])
    tensor = {"name": case.input_name, "shape": [1, width], "datatype": "BYTES"}
    tensor["data"] = [str(v) + "x" for v in case.rows[0]]
    if case.datatype == "BYTES":
        tensor.update(datatype="FP32", data=[1.5] * width)
    body = {"inputs": [tensor]}
    reply = httpx.post(f"{server.http_url}/v2/models/m/infer", json=body)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]
    assert httpx.get(f"{server.http_url}/v2/health/ready").status_code == 200


# -- startup errors: a clear message, no traceback, a non-zero exit -------------


def _model_file(case: RuntimeCase, directory: Path) -> Path:
    """The case's model file in ``directory``: its fixed name, or the one with its suffix."""
    if case.fixed_name:
        return directory / case.suffix
    (found,) = [p for p in directory.iterdir() if p.name.endswith(case.suffix)]
    return found


def _fails(case: RuntimeCase, model_dir: Path, *expected: str) -> None:
    done = run_to_exit(
        case.module, ["--model_name=m", f"--model_dir={model_dir}", *case.flags], env=case.env
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Traceback" not in output, output
    for fragment in expected:
        assert fragment in output, output


def test_missing_directory(case: RuntimeCase, tmp_path: Path) -> None:
    _fails(case, tmp_path / "absent", "absent")


def test_no_model_file(case: RuntimeCase, tmp_path: Path) -> None:
    (tmp_path / "README.txt").write_text("not a model\n")
    _fails(case, tmp_path, case.suffix, "README.txt")


#: Runtimes whose model file may have any name (not MLflow's fixed ``MLmodel``).
NAMED_BY_SUFFIX = [c for c in CASES if not c.fixed_name]


@pytest.mark.parametrize("case", NAMED_BY_SUFFIX, ids=[c.id for c in NAMED_BY_SUFFIX])
def test_two_candidate_files(case: RuntimeCase, framework_samples, tmp_path: Path) -> None:
    target = tmp_path / "two"
    shutil.copytree(framework_samples(case.framework)[case.sample], target)
    original = _model_file(case, target)
    shutil.copy(original, target / f"copy{case.suffix}")
    _fails(case, target, original.name, f"copy{case.suffix}")


def test_corrupt_model_file(case: RuntimeCase, model_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "corrupt"
    shutil.copytree(model_dir, target)
    original = _model_file(case, target)
    original.write_bytes(b"\x00\x01 this is not a model \xff" * 8)
    _fails(case, target, original.name)


def test_startup_errors_never_echo_raw_file_bytes(
    case: RuntimeCase, model_dir: Path, tmp_path: Path
) -> None:
    """A framework quoting the corrupt bytes must not put control characters in the log."""
    target = tmp_path / "binary"
    shutil.copytree(model_dir, target)
    original = _model_file(case, target)
    original.write_bytes(bytes(range(256)) * 64)
    done = run_to_exit(
        case.module, ["--model_name=m", f"--model_dir={target}", *case.flags], env=case.env
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    line = next(line for line in output.splitlines() if "cannot start" in line)
    assert line.isprintable(), repr(line)
    assert len(line) < 2500, len(line)

"""KServe manifests: what the API server, KServe and the runtimes make of them.

- Every ClusterServingRuntime (``config/runtimes/``) and InferenceService
  (``examples/kserve/``) validates against KServe's CRD schema with the API
  server's structural rules (unknown fields refused; ``kube_schema``), and the
  validator is shown to refuse an unknown field and a wrong type.
- ``kubectl kustomize config/runtimes`` renders them with the kustomization's
  image names and tags.
- KServe's admission webhook would accept ours next to KServe's own runtimes
  (no equal priorities for a format), and KServe's runtime selection sends
  each example to the runtime the README says.
- Each example is served the way KServe would run it: the selected runtime's
  args with ``{{.Name}}`` filled in and the InferenceService's args appended,
  started as ``python -m <runtime>`` on the sample model its ``storageUri``
  names, with only the model directory and the ports made local. The server
  must accept every flag, be ready, report the model under the
  InferenceService's name, answer one inference in the example's protocol and
  expose metrics where the Prometheus annotations say.
"""

from __future__ import annotations

import copy
import functools
import importlib
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import yaml
from kube_schema import CrdSchemas, load_documents
from runtime_case import NUMPY, RuntimeCase
from serverproc import ServerProcess, free_port, run_to_exit

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
RUNTIMES_DIR = ROOT / "config" / "runtimes"
RUNTIME_FILES = sorted(p for p in RUNTIMES_DIR.glob("*.yaml") if p.name != "kustomization.yaml")
EXAMPLE_FILES = sorted((ROOT / "examples" / "kserve").glob("*.yaml"))
KSERVE_RUNTIME_FILES = sorted((HERE / "kserve_runtimes").glob("*.yaml"))
CASES_DIR = ROOT / "tests" / "runtimes" / "cases"

#: KServe's InferenceServiceProtocol values.
PROTOCOLS = {"v1", "v2", "grpc-v1", "grpc-v2"}
#: What every one of our runtimes serves.
OUR_PROTOCOLS = {"v1", "v2", "grpc-v2"}
#: ... and what some serve besides (TF Serving's gRPC API, as KServe names it).
EXTRA_PROTOCOLS = {"tfserver": {"grpc-v1"}}
#: KServe's own TF Serving runtime (config/runtimes/kserve-tensorflow-serving.yaml of
#: kserve/kserve at 94adc24f1e19a6bdc44120971d419f16134cd39b), which kserve_runtimes/
#: does not hold (SOURCE.md): the facts its admission and selection rules read.
KSERVE_TF_SERVING: dict[str, Any] = {
    "apiVersion": "serving.kserve.io/v1alpha1",
    "kind": "ClusterServingRuntime",
    "metadata": {"name": "kserve-tensorflow-serving"},
    "spec": {
        "supportedModelFormats": [
            {"name": "tensorflow", "version": version, "autoSelect": True, "priority": 2}
            for version in ("1", "2")
        ],
        "protocolVersions": ["v1", "grpc-v1"],
        "containers": [{"name": "kserve-container", "image": "tensorflow-serving:replace"}],
    },
}
SERVER_TYPE = "serving.kserve.io/server-type"
UNKNOWN_FLAGS = "ignoring unknown arguments"
DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def _ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


@functools.cache
def _document(path: Path) -> dict[str, Any]:
    docs = load_documents(path)
    assert len(docs) == 1, f"{path.name}: expected one document, found {len(docs)}"
    return docs[0]


def _ours() -> list[dict[str, Any]]:
    return [_document(p) for p in RUNTIME_FILES]


def _kserves() -> list[dict[str, Any]]:
    return [_document(p) for p in KSERVE_RUNTIME_FILES] + [KSERVE_TF_SERVING]


def _container(runtime: dict[str, Any]) -> dict[str, Any]:
    (container,) = [c for c in runtime["spec"]["containers"] if c["name"] == "kserve-container"]
    return container


def _flags(args: list[str]) -> dict[str, str]:
    """``--name=value`` args as a dict (the last of a repeated flag wins, as in the CLI)."""
    flags: dict[str, str] = {}
    for arg in args:
        name, sep, value = arg.partition("=")
        assert arg.startswith("--") and sep, f"expected --flag=value, got {arg!r}"
        flags[name] = value
    return flags


@pytest.fixture(scope="module")
def schemas() -> CrdSchemas:
    return CrdSchemas(sorted((HERE / "crd").glob("*.yaml")))


# --- schema ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", RUNTIME_FILES + EXAMPLE_FILES, ids=_ids(RUNTIME_FILES + EXAMPLE_FILES)
)
def test_manifest_is_valid_for_kserves_crd(path: Path, schemas: CrdSchemas) -> None:
    assert schemas.errors(_document(path)) == []


def _set(obj: dict[str, Any], where: tuple[Any, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(obj)
    node = changed
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    return changed


SKLEARN_RUNTIME = RUNTIMES_DIR / "modelserving-sklearnserver.yaml"
SKLEARN_EXAMPLE = ROOT / "examples" / "kserve" / "sklearn-iris.yaml"
CONTAINER = ("spec", "containers", 0)
MODEL = ("spec", "predictor", "model")
BROKEN = {
    "unknown container field": (SKLEARN_RUNTIME, (*CONTAINER, "argz"), ["--x=1"], "'argz'"),
    "misspelt spec field": (SKLEARN_RUNTIME, ("spec", "protocolVersion"), ["v2"], "protocolVer"),
    "unknown InferenceService field": (
        SKLEARN_EXAMPLE,
        (*MODEL, "storageURI"),
        "pvc://x/y",
        "'storageURI'",
    ),
    "string priority": (
        SKLEARN_RUNTIME,
        ("spec", "supportedModelFormats", 0, "priority"),
        "10",
        "not of type 'integer'",
    ),
    "priority beyond int32": (
        SKLEARN_RUNTIME,
        ("spec", "supportedModelFormats", 0, "priority"),
        2**40,
        "int32",
    ),
    "number as annotation": (
        SKLEARN_RUNTIME,
        ("spec", "annotations", "prometheus.kserve.io/port"),
        8080,
        "not of type 'string'",
    ),
    "args not a list": (SKLEARN_RUNTIME, (*CONTAINER, "args"), "--x=1", "not of type 'array'"),
    "object as a quantity": (
        SKLEARN_RUNTIME,
        (*CONTAINER, "resources", "limits", "cpu"),
        {"cores": 1},
        "not valid under any",
    ),
    "malformed quantity": (
        SKLEARN_RUNTIME,
        (*CONTAINER, "resources", "limits", "memory"),
        "2GB",
        "does not match",
    ),
    "same port twice": (
        SKLEARN_RUNTIME,
        (*CONTAINER, "ports"),
        [{"containerPort": 8080}, {"containerPort": 8080, "protocol": "TCP"}],
        "same key",
    ),
    "unknown metadata field": (SKLEARN_RUNTIME, ("metadata", "label"), {"a": "b"}, "'label'"),
}


@pytest.mark.parametrize("what", list(BROKEN))
def test_validator_refuses_unknown_fields_and_wrong_types(what: str, schemas: CrdSchemas) -> None:
    path, where, value, reason = BROKEN[what]
    errors = schemas.errors(_set(_document(path), where, value))
    assert any(reason in e for e in errors), errors


def test_validator_accepts_an_integer_quantity(schemas: CrdSchemas) -> None:
    """x-kubernetes-int-or-string: ``cpu: 2`` is as good as ``cpu: "2"``."""
    changed = _set(_document(SKLEARN_RUNTIME), (*CONTAINER, "resources", "limits", "cpu"), 2)
    assert schemas.errors(changed) == []


def test_yaml_with_a_duplicate_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text("kind: A\nspec:\n  x: 1\n  x: 2\n")
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate key 'x'"):
        load_documents(path)


# --- kustomize ---------------------------------------------------------------------------


def test_kustomization_renders_every_runtime_with_its_image(schemas: CrdSchemas) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    rendered = subprocess.run(
        [kubectl, "kustomize", str(RUNTIMES_DIR)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    docs = {d["metadata"]["name"]: d for d in yaml.safe_load_all(rendered) if d}
    assert set(docs) == {r["metadata"]["name"] for r in _ours()}
    kustomization = _document(RUNTIMES_DIR / "kustomization.yaml")
    images = {i["name"]: f"{i['newName']}:{i['newTag']}" for i in kustomization["images"]}
    placeholders = set()
    for source in _ours():
        placeholder = _container(source)["image"].rsplit(":", 1)[0]
        placeholders.add(placeholder)
        out = docs[source["metadata"]["name"]]
        assert _container(out)["image"] == images[placeholder]
        assert out["metadata"]["labels"]["app.kubernetes.io/part-of"] == "modelserving"
        assert schemas.errors(out) == []
    assert placeholders == set(images), "every image entry names a placeholder in use"


def test_every_image_has_a_dockerfile_target_and_a_build_job() -> None:
    """Kustomization placeholders, docker/Dockerfile targets and the image workflow agree."""
    placeholders = {_container(r)["image"].rsplit(":", 1)[0] for r in _ours()}
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    targets = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", dockerfile, re.MULTILINE | re.IGNORECASE))
    assert placeholders <= targets
    workflow = _document(ROOT / ".github" / "workflows" / "images.yml")
    jobs = workflow["jobs"]["build"]["strategy"]["matrix"]["include"]
    assert {job["target"] for job in jobs} == placeholders
    kustomization = _document(RUNTIMES_DIR / "kustomization.yaml")
    for image in kustomization["images"]:
        (job,) = [j for j in jobs if j["target"] == image["name"]]
        assert image["newName"].rsplit("/", 1)[-1] == job["image"]
        assert image["newTag"].endswith(job["suffix"])
        assert not job["base"] or job["base"] in dockerfile, "the GPU base docker/ documents"


# --- the runtimes' contract --------------------------------------------------------------


@pytest.mark.parametrize("path", RUNTIME_FILES, ids=_ids(RUNTIME_FILES))
def test_runtime_follows_the_container_contract(path: Path) -> None:
    runtime = _document(path)
    assert runtime["kind"] == "ClusterServingRuntime"
    assert runtime["metadata"]["name"] == path.stem
    assert runtime["metadata"]["annotations"][SERVER_TYPE]
    spec = runtime["spec"]
    server_type = runtime["metadata"]["annotations"][SERVER_TYPE]
    assert set(spec["protocolVersions"]) == OUR_PROTOCOLS | EXTRA_PROTOCOLS.get(server_type, set())
    container = _container(runtime)
    flags = _flags(container["args"])
    assert flags["--model_name"] == "{{.Name}}"
    assert flags["--model_dir"] == "/mnt/models"
    assert flags["--http_port"] == "8080"
    assert flags["--grpc_port"] == "8081"
    assert spec["annotations"]["prometheus.kserve.io/port"] == flags["--http_port"]
    assert spec["annotations"]["prometheus.kserve.io/path"] == "/metrics"
    # Knative allows one port per pod; an InferenceService picks it (README).
    assert "ports" not in container
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 1000
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert security["seccompProfile"]["type"] == "RuntimeDefault"
    resources = container["resources"]
    for name in ("cpu", "memory"):
        assert resources["requests"][name] == resources["limits"][name]
    # Framework thread pools sized to the pod's CPUs, not the node's.
    assert flags.get("--nthread", resources["limits"]["cpu"]) == resources["limits"]["cpu"]
    for entry in spec["supportedModelFormats"]:
        assert entry.get("version"), entry
        assert not entry.get("autoSelect") or entry.get("priority"), entry


def _same_format(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["name"].lower() == b["name"].lower() and a.get("version") == b.get("version")


def webhook_refusal(new: dict[str, Any], existing: list[dict[str, Any]]) -> str | None:
    """Why KServe's ClusterServingRuntime webhook would refuse ``new`` next to ``existing``.

    Its rules: one runtime gives a format one priority; two runtimes that share
    a protocol and both auto-select the same format and version may not give it
    the same priority.
    """
    spec = new["spec"]
    auto = [f for f in spec["supportedModelFormats"] if f.get("autoSelect")]
    for format_ in auto:
        others = {f.get("priority") for f in auto if f["name"] == format_["name"]}
        if len(others - {None}) > 1:
            return f"different priorities for {format_['name']} in {new['metadata']['name']}"
    for other in existing:
        theirs = other["spec"]
        if other["metadata"]["name"] == new["metadata"]["name"] or theirs.get("disabled"):
            continue
        if bool(theirs.get("multiModel")) != bool(spec.get("multiModel")):
            continue
        if not set(theirs.get("protocolVersions", [])) & set(spec.get("protocolVersions", [])):
            continue
        for a in auto:
            for b in theirs["supportedModelFormats"]:
                same = b.get("autoSelect") and _same_format(a, b)
                if same and a.get("priority") and a.get("priority") == b.get("priority"):
                    return f"same priority for {a['name']} as {other['metadata']['name']}"
    return None


def test_priorities_pass_kserves_webhook_next_to_its_runtimes() -> None:
    everything = _ours() + _kserves()
    refusals = [webhook_refusal(r, everything) for r in _ours()]
    assert [r for r in refusals if r] == []


def test_webhook_rule_catches_a_priority_clash() -> None:
    """The check above is not vacuous: KServe's own sklearn runtime uses priority 1."""
    clashing = _set(_document(SKLEARN_RUNTIME), ("spec", "supportedModelFormats", 0, "priority"), 1)
    assert "kserve-sklearnserver" in (webhook_refusal(clashing, _kserves()) or "")


# --- the examples ------------------------------------------------------------------------


def _labels(formats: list[dict[str, Any]], named: bool) -> set[str]:
    labels = set()
    for f in formats:
        if named or f.get("autoSelect"):
            labels.add(f"mt:{f['name']}")
            if f.get("version"):
                labels.add(f"mt:{f['name']}:{f['version']}")
    return labels


def select_runtime(isvc: dict[str, Any], runtimes: list[dict[str, Any]]) -> dict[str, Any]:
    """The ClusterServingRuntime KServe gives ``isvc``'s predictor (its label match and sort)."""
    model = isvc["spec"]["predictor"]["model"]
    fmt = model["modelFormat"]
    wanted = f"mt:{fmt['name']}" + (f":{fmt['version']}" if fmt.get("version") else "")
    protocol = model.get("protocolVersion", "v1")
    named = model.get("runtime")

    def supports(runtime: dict[str, Any]) -> bool:
        spec = runtime["spec"]
        return (
            not spec.get("disabled")
            and wanted in _labels(spec["supportedModelFormats"], bool(named))
            and protocol in spec.get("protocolVersions", ["v1"])
        )

    if named:
        (runtime,) = [r for r in runtimes if r["metadata"]["name"] == named]
        assert supports(runtime), f"{named} does not support {wanted} over {protocol}"
        return runtime

    def priority(runtime: dict[str, Any]) -> int:
        formats = runtime["spec"]["supportedModelFormats"]
        return max(f.get("priority") or 0 for f in formats if f["name"] == fmt["name"])

    found = sorted(filter(supports, runtimes), key=priority, reverse=True)
    assert found, f"no runtime supports {wanted} over {protocol}"
    tied = [r["metadata"]["name"] for r in found if priority(r) == priority(found[0])]
    assert len(tied) == 1, f"runtimes tie for {wanted}: {tied}"
    return found[0]


def _selected(isvc: dict[str, Any]) -> dict[str, Any]:
    return select_runtime(isvc, _ours() + _kserves())


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=_ids(EXAMPLE_FILES))
def test_example_lands_on_our_runtime(path: Path) -> None:
    isvc = _document(path)
    assert isvc["kind"] == "InferenceService"
    assert DNS_1035_LABEL.match(isvc["metadata"]["name"])
    model = isvc["spec"]["predictor"]["model"]
    protocol = model.get("protocolVersion", "v1")
    assert protocol in PROTOCOLS
    runtime = _selected(isvc)
    assert runtime["metadata"]["name"].startswith("modelserving-")
    container = _container(runtime)
    if "nvidia.com/gpu" in container["resources"].get("limits", {}):
        assert "nvidia.com/gpu" in model.get("resources", {}).get("limits", {})
    # Knative: one port across the pod, named http1 or h2c; KServe merges the
    # predictor's ports into the runtime's by containerPort.
    ports = {p["containerPort"]: p for p in container.get("ports", [])}
    ports.update({p["containerPort"]: p for p in model.get("ports", [])})
    assert len(ports) <= 1
    flags = _flags(container["args"] + model.get("args", []))
    for number, port in ports.items():
        assert port.get("name") in (None, "http1", "h2c")
        want = flags["--grpc_port"] if port.get("name") == "h2c" else flags["--http_port"]
        assert str(number) == want
    if protocol.startswith("grpc"):
        assert [p.get("name") for p in ports.values()] == ["h2c"]


@pytest.mark.parametrize("path", RUNTIME_FILES, ids=_ids(RUNTIME_FILES))
def test_every_runtime_has_an_example(path: Path) -> None:
    name = _document(path)["metadata"]["name"]
    assert name in {_selected(_document(e))["metadata"]["name"] for e in EXAMPLE_FILES}


# --- serving each example with its runtime's args ----------------------------------------


@functools.cache
def _cases() -> dict[tuple[str, str, str], RuntimeCase]:
    """Each conformance case by its runtime and sample (a runtime may have one per task)."""
    found = {}
    for path in sorted(CASES_DIR.glob("*.py")):
        if path.stem != "__init__":
            case = importlib.import_module(f"cases.{path.stem}").CASE
            found[(case.module, case.framework, case.sample)] = case
    return found


def kserve_args(runtime: dict[str, Any], isvc: dict[str, Any]) -> list[str]:
    """The container args KServe runs: the runtime's, templated, then the predictor's."""
    name = isvc["metadata"]["name"]
    args = [a.replace("{{.Name}}", name) for a in _container(runtime)["args"]]
    args += isvc["spec"]["predictor"]["model"].get("args", [])
    assert not [a for a in args if "{{" in a], "only {{.Name}} is filled in here"
    return args


def localised(args: list[str], model_dir: Path, http_port: int, grpc_port: int) -> list[str]:
    """``args`` with the model directory and ports replaced in place (each must be there)."""
    local = {"--model_dir": str(model_dir), "--http_port": str(http_port)}
    local["--grpc_port"] = str(grpc_port)
    assert set(local) <= set(_flags(args))
    return [
        f"{flag}={local[flag]}" if flag in local else arg
        for arg in args
        for flag in [arg.partition("=")[0]]
    ]


def _storage_sample(isvc: dict[str, Any]) -> tuple[str, str]:
    """``pvc://model-store/<framework>/<sample>`` -> (framework, sample)."""
    uri = isvc["spec"]["predictor"]["model"]["storageUri"]
    match = re.fullmatch(r"pvc://model-store/([\w-]+)/([\w-]+)", uri)
    assert match, f"storageUri {uri!r} is not pvc://model-store/<framework>/<sample>"
    return match.group(1), match.group(2)


def _onnxruntime_has_cuda() -> bool:
    try:
        import onnxruntime
    except ImportError:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def _v2_request(case: RuntimeCase) -> dict[str, Any]:
    rows = np.asarray(case.rows, dtype=NUMPY[case.datatype])
    tensor = {
        "name": case.input_name,
        "shape": list(rows.shape),
        "datatype": case.datatype,
        "data": rows.ravel().tolist(),
    }
    return {"inputs": [tensor]}


def _tf_serving_grpc(server: ServerProcess, name: str, case: RuntimeCase) -> list[float]:
    """TF Serving's gRPC Predict (grpc-v1) with the rows as typed float_val; the first output."""
    from modelserver.protos import tfserving as tfs

    request = tfs.PredictRequest()
    request.model_spec.name = name
    tensor = request.inputs[case.input_name]
    tensor.dtype = tfs.DataType.values_by_name["DT_FLOAT"].number
    for size in np.asarray(case.rows).shape:
        tensor.tensor_shape.dim.add(size=size)
    tensor.float_val.extend(np.asarray(case.rows, dtype=np.float32).reshape(-1).tolist())
    with grpc.insecure_channel(server.grpc_address) as channel:
        predict = channel.unary_unary(
            "/tensorflow.serving.PredictionService/Predict",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=tfs.PredictResponse.FromString,
        )
        response = predict(request, timeout=60)
    (output,) = response.outputs.values()
    assert output.tensor_shape.dim[0].size == len(case.rows)
    return list(output.float_val)


def _infer(server: ServerProcess, name: str, protocol: str, case: RuntimeCase) -> None:
    """One inference in the example's protocol; gRPC must agree with REST."""
    if protocol == "grpc-v1":
        over_grpc = _tf_serving_grpc(server, name, case)
        reply = httpx.post(
            f"{server.http_url}/v1/models/{name}:predict", json={"instances": case.rows}
        )
        assert reply.status_code == 200, reply.text
        rest = np.asarray(reply.json()["predictions"], dtype=np.float32).reshape(-1)
        np.testing.assert_allclose(over_grpc, rest, rtol=1e-6)
        return
    if protocol == "v1":
        reply = httpx.post(
            f"{server.http_url}/v1/models/{name}:predict", json={"instances": case.rows}
        )
        assert reply.status_code == 200, reply.text
        assert len(reply.json()["predictions"]) == len(case.rows)
        return
    reply = httpx.post(f"{server.http_url}/v2/models/{name}/infer", json=_v2_request(case))
    assert reply.status_code == 200, reply.text
    outputs = reply.json()["outputs"]
    assert outputs and all(o["shape"][0] == len(case.rows) for o in outputs)
    if protocol == "grpc-v2":
        client = grpcclient.InferenceServerClient(server.grpc_address)
        rows = np.asarray(case.rows, dtype=NUMPY[case.datatype])
        tensor = grpcclient.InferInput(case.input_name, list(rows.shape), case.datatype)
        tensor.set_data_from_numpy(rows)
        wanted = [grpcclient.InferRequestedOutput(o["name"]) for o in outputs]
        result = client.infer(name, [tensor], outputs=wanted)
        for o in outputs:
            got = result.as_numpy(o["name"])
            if got.dtype == np.object_:  # BYTES: bytes over gRPC, strings in JSON
                got = np.vectorize(bytes.decode, otypes=[object])(got)
            rest = np.asarray(o["data"], dtype=got.dtype).reshape(got.shape)
            assert got.tolist() == rest.tolist()


@pytest.mark.e2e
@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=_ids(EXAMPLE_FILES))
def test_example_serves_with_the_args_kserve_gives(path: Path, framework_samples) -> None:
    isvc = _document(path)
    name = isvc["metadata"]["name"]
    runtime = _selected(isvc)
    module = runtime["metadata"]["annotations"][SERVER_TYPE]
    framework, sample = _storage_sample(isvc)
    case = _cases().get((module, framework, sample))
    assert case is not None, (
        f"no tests/runtimes/cases/ file for {module} on {framework}/{sample}: examples serve "
        "a runtime's conformance sample, whose rows the test knows"
    )
    model_dir = framework_samples(framework)[sample]
    http_port, grpc_port = free_port(), free_port()
    args = localised(kserve_args(runtime, isvc), model_dir, http_port, grpc_port)
    if "--device=cuda" in args and not _onnxruntime_has_cuda():
        # No GPU here: the GPU runtime must refuse to start rather than serve from the CPU.
        done = run_to_exit(module, [*args, "--host=127.0.0.1"], env=case.env)
        output = done.stdout + done.stderr
        assert done.returncode == 2, output
        assert "CUDAExecutionProvider" in output
        assert "Traceback" not in output and UNKNOWN_FLAGS not in output
        return
    server = ServerProcess(module, args, env=case.env, http_port=http_port, grpc_port=grpc_port)
    with server:
        assert UNKNOWN_FLAGS not in server.output()
        meta = httpx.get(f"{server.http_url}/v2/models/{name}")
        assert meta.status_code == 200, meta.text
        assert meta.json()["name"] == name
        declared = [i["name"] for i in meta.json()["inputs"]]
        assert declared == list(case.input_names or [case.input_name])
        _infer(server, name, isvc["spec"]["predictor"]["model"].get("protocolVersion", "v1"), case)
        metrics_path = runtime["spec"]["annotations"]["prometheus.kserve.io/path"]
        metrics = httpx.get(f"{server.http_url}{metrics_path}")
        assert metrics.status_code == 200
        assert f'model="{name}"' in metrics.text

"""The runtime images, built from docker/Dockerfile and run the way a user runs them.

Each image is built by scripts/build_images.py, then started exactly as

    docker run -v DIR:/mnt/models:ro -p HTTP:8080 -p GRPC:8081 IMAGE \\
        --model_name=m --model_dir=/mnt/models

with a sample model written here by examples/sample_models.py, and asked from
outside over v1 REST, v2 REST (JSON and binary) and v2 gRPC; the answers must
equal what the framework itself predicts here on the same rows. The image's
promises are checked too: user 1000, the entry point, ports 8080 and 8081, no
compiler, no pip, no test suites. One test per image, so that pytest-xdist
never splits an image's build across workers.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from cases.onnx import CASE as ONNX
from cases.pmml import CASE as PMML
from cases.sklearn import CASE as SKLEARN
from container_engine import ROOT, Engine
from protocol_clients import PROTOCOLS, assert_close, infer, v1_predict, v2_metadata
from serverproc import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]

#: image -> the conformance case whose sample model it serves
IMAGES = {"sklearnserver": SKLEARN, "onnxserver": ONNX, "pmmlserver": PMML}
NUMPY = {"FP32": np.float32, "FP64": np.float64}
#: Run inside each image: what must not be there.
HYGIENE = """
import importlib.util, json, shutil, sysconfig
from pathlib import Path
site = Path(sysconfig.get_paths()["purelib"])
print(json.dumps({
    "tools": [t for t in ("gcc", "cc", "c++", "g++", "make", "pip", "pip3") if shutil.which(t)],
    "pip": importlib.util.find_spec("pip") is not None,
    "tests": [str(p) for p in site.rglob("tests") if p.is_dir()][:5],
}))
"""


def _sklearn_reference(model_dir: Path, rows: np.ndarray) -> dict[str, np.ndarray]:
    import joblib

    estimator = joblib.load(model_dir / "model.joblib")
    return {"predict": estimator.predict(rows), "predict_proba": estimator.predict_proba(rows)}


def _onnx_reference(model_dir: Path, rows: np.ndarray) -> dict[str, np.ndarray]:
    onnxruntime = pytest.importorskip("onnxruntime")
    session = onnxruntime.InferenceSession(
        str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {ONNX.input_name: rows}), strict=True))


def _pmml_reference(model_dir: Path, rows: np.ndarray) -> dict[str, np.ndarray]:
    import pandas as pd

    pypmml = pytest.importorskip("pypmml")
    model = pypmml.Model.fromFile(str(model_dir / "model.pmml"))
    scored = model.predict(pd.DataFrame(rows, columns=list(PMML.input_names)))
    return {str(name): scored[name].to_numpy() for name in scored.columns}


#: framework -> what the framework itself predicts on the sample
REFERENCE: dict[str, Callable[[Path, np.ndarray], dict[str, np.ndarray]]] = {
    "sklearn": _sklearn_reference,
    "onnx": _onnx_reference,
    "pmml": _pmml_reference,
}


@dataclass
class Served:
    """Where a container answers, named as ServerProcess names it (protocol_clients)."""

    http_address: str
    grpc_address: str

    @property
    def http_url(self) -> str:
        return f"http://{self.http_address}"


def _build(engine: Engine, image: str) -> str:
    """Build ``image`` with scripts/build_images.py under a fresh tag; return the tag."""
    work = ROOT / "build" / "image-tests"
    log, report = work / f"build-{image}.log", work / f"build-{image}.json"
    with log.open("w") as out:
        done = subprocess.run(
            [
                sys.executable,
                str(ROOT / "scripts" / "build_images.py"),
                *engine.build_args,
                "--repo=localhost/modelserver-test",
                f"--tag={uuid.uuid4().hex[:8]}",
                f"--json={report}",
                image,
            ],
            env=engine.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    assert done.returncode == 0, log.read_text(errors="replace")[-6000:]
    return json.loads(report.read_text())[0]["tag"]


def _models(framework: str, root: Path) -> dict[str, Path]:
    """The framework's samples, readable by the image's user 1000."""
    import sample_models

    written = sample_models.write(framework, root)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return written


@contextlib.contextmanager
def _container(engine: Engine, tag: str, model_dir: Path, flags: list[str]) -> Iterator[Served]:
    """``<engine> run`` the image on the model, published on free loopback ports."""
    name = f"modelserver-test-{uuid.uuid4().hex[:8]}"
    http, grpc = free_port(), free_port()
    engine.run(
        "run",
        "--detach",
        f"--name={name}",
        f"--volume={model_dir}:/mnt/models:ro",
        f"--publish=127.0.0.1:{http}:8080",
        f"--publish=127.0.0.1:{grpc}:8081",
        tag,
        "--model_name=m",
        "--model_dir=/mnt/models",
        *flags,
    )
    try:
        _wait_ready(engine, name, f"http://127.0.0.1:{http}")
        yield Served(f"127.0.0.1:{http}", f"127.0.0.1:{grpc}")
    finally:
        engine.run("rm", "--force", name, check=False)


def _wait_ready(engine: Engine, name: str, url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/v2/health/ready", timeout=1.0).status_code == 200:
                return
        state = engine.run("inspect", "--format={{.State.Running}}", name, check=False)
        if state.stdout.strip() != "true":
            break
        time.sleep(0.5)
    logs = engine.run("logs", name, check=False)
    pytest.fail(f"{name} never became ready:\n{logs.stdout}{logs.stderr}")


def _check_config(engine: Engine, tag: str, module: str) -> None:
    config = json.loads(engine.run("image", "inspect", "--format={{json .Config}}", tag).stdout)
    assert config["User"] == "1000:1000"
    assert config["Entrypoint"] == ["python", "-m", module]
    assert {"8080/tcp", "8081/tcp"} <= set(config["ExposedPorts"])
    shell = engine.run("run", "--rm", "--entrypoint=python", tag, "-c", HYGIENE)
    assert json.loads(shell.stdout) == {"tools": [], "pip": False, "tests": []}


@pytest.mark.parametrize("image", IMAGES)
def test_image_serves_its_sample(engine: Engine, image: str) -> None:
    case = IMAGES[image]
    models = ROOT / "build" / "image-tests" / f"models-{image}"
    shutil.rmtree(models, ignore_errors=True)
    model_dir = _models(case.framework, models)[case.sample]
    rows = np.asarray(case.rows, dtype=NUMPY[case.datatype])
    expected = REFERENCE[case.framework](model_dir, rows)

    tag = _build(engine, image)
    try:
        _check_config(engine, tag, case.module)
        with _container(engine, tag, model_dir, case.flags) as served:
            outputs = [o["name"] for o in v2_metadata(served, "m")["outputs"]]
            for protocol in PROTOCOLS:
                got = infer(served, "m", {case.input_name: rows}, protocol, outputs)
                for name, want in expected.items():
                    assert name in got, (protocol, sorted(got))
                    assert_close(got[name], want)
            v1 = v1_predict(served, "m", {"instances": case.rows})
            assert v1.status_code == 200, v1.text
            assert len(v1.json()["predictions"]) == len(case.rows)
            wrong = v1_predict(served, "m", {"instances": [case.bad_row]})
            assert wrong.status_code == 400, wrong.text
    finally:
        engine.run("rmi", "--force", tag, check=False)
        shutil.rmtree(models, ignore_errors=True)

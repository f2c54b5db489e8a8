"""The servers under test: how to launch each one and which loads it can take.

Every target serves the same model file under the name ``iris`` with one
worker process: the scikit-learn file, or for the MLflow comparison the same
kind of model as MLflow saves it, which the MLflow targets are sent as named
columns (their ``payloads`` prefix picks those bodies and answers). A target
names the protocol features it lacks, with the reason, so the report can say
what was skipped and why instead of showing an empty cell.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .paths import Paths

MODEL_NAME = "iris"

#: Protocol features a load needs (see loads.Load.feature).
V2_JSON, V2_BINARY, V1, GRPC = "v2-json", "v2-binary", "v1", "grpc"

MLSERVER_NO_BINARY = (
    "MLServer 1.7.1 has no REST binary tensor extension (a binary body gets HTTP 500)"
)
MLSERVER_NO_V1 = "MLServer speaks only the Open Inference Protocol (v2), no KServe v1"
BARE_ONLY_V2 = "the bare route is one v2 REST route"


@dataclass(frozen=True)
class Ports:
    http: int
    grpc: int
    metrics: int


@dataclass(frozen=True)
class Launch:
    """A command line plus the working directory it needs (MLServer reads its settings there)."""

    argv: list[str]
    cwd: Path


@dataclass(frozen=True)
class Target:
    label: str
    family: str  # ours | kserve | mlserver | bare: ratios compare the ours family with the others
    description: str
    build: Callable[[Paths, Ports], Launch]
    unsupported: dict[str, str] = field(default_factory=dict)
    venv: str | None = None  # bench/.envs venv it needs (None: our .venv)
    #: Prefix of the request bodies and expected answers its model takes ("mlflow-").
    payloads: str = ""

    def supports(self, feature: str) -> bool:
        return feature not in self.unsupported


def ours(
    label: str = "ours", extra_args: str = "", workers: int = 1, mlflow: bool = False
) -> Target:
    """Our sklearnserver on the joblib file, or (``mlflow``) mlflowserver on the MLflow model."""
    extra = shlex.split(extra_args)
    runtime = "mlflowserver" if mlflow else "sklearnserver"

    def build(paths: Paths, ports: Ports) -> Launch:
        model_dir = paths.mlflow_model_dir if mlflow else paths.model_dir
        argv = [
            str(paths.ours_python), "-m", runtime,
            "--model_name", MODEL_NAME, "--model_dir", str(model_dir),
            "--http_port", str(ports.http), "--grpc_port", str(ports.grpc),
            "--workers", str(workers), *extra,
        ]  # fmt: skip
        return Launch(argv, paths.repo)

    args = " ".join([f"--workers {workers}", *extra])
    return Target(
        label, "ours", f"python -m {runtime} {args}", build, payloads="mlflow-" if mlflow else ""
    )


def kserve(label: str = "kserve", request_logs: bool = False) -> Target:
    def build(paths: Paths, ports: Ports) -> Launch:
        flag = str(request_logs).lower()
        argv = [
            str(paths.venv_bin("kserve")), str(paths.servers / "kserve_iris.py"),
            "--model_name", MODEL_NAME, "--model_dir", str(paths.model_dir),
            "--http_port", str(ports.http), "--grpc_port", str(ports.grpc), "--workers", "1",
            "--enable_latency_logging", flag, "--request_logs", flag,
        ]  # fmt: skip
        return Launch(argv, paths.repo)

    logs = "with" if request_logs else "without"
    return Target(
        label,
        "kserve",
        f"kserve 0.21.0 ModelServer + KServe's SKLearnModel, {logs} per-request logs",
        build,
        venv="kserve",
    )


def mlserver(
    label: str = "mlserver",
    parallel_workers: int | None = 0,
    mlflow: bool = False,
    implementation: str = "",
    framework: str = "",
) -> Target:
    """MLServer with ``parallel_workers`` (None: its default, an inference pool of 1 process).

    Its scikit-learn runtime on the joblib file, or (``mlflow``) its MLflow
    runtime (mlserver-mlflow, in a venv of its own) on the MLflow model.
    """

    def build(paths: Paths, ports: Ports) -> Launch:
        run_dir = paths.runs / label
        model = run_dir / MODEL_NAME
        model.mkdir(parents=True, exist_ok=True)
        settings: dict[str, object] = {
            "http_port": ports.http,
            "grpc_port": ports.grpc,
            "metrics_port": ports.metrics,
            "debug": False,  # MLServer's default true logs every request
        }
        if parallel_workers is not None:
            settings["parallel_workers"] = parallel_workers
        (run_dir / "settings.json").write_text(json.dumps(settings, indent=2))
        runtime, uri = "mlserver_sklearn.SKLearnModel", paths.model_dir / "model.joblib"
        if mlflow:
            runtime, uri = "mlserver_mlflow.MLflowRuntime", paths.mlflow_model_dir
        if framework:
            model_dir = framework_model_dir(paths, framework)
            runtime, uri = implementation, next(model_dir.glob("model.*"))
        model_settings = {
            "name": MODEL_NAME,
            "implementation": runtime,
            "parameters": {"uri": str(uri)},
        }
        (model / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
        return Launch([str(paths.venv_bin(venv, "mlserver")), "start", str(run_dir)], run_dir)

    venv = "mlserver-mlflow" if mlflow else "mlserver"
    pool = (
        "its default inference pool (parallel_workers=1: a separate process)"
        if parallel_workers is None
        else f"parallel_workers={parallel_workers} (in-process inference)"
    )
    runtime = (
        "mlserver-mlflow MLflowRuntime (mlflow 3.17.2)"
        if mlflow
        else f"mlserver-{framework} {implementation.rsplit('.', 1)[-1]}"
        if framework
        else "mlserver-sklearn SKLearnModel"
    )
    return Target(
        label,
        "mlserver",
        f"mlserver 1.7.1 + {runtime}, {pool}",
        build,
        unsupported={V2_BINARY: MLSERVER_NO_BINARY, V1: MLSERVER_NO_V1},
        venv=venv,
        payloads="mlflow-" if mlflow else f"{framework}-" if framework else "",
    )


def bare(label: str = "bare") -> Target:
    def build(paths: Paths, ports: Ports) -> Launch:
        argv = [
            str(paths.ours_python), str(paths.servers / "bare.py"),
            "--model_dir", str(paths.model_dir), "--port", str(ports.http),
        ]  # fmt: skip
        return Launch(argv, paths.repo)

    return Target(
        label,
        "bare",
        "uvicorn + Starlette, one route: orjson decode, np.asarray, predict inline, orjson",
        build,
        unsupported={V1: BARE_ONLY_V2, GRPC: BARE_ONLY_V2},
    )


#: ``--framework``: our runtime for each framework the per-framework comparison covers.
FRAMEWORK_RUNTIMES = {"xgboost": "xgbserver", "lightgbm": "lgbserver"}
#: Frameworks whose MLServer runtime is not in bench/.envs/mlserver, and why.
MLSERVER_MISSING = {
    "xgboost": "mlserver-xgboost needs the `xgboost` wheel, which on Linux requires "
    "nvidia-nccl-cu12 (a CUDA library); the CPU-only `xgboost-cpu` does not satisfy it",
}
#: MLServer's runtime class per framework (from mlserver-<framework> on PyPI).
MLSERVER_RUNTIMES = {"lightgbm": "mlserver_lightgbm.LightGBMModel"}


def framework_model_dir(paths: Paths, framework: str) -> Path:
    """The framework's model directory, as bench/tools/payloads.py wrote it."""
    expected = json.loads((paths.payloads / "expected.json").read_text())
    return Path(expected[f"{framework}_model"])


def framework_targets(framework: str, ours_args: str = "") -> list[Target]:
    """Ours, KServe's runtime, MLServer's (where installable) and the bare route for one framework.

    All serve the same model file (the framework's iris sample) under ``iris``
    and are sent the bodies prefixed ``<framework>-``.
    """
    prefix = f"{framework}-"
    runtime = FRAMEWORK_RUNTIMES[framework]
    extra = shlex.split(ours_args)

    def build_ours(paths: Paths, ports: Ports) -> Launch:
        argv = [
            str(paths.ours_python), "-m", runtime,
            "--model_name", MODEL_NAME, "--model_dir", str(framework_model_dir(paths, framework)),
            "--http_port", str(ports.http), "--grpc_port", str(ports.grpc), "--workers", "1",
            *extra,
        ]  # fmt: skip
        return Launch(argv, paths.repo)

    def build_kserve(paths: Paths, ports: Ports) -> Launch:
        argv = [
            str(paths.venv_bin("kserve")), str(paths.servers / "kserve_boost.py"),
            "--framework", framework, "--model_name", MODEL_NAME,
            "--model_dir", str(framework_model_dir(paths, framework)),
            "--http_port", str(ports.http), "--grpc_port", str(ports.grpc), "--workers", "1",
            "--enable_latency_logging", "false",
        ]  # fmt: skip
        return Launch(argv, paths.repo)

    def build_bare(paths: Paths, ports: Ports) -> Launch:
        argv = [
            str(paths.ours_python), str(paths.servers / "bare.py"), "--framework", framework,
            "--model_dir", str(framework_model_dir(paths, framework)), "--port", str(ports.http),
        ]  # fmt: skip
        return Launch(argv, paths.repo)

    found = [
        Target(
            f"ours-{framework}",
            "ours",
            f"python -m {runtime} --workers 1 {ours_args}".strip(),
            build_ours,
            payloads=prefix,
        ),
        Target(
            f"kserve-{framework}",
            "kserve",
            f"kserve 0.21.0 ModelServer + KServe's {framework} runtime as documented "
            "(bench/servers/kserve_boost.py)",
            build_kserve,
            venv="kserve",
            payloads=prefix,
        ),
    ]
    if framework in MLSERVER_RUNTIMES:
        found.append(
            mlserver(
                f"mlserver-{framework}",
                implementation=MLSERVER_RUNTIMES[framework],
                framework=framework,
            )
        )
    found.append(
        Target(
            f"bare-{framework}",
            "bare",
            f"uvicorn + Starlette, one route: the {framework} booster's predict inline",
            build_bare,
            unsupported={V1: BARE_ONLY_V2, GRPC: BARE_ONLY_V2},
            payloads=prefix,
        )
    )
    return found


#: Targets ``--servers`` can name; the first five run by default.
CATALOGUE: dict[str, Callable[[], Target]] = {
    "ours": ours,
    "kserve": kserve,
    "mlserver": mlserver,
    "mlserver-default": lambda: mlserver("mlserver-default", parallel_workers=None),
    "bare": bare,
    "kserve-logging": lambda: kserve("kserve-logging", request_logs=True),
    "ours-mlflow": lambda: ours("ours-mlflow", mlflow=True),
    "mlserver-mlflow": lambda: mlserver("mlserver-mlflow", mlflow=True),
}
#: The MLflow comparison (``--scenarios mlflow``): the same MLflow model in both.
MLFLOW_SERVERS = ["ours-mlflow", "mlserver-mlflow"]
DEFAULT_SERVERS = ["ours", "kserve", "mlserver", "mlserver-default", "bare"]

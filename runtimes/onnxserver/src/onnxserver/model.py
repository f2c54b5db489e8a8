"""ONNX runtime: one ``.onnx`` graph served through ONNX Runtime, on the CPU or CUDA.

The graph declares every input and output with an element type and a shape,
so the model is a TensorModel: metadata lists all of them with their Open
Inference Protocol datatypes (``-1`` for a dynamic or symbolic dimension), a
request feeds the inputs by name and may select any outputs, and the
selected outputs come from one ``session.run``.

``--device`` (env ``DEVICE``): ``cpu``; ``cuda``; ``auto`` (CUDA when this
onnxruntime build has the CUDA provider, else the CPU). ONNX Runtime falls
back to the CPU silently when CUDA cannot start, so the providers the session
really uses are read back and logged, and ``--device cuda`` fails the startup
when CUDA is not among them: a pod that asked for a GPU must not quietly
serve from the CPU. On CUDA, requests run through IO binding (inputs bound
from host memory, outputs allocated on the device and copied back once),
except for graphs with string tensors, which ONNX Runtime cannot bind (it
refuses string inputs and crashes copying string outputs back): those use
``session.run``, which moves data between host and device itself.

Threads: ``--nthread`` sets ONNX Runtime's intra-op threads (0: its default,
one per physical core); ``--inter_op_threads`` N > 0 runs independent
branches of the graph in parallel on N threads. Graph optimisation is at its
highest level.

Graphs with sequence or map outputs (skl2onnx's ZipMap) are refused at load
with a message saying how to convert them: such values have no tensor form in
the protocol.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from modelserver import (
    DeviceSettings,
    Feeds,
    Model,
    ModelLoadError,
    TensorModel,
    TensorSpec,
    choose_device,
    setting,
)

logger = logging.getLogger(__name__)

EXTENSIONS = (".onnx",)
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
#: The GPU a CUDA session runs on; pick another with CUDA_VISIBLE_DEVICES.
CUDA_DEVICE_ID = 0

#: ONNX Runtime's tensor types and the Open Inference Protocol datatypes they
#: travel as. Types missing here (bfloat16, float8, int4, complex) have no
#: protocol datatype and are refused at load.
ONNX_TO_DATATYPE: dict[str, str] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}
#: The other way: the ONNX tensor type each protocol datatype is fed to.
DATATYPE_TO_ONNX: dict[str, str] = {v: k for k, v in ONNX_TO_DATATYPE.items()}

_MISSING_ORT = (
    "onnxruntime is not installed: install onnxserver[cpu] (onnxruntime) or "
    "onnxserver[gpu] (onnxruntime-gpu); the two cannot be installed together"
)


def import_onnxruntime() -> ModuleType:
    """``onnxruntime`` (from either package), or a ModelLoadError saying what to install."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise ModelLoadError(f"{_MISSING_ORT} ({exc})") from exc
    return onnxruntime


def tensor_spec_of(arg: Any, kind: str, path: Path) -> TensorSpec:
    """A declared input or output (an ORT NodeArg) as a TensorSpec; refuse non-tensors."""
    datatype = ONNX_TO_DATATYPE.get(arg.type)
    if datatype is None:
        where = f"{path.name}: {kind} '{arg.name}' has type {arg.type}"
        if not arg.type.startswith("tensor("):
            raise ModelLoadError(
                f"{where}; only dense tensors can be served (sequences, maps and sparse "
                "tensors have no protocol form). skl2onnx's ZipMap output is such a "
                "sequence: convert with options={'zipmap': False}, or without that output"
            )
        raise ModelLoadError(f"{where}, which has no Open Inference Protocol datatype")
    dims = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in arg.shape)
    return TensorSpec(arg.name, datatype, dims)


def _text(data: np.ndarray) -> np.ndarray:
    """BYTES elements (bytes off the wire, str from v1 JSON) as the str tensor(string) takes.

    ONNX Runtime turns a bytes object into its repr ("b'...'"), so it must be
    decoded here; text that is not UTF-8 is the client's error (a 400).
    """
    out = np.empty(data.shape, dtype=object)
    out.reshape(-1)[:] = [x.decode("utf-8") if isinstance(x, bytes) else x for x in data.flat]
    return out


def requested_providers(ort: ModuleType, device: str, path: Path) -> list[str]:
    """The execution providers to ask for; ``cuda`` without a CUDA build is refused."""
    available = ort.get_available_providers()
    problem = None
    if CUDA not in available:
        problem = (
            f"this onnxruntime {ort.__version__} has no {CUDA} (available: "
            f"{', '.join(available)}); install onnxserver[gpu] (onnxruntime-gpu) on a machine "
            "with an NVIDIA GPU, or use --device cpu or auto"
        )
    return [CUDA, CPU] if choose_device(device, problem, path.name) == "cuda" else [CPU]


@dataclass
class ONNXSettings(DeviceSettings):
    """onnxserver's flags: the shared ones, ``--device`` and inter-op threads."""

    inter_op_threads: int = setting(
        0, "threads running independent graph branches in parallel (0: sequential)", minimum=0
    )


def session_options(ort: ModuleType, settings: ONNXSettings) -> Any:
    """Full graph optimisation; ``--nthread`` intra-op threads, ``--inter_op_threads``."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = settings.nthread
    inter = settings.inter_op_threads
    if inter:
        # Inter-op threads only run independent branches in parallel mode.
        so.execution_mode = ort.ExecutionMode.ORT_PARALLEL
        so.inter_op_num_threads = inter
    return so


class ONNXModel(TensorModel):
    """Serves one ONNX graph with an ONNX Runtime InferenceSession."""

    extensions = EXTENSIONS
    platform = "onnxruntime_onnx"
    server_name = "onnxserver"
    settings_class = ONNXSettings
    settings: ONNXSettings

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.session: Any = None
        self.providers: list[str] = []
        #: "cuda" when requests go through IO binding with outputs on the GPU;
        #: None for ``session.run``.
        self.bound_device: str | None = None
        self._run_options: Any = None
        self._text_inputs: tuple[str, ...] = ()

    def load(self) -> None:
        ort = import_onnxruntime()
        path = self.model_file()
        self.session = self._open(ort, path)
        self.declare(
            [tensor_spec_of(a, "input", path) for a in self.session.get_inputs()],
            [tensor_spec_of(a, "output", path) for a in self.session.get_outputs()],
        )
        self._text_inputs = tuple(s.name for s in self.input_specs if s.datatype == "BYTES")
        has_text = any(s.datatype == "BYTES" for s in (*self.input_specs, *self.output_specs))
        self.bound_device = "cuda" if CUDA in self.providers and not has_text else None
        if self.bound_device is not None:
            logger.info("model %s: requests run through IO binding on cuda", self.name)
        errors = ort.capi.onnxruntime_pybind11_state
        # Shape and type mismatches ORT finds itself (FAIL from a kernel, for
        # graphs with dynamic dimensions) are the request's fault.
        self.input_errors = (*Model.input_errors, errors.InvalidArgument, errors.Fail)
        # A bad request is answered 400 and logged once by the core; ORT's own
        # error line for it on every request would only repeat it.
        self._run_options = ort.RunOptions()
        self._run_options.log_severity_level = 4

    def _open(self, ort: ModuleType, path: Path) -> Any:
        """The session on the providers asked for, checked against those really in use."""
        device = self.settings.device
        wanted = requested_providers(ort, device, path)
        try:
            session = ort.InferenceSession(
                str(path), sess_options=session_options(ort, self.settings), providers=wanted
            )
        except Exception as exc:
            raise ModelLoadError(f"Cannot load {path}: {type(exc).__name__}: {exc}") from exc
        self.providers = list(session.get_providers())
        logger.info(
            "model %s: %s on onnxruntime %s, providers in use: %s",
            self.name,
            path.name,
            ort.__version__,
            ", ".join(self.providers),
        )
        self._check_cuda(device, wanted, path)
        return session

    def _check_cuda(self, device: str, wanted: list[str], path: Path) -> None:
        """Fail ``--device cuda`` (warn for ``auto``) when ORT fell back to the CPU."""
        if CUDA not in wanted or CUDA in self.providers:
            return
        problem = (
            f"onnxruntime could not start {CUDA} (providers in use: "
            f"{', '.join(self.providers)}); its log above says why (no GPU visible, or missing "
            "CUDA/cuDNN libraries)"
        )
        choose_device(device, problem, path.name)
        logger.warning("%s could not start; model %s runs on the CPU", CUDA, self.name)

    def run(self, feeds: Feeds, names: Sequence[str]) -> Sequence[Any]:
        if self._text_inputs:
            feeds = {**feeds, **{n: _text(feeds[n]) for n in self._text_inputs}}
        if self.bound_device is not None:
            return self._run_bound(feeds, names)
        return self.session.run(names, feeds, self._run_options)

    def _run_bound(self, feeds: Feeds, names: Sequence[str]) -> list[np.ndarray]:
        """One run through IO binding: host inputs in, device outputs copied back once."""
        binding = self.session.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
        for name in names:
            binding.bind_output(name, self.bound_device, CUDA_DEVICE_ID)
        self.session.run_with_iobinding(binding, self._run_options)
        return binding.copy_outputs_to_cpu()

    def release(self) -> None:
        # Dropping the session frees its memory (on the GPU too).
        self.session = None

    def metadata_parameters(self) -> dict[str, Any]:
        params: dict[str, Any] = {"providers": self.providers}
        meta = self.session.get_modelmeta()
        if meta.producer_name:
            params["producer"] = meta.producer_name
        if meta.custom_metadata_map:
            params["custom_metadata"] = dict(meta.custom_metadata_map)
        return params

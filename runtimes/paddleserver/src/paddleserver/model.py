"""Paddle runtime: an inference model through ``paddle.inference``.

Two layouts, each a program file plus its ``.pdiparams`` of the same stem:
``model.pdmodel`` (the legacy ProgramDesc protobuf) and Paddle 3's
``model.json`` (a PIR program). Every input is fed by name and every output
is returned; names and datatypes come from the predictor, shapes (``-1`` for
a dynamic dimension) from the program file, since the predictor reports no
shape before it has run.

The program file is read here before Paddle sees it: Paddle dies of a
segmentation fault on some corrupt ``.pdmodel`` bytes, and a server must
refuse a bad file with a message, not vanish.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from modelserver import Feeds, InvalidInput, ModelLoadError, TensorModel, TensorSpec

logger = logging.getLogger(__name__)

PIR_SUFFIX = ".json"
PROGRAM_SUFFIX = ".pdmodel"
PARAMS_SUFFIX = ".pdiparams"

#: paddle.inference DataType name -> Open Inference Protocol datatype.
DATATYPES = {
    "FLOAT64": "FP64",
    "FLOAT32": "FP32",
    "FLOAT16": "FP16",
    "BFLOAT16": "BF16",
    "INT64": "INT64",
    "INT32": "INT32",
    "INT8": "INT8",
    "UINT8": "UINT8",
    "BOOL": "BOOL",
}

Dims = tuple[int, ...]


def _paddle() -> Any:
    """``paddle`` with ``paddle.inference``, imported quietly and without taking SIGTERM.

    Paddle warns on import that ccache (a compiler cache for building custom
    C++ operators) is missing, which says nothing about serving. Its import
    also installs a C handler for SIGTERM that prints a "FatalError" dump:
    a pod stopped while its model loads should just exit, and the server
    installs its own graceful handler once it serves, so the handler Python
    had before the import is put back.
    """
    first = "paddle" not in sys.modules
    previous = signal.getsignal(signal.SIGTERM)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No ccache found")
        import paddle
        import paddle.inference
    if first and previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, previous)
    return paddle


def _reason(exc: BaseException) -> str:
    """The first line of Paddle's message, without its hints and C++ locations."""
    lines = [line.strip() for line in str(exc).splitlines()]
    lines = [line for line in lines if line and line != "In user code:"]
    first = lines[0] if lines else type(exc).__name__
    return first.split("  [Hint:")[0].split(" (at /paddle/")[0]


def _dims(values: Sequence[int] | None) -> Dims | None:
    if values is None:
        return None
    return tuple(-1 if int(d) < 0 else int(d) for d in values)


# -- what the program file declares -------------------------------------------


def _pir_attr(op: dict[str, Any], key: str) -> Any:
    """An op attribute's value: attributes are ``[{"N": name, "AT": {"D": value}}, ...]``."""
    for attr in op.get("A") or []:
        if isinstance(attr, dict) and attr.get("N") == key:
            value = attr.get("AT")
            return value.get("D") if isinstance(value, dict) else None
    return None


def _pir_value_dims(op: dict[str, Any]) -> Dims | None:
    """Dims of the op's first result: its type is ``{"D": [dtype, dims, layout, ...]}``."""
    results = op.get("O")
    first: Any = results[0] if isinstance(results, list) and results else results
    try:
        return _dims(first["TT"]["D"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def pir_shapes(path: Path) -> dict[str, Dims | None]:
    """Input (``data``) and output (``fetch``) names -> dims, from a PIR ``.json``."""
    try:
        doc = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path} is not a Paddle PIR program: not JSON ({exc})") from None
    try:
        if doc["base_code"]["magic"] != "pir":
            raise KeyError("magic")
        ops = doc["program"]["regions"][0]["blocks"][0]["ops"]
    except (KeyError, IndexError, TypeError):
        raise ModelLoadError(
            f"{path} is JSON but not a Paddle PIR program "
            "(expected base_code.magic 'pir' and program.regions[0].blocks[0].ops)"
        ) from None
    shapes: dict[str, Dims | None] = {}
    for op in ops:
        kind = str(op.get("#", "")).rpartition(".")[2] if isinstance(op, dict) else ""
        if kind in ("data", "fetch"):
            shapes[str(_pir_attr(op, "name"))] = _pir_value_dims(op)
    return shapes


def program_shapes(path: Path) -> dict[str, Dims | None]:
    """Feed and fetch variable names -> dims, from a legacy ``.pdmodel`` ProgramDesc."""
    from google.protobuf.message import DecodeError
    from paddle.base.proto import framework_pb2

    desc = framework_pb2.ProgramDesc()  # type: ignore[attr-defined]
    try:
        desc.ParseFromString(path.read_bytes())
    except DecodeError as exc:
        raise ModelLoadError(f"{path} is not a Paddle program (ProgramDesc): {exc}") from None
    if not desc.blocks:
        raise ModelLoadError(f"{path} is not a Paddle program: it holds no blocks")
    block = desc.blocks[0]
    variables = {var.name: var for var in block.vars}
    names = [
        arg
        for op in block.ops
        if op.type in ("feed", "fetch")
        for slot in (op.outputs if op.type == "feed" else op.inputs)
        for arg in slot.arguments
    ]
    if not names:
        raise ModelLoadError(f"{path} has no feed or fetch operators: not an inference program")
    shapes: dict[str, Dims | None] = {}
    for name in names:
        var = variables.get(name)
        shapes[name] = _dims(var.type.dense_tensor.tensor.dims) if var is not None else None
    return shapes


class Session:
    """A predictor, its input and output handles, and the lock its calls take turns on.

    A Paddle predictor is not thread-safe, and the core may call ``run`` from
    several pool threads at once. Clones (``predictor.clone()``) could run in
    parallel, but Paddle 3.3 copies every weight into each clone of a PIR
    program (a 64 MiB model grew by 64 MiB per clone; legacy programs share
    them), so a pool of clones would multiply the model's memory by the peak
    concurrency. Calls take turns instead; ``--workers`` adds processes and
    ``--nthread`` threads inside each call.
    """

    __slots__ = ("inputs", "lock", "outputs", "predictor")

    def __init__(self, predictor: Any) -> None:
        self.predictor = predictor
        self.lock = threading.Lock()
        self.inputs = {n: predictor.get_input_handle(n) for n in predictor.get_input_names()}
        self.outputs = {n: predictor.get_output_handle(n) for n in predictor.get_output_names()}


# -- the model ------------------------------------------------------------------


class PaddleModel(TensorModel):
    """Serves one Paddle inference model (legacy program or PIR) with every input and output."""

    extensions = (PROGRAM_SUFFIX, PIR_SUFFIX)
    platform = "paddle"
    server_name = "paddleserver"

    def load(self) -> None:
        paddle = _paddle()
        path = self.model_file()
        params = self._params_file(path)
        shapes = pir_shapes(path) if path.suffix.lower() == PIR_SUFFIX else program_shapes(path)
        config = paddle.inference.Config(str(path), str(params))
        config.disable_glog_info()
        self.device, self.cpu_threads = self._choose_device(paddle, config)
        try:
            predictor = paddle.inference.create_predictor(config)
        except Exception as exc:
            raise ModelLoadError(
                f"Paddle cannot load {path} with {params.name}: {_reason(exc)}"
            ) from None
        self.path = path
        self.session = Session(predictor)
        inputs, outputs = self.session.inputs, self.session.outputs
        self.declare(
            [self._spec(n, h, shapes, path) for n, h in inputs.items()],
            [self._spec(n, h, shapes, path) for n, h in outputs.items()],
        )
        n = self.cpu_threads
        threads = f" ({n} math thread{'' if n == 1 else 's'})" if n else ""
        logger.info(
            "model %s: %s on %s%s; inputs %s; outputs %s",
            self.name,
            path.name,
            self.device,
            threads,
            ", ".join(f"{s.name} {s.datatype} {list(s.shape)}" for s in self.input_specs),
            ", ".join(f"{s.name} {s.datatype} {list(s.shape)}" for s in self.output_specs),
        )

    @staticmethod
    def _params_file(path: Path) -> Path:
        params = path.with_suffix(PARAMS_SUFFIX)
        if not params.is_file():
            found = ", ".join(sorted(p.name for p in path.parent.iterdir()))
            raise ModelLoadError(
                f"{path.name} needs its parameters file {params.name} in {path.parent}; "
                f"found: {found}"
            )
        return params

    def _choose_device(self, paddle: Any, config: Any) -> tuple[str, int | None]:
        """The GPU when Paddle is built with CUDA and sees one, else the CPU with its threads."""
        if paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
            config.enable_use_gpu(256, 0)  # initial memory pool (MB), device 0
            return "gpu:0", None
        config.disable_gpu()
        nthread = self.settings.nthread
        if nthread > 0:
            config.set_cpu_math_library_num_threads(nthread)
        return "cpu", config.cpu_math_library_num_threads()

    @staticmethod
    def _spec(name: str, handle: Any, shapes: dict[str, Dims | None], path: Path) -> TensorSpec:
        kind = handle.type().name
        datatype = DATATYPES.get(kind)
        if datatype is None:
            raise ModelLoadError(f"{path.name}: tensor '{name}' has Paddle type {kind}, not served")
        # A name the file does not describe gets no shape: nothing to check against.
        return TensorSpec(name, datatype, shapes.get(name) or ())

    def run(self, feeds: Feeds, names: Sequence[str]) -> list[np.ndarray]:
        for name, data in feeds.items():
            if data.size == 0:
                # Paddle fails on some empty tensors: a bare 'std::exception', or a
                # SIGFPE that kills the process.
                raise InvalidInput(
                    f"Model '{self.name}' input '{name}' is empty (shape {list(data.shape)})"
                )
        session = self.session
        with session.lock:
            for name, data in feeds.items():
                session.inputs[name].copy_from_cpu(data)
            try:
                session.predictor.run()
            except ValueError as exc:  # Paddle's InvalidArgument: shapes that do not fit
                raise InvalidInput(
                    f"Model '{self.name}' rejected the input: {_reason(exc)}"
                ) from None
            return [session.outputs[name].copy_to_cpu() for name in names]

    def metadata_parameters(self) -> dict[str, Any]:
        layout = "pir" if self.path.suffix.lower() == PIR_SUFFIX else "program"
        params: dict[str, Any] = {
            "model_file": self.path.name,
            "layout": layout,
            "device": self.device,
        }
        if self.cpu_threads:
            params["cpu_math_threads"] = self.cpu_threads
        return params

    def release(self) -> None:
        self.session = None  # type: ignore[assignment]

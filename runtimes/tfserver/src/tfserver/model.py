"""TensorFlow runtime: SavedModels, every signature, through a TensorFlow session.

A SavedModel is loaded the way TensorFlow Serving loads it: its MetaGraph
(``--saved_model_tags``, ``serve`` by default) into a session of its own, and
each signature run on the graph tensors its SignatureDef names through a
session callable made once per set of outputs (the C API's
``TF_SessionMakeCallable``, as TF Serving's ``Session::MakeCallable``): about
30 µs a call where ``Session.run`` (and ``make_callable`` with feeds, which
delegates to it) takes 150 µs and calling the restored function eagerly 800. Every signature
is served (``serving_default`` and the named ones, predict, classify and
regress alike); the ``__saved_model_init_op`` entry is an initialiser, not a
signature. Each signature is a TensorModel of its own, so output selection,
type and shape checks and adaptive batching (signatures whose every tensor
has a dynamic first dimension) apply per signature.

A model directory holds a SavedModel (``saved_model.pb`` or ``.pbtxt`` with
``variables/``) or TF Serving's versioned layout (``<dir>/<version>/...``),
served by the core as versions, the highest by default.

Threads: ``--nthread`` N > 0 gives each session N intra-op and N inter-op
threads (0: TensorFlow's defaults, one per core). ``--device``: ``cpu``;
``cuda`` (fail the start when TensorFlow cannot use a GPU: a CPU-only build,
no GPU visible, or a session without a GPU device); ``auto`` (a GPU when
TensorFlow sees one). TensorFlow is imported only here, with its C++ and
Python logging kept to errors unless ``--log_level debug``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import numpy as np
from modelserver import (
    Feeds,
    Model,
    ModelLoadError,
    Settings,
    TensorModel,
    TensorSpec,
    datatype_of,
    setting,
)

logger = logging.getLogger(__name__)

EXTENSIONS = ("saved_model.pb", "saved_model.pbtxt")
DEFAULT_SIGNATURE = "serving_default"


@dataclass
class TFSettings(Settings):
    """tfserver's flags: the shared ones, the device, the MetaGraph's tags and version labels."""

    device: Literal["auto", "cuda", "cpu"] = setting(
        "auto", "where the graph runs: cuda (fail if TensorFlow cannot use a GPU), cpu, or auto"
    )
    saved_model_tags: str = setting(
        "serve", "tags of the MetaGraph to load, comma-separated (TF Serving's --saved_model_tags)"
    )
    version_labels: str = setting(
        "",
        "names for versions, e.g. stable=1,canary=2: requests may use /labels/{label} "
        "(TF Serving's version labels)",
    )


@contextlib.contextmanager
def native_log_to_debug(enabled: bool) -> Iterator[None]:
    """Hold what TensorFlow's C++ code writes to stderr and log it at debug level.

    Its absl log writes notices (oneDNN's, at every import) to file descriptor
    2 before absl is initialised, whatever TF_CPP_MIN_LOG_LEVEL says. Lines
    of severity E or F are logged as errors. Only the import runs inside (the
    first load, before the ports listen), so nothing of ours is caught; later
    C++ logging honours TF_CPP_MIN_LOG_LEVEL.
    """
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            for line in held.read().decode("utf-8", errors="replace").splitlines():
                severe = line[:1] in ("E", "F") and line[1:5].isdigit()
                if line.strip():
                    logger.log(logging.ERROR if severe else logging.DEBUG, "tensorflow: %s", line)


def import_tensorflow(log_level: str) -> ModuleType:
    """``tensorflow``, its logging kept to errors unless ``--log_level debug``.

    The C++ level is read from the environment when TensorFlow first loads,
    so it is set before the import (a TF_CPP_MIN_LOG_LEVEL set by the user wins).
    """
    debug = log_level == "debug"
    first = "tensorflow" not in sys.modules
    if first:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if debug else "2")
    try:
        with native_log_to_debug(first and not debug):
            import tensorflow as tf
    except ImportError as exc:
        raise ModelLoadError(f"tensorflow is not installed: install tfserver ({exc})") from exc
    level = logging.DEBUG if debug else logging.ERROR
    logging.getLogger("tensorflow").setLevel(level)
    import absl.logging

    absl.logging.set_verbosity(absl.logging.DEBUG if debug else absl.logging.ERROR)
    return tf


def parse_labels(text: str) -> dict[str, str]:
    """``stable=1,canary=2`` as {"stable": "1", "canary": "2"}; ModelLoadError when malformed."""
    labels: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        label, sep, version = item.partition("=")
        label, version = label.strip(), version.strip()
        if not sep or not label or not version.isdigit():
            raise ModelLoadError(
                f"--version_labels {text!r}: expected label=version pairs such as stable=1,canary=2"
            )
        labels[label] = str(int(version))
    return labels


def _spec(alias: str, info: Any, tf: ModuleType) -> TensorSpec:
    """A SignatureDef's TensorInfo as a TensorSpec; ValueError for what cannot be served."""
    if info.WhichOneof("encoding") != "name":
        raise ValueError(f"'{alias}' is a sparse or composite tensor")
    dtype = tf.as_dtype(info.dtype)
    try:
        datatype = datatype_of(np.dtype(dtype.as_numpy_dtype))
    except TypeError:
        raise ValueError(f"'{alias}' is {dtype.name}, which has no protocol datatype") from None
    shape = info.tensor_shape
    dims = () if shape.unknown_rank else tuple(-1 if d.size < 0 else d.size for d in shape.dim)
    return TensorSpec(alias, datatype, dims)


def session_callable(session: Any, feeds: list[str], fetches: list[str]) -> Callable[..., Any]:
    """A callable running ``fetches`` from ``feeds`` (graph tensor names) in ``session``.

    ``Session._make_callable_from_options`` is the session's own wrapper of
    the C API's callables (Keras 2's backend used it); a TensorFlow without
    it gets the public ``make_callable``, slower but the same answers. The
    arrays passed must have the placeholders' dtypes (TensorModel's checks
    convert them).
    """
    make = getattr(session, "_make_callable_from_options", None)
    if make is None:
        return session.make_callable(fetches, feeds)
    from tensorflow.core.protobuf import config_pb2

    return make(config_pb2.CallableOptions(feed=feeds, fetch=fetches))


class Signature(TensorModel):
    """One signature of a loaded SavedModel, run with ``Session.run``."""

    def __init__(self, parent: TFModel, name: str, signature_def: Any, tf: ModuleType) -> None:
        super().__init__(parent.name, parent.model_dir, parent.version, parent.settings)
        self.signature_name = name
        self.session = parent.session
        self.method_name = signature_def.method_name
        self.signature_def = signature_def.SerializeToString()
        inputs = sorted(signature_def.inputs.items())
        outputs = sorted(signature_def.outputs.items())
        self.declare(
            [_spec(alias, info, tf) for alias, info in inputs],
            [_spec(alias, info, tf) for alias, info in outputs],
        )
        self._feeds = [info.name for _, info in inputs]
        self._fetches = {alias: info.name for alias, info in outputs}
        self._callables: dict[tuple[str, ...], Callable[..., Any]] = {}
        self._lock = threading.Lock()
        self.input_errors = parent.input_errors

    def load(self) -> None:
        """Loaded with its SavedModel (TFModel.load)."""

    def _callable(self, names: tuple[str, ...]) -> Callable[..., Any]:
        found = self._callables.get(names)
        if found is None:
            with self._lock:
                found = self._callables.get(names)
                if found is None:
                    found = session_callable(
                        self.session, self._feeds, [self._fetches[n] for n in names]
                    )
                    self._callables[names] = found
        return found

    def run(self, feeds: Feeds, names: Sequence[str]) -> Sequence[Any]:
        args = [feeds[spec.name] for spec in self.input_specs]
        return list(self._callable(tuple(names))(*args))


class TFModel(TensorModel):
    """Serves one SavedModel (one version of it): its session and every signature."""

    extensions = EXTENSIONS
    platform = "tensorflow_savedmodel"
    server_name = "tfserver"
    settings_class = TFSettings
    settings: TFSettings
    dialect = "tfserving"
    versioned = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.session: Any = None
        self.device = "cpu"
        self.tf_version = ""
        self._labels: dict[str, str] = {}

    def load(self) -> None:
        labels = parse_labels(self.settings.version_labels)
        path = self.model_file()
        tf = import_tensorflow(self.settings.log_level)
        self.tf_version = tf.__version__
        self.device = _device(tf, self.settings.device, path)
        meta_graph = self._open(tf, path)
        self.input_errors = (*Model.input_errors, tf.errors.InvalidArgumentError)
        for name, signature_def in sorted(meta_graph.signature_def.items()):
            if name.startswith("__"):
                continue  # __saved_model_init_op: run at load, not an entry point
            try:
                self.signatures[name] = Signature(self, name, signature_def, tf)
            except ValueError as exc:
                logger.warning("model %s: signature %s is not served: %s", self.name, name, exc)
        if not self.signatures:
            found = ", ".join(sorted(meta_graph.signature_def)) or "none"
            raise ModelLoadError(f"{path}: no signature can be served (signatures: {found})")
        if DEFAULT_SIGNATURE not in self.signatures:
            self.default_signature = next(iter(self.signatures))
            logger.info(
                "model %s has no %s signature; requests that name none get %s",
                self.name,
                DEFAULT_SIGNATURE,
                self.default_signature,
            )
        default = self.signatures[self.default_signature]
        self.declare(default.input_specs, default.output_specs)
        self._labels = labels
        logger.info(
            "model %s version %s: %s on tensorflow %s (%s), signatures: %s",
            self.name,
            self.version,
            path.parent.name,
            tf.__version__,
            self.device,
            ", ".join(self.signatures),
        )

    def _open(self, tf: ModuleType, path: Path) -> Any:
        """The session with the SavedModel's MetaGraph loaded; its MetaGraphDef."""
        threads = self.settings.nthread
        config = tf.compat.v1.ConfigProto(
            intra_op_parallelism_threads=threads,
            inter_op_parallelism_threads=threads,
            allow_soft_placement=True,
        )
        if self.device == "cpu":
            config.device_count["GPU"] = 0
        tags = [t.strip() for t in self.settings.saved_model_tags.split(",") if t.strip()]
        graph = tf.Graph()
        session = tf.compat.v1.Session(graph=graph, config=config)
        try:
            with graph.as_default():
                meta_graph = tf.compat.v1.saved_model.loader.load(session, tags, str(path.parent))
        except Exception as exc:
            session.close()
            raise ModelLoadError(f"Cannot load {path}: {type(exc).__name__}: {exc}") from exc
        self.session = session
        if self.device == "cuda" and not any(
            d.device_type == "GPU" for d in session.list_devices()
        ):
            session.close()
            raise ModelLoadError(
                f"Cannot serve {path.name} with --device cuda: the TensorFlow session has no "
                "GPU device (its log above says why)"
            )
        return meta_graph

    def run(self, feeds: Feeds, names: Sequence[str]) -> Sequence[Any]:
        return self.signatures[self.default_signature].run(feeds, names)

    def version_labels(self) -> dict[str, str]:
        return self._labels

    def release(self) -> None:
        session, self.session = self.session, None
        self.signatures.clear()
        if session is not None:
            session.close()

    def metadata_parameters(self) -> dict[str, Any]:
        return {
            "signatures": {name: sig.method_name for name, sig in self.signatures.items()},
            "signature_name": self.default_signature,
            "device": self.device,
            "tensorflow": self.tf_version,
        }


def _device(tf: ModuleType, requested: str, path: Path) -> str:
    """``cpu`` or ``cuda``; ``--device cuda`` without a usable GPU is refused, never downgraded."""
    if requested == "cpu":
        return "cpu"
    if tf.config.list_physical_devices("GPU"):
        return "cuda"
    if requested == "cuda":
        why = (
            "is built without CUDA (tensorflow-cpu)"
            if not tf.test.is_built_with_cuda()
            else "sees no GPU"
        )
        raise ModelLoadError(
            f"Cannot serve {path.name} with --device cuda: this TensorFlow {tf.__version__} "
            f"{why}; install tensorflow (the CUDA build) on a machine with an NVIDIA GPU, or use "
            "--device cpu or auto"
        )
    return "cpu"

"""The runtime interface: what a runtime (or a user's custom model) implements.

A model loads itself, predicts on numpy or pandas, declares its outputs and
describes itself. Everything around a request (decoding, output selection,
batching, where predict runs, metrics, tracing, packing the answer) is the
data plane's; a runtime author never needs to read it.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ..errors import InferenceError
from ..settings import Settings
from ..types import InferRequest
from .explanations import CONTRIBUTIONS, Contributions, Explainer, explainer
from .inputs import ModelInput, default_inputs
from .outputs import Outputs

logger = logging.getLogger(__name__)


class Model(abc.ABC):
    """Base class of every served model.

    In ``load``, read the model from ``model_dir`` and declare its outputs
    in ``self.outputs``; with none declared it has one, ``predict``, the
    result of ``predict``. KServe-style models override ``preprocess`` (per
    request) and ``postprocess`` (per predict call) around ``predict``.
    """

    #: File suffixes this runtime loads (".onnx"), or whole file names for a format
    #: whose file has no suffix (MLflow's "MLmodel"), used by model discovery.
    extensions: ClassVar[tuple[str, ...]] = ()
    #: Reported as ``platform`` in model metadata.
    platform: ClassVar[str] = ""
    #: The program name in ``--help`` and the server metadata's ``name``.
    server_name: ClassVar[str] = "modelserver"
    #: The flags this runtime takes: ``Settings`` or a subclass adding its own.
    settings_class: ClassVar[type[Settings]] = Settings
    #: REST protocols served beside v1 and v2: "mlflow" adds MLflow's scoring
    #: server (POST /invocations, GET /ping, GET /health; ``modelserver.codecs.mlflow``),
    #: "openai" OpenAI's API under /openai/v1 and /v1 (``modelserver.codecs.openai``;
    #: completions and chats for a ``TextGenerator``, embeddings for a model with the
    #: ``embedding`` and ``token_count`` outputs).
    protocols: ClassVar[tuple[str, ...]] = ()
    #: Exceptions from the model's code that mean the input was wrong (answered 400).
    input_errors: tuple[type[BaseException], ...] = (ValueError, TypeError, KeyError, IndexError)
    #: Whether concurrent requests may share one predict call (rows stacked);
    #: the data plane batches only when this holds and ``--max_batch_size`` > 0
    #: (the default). A model whose answer for a row depends on the other rows
    #: of the call must set it False.
    batchable: bool = True
    #: The text a BYTES input of a warm-up request built from metadata holds:
    #: one the model takes (a fill-mask model needs its mask token in it).
    warmup_text: str = "warm-up"
    #: Whether the model scores missing feature values (NaN), as tree boosters
    #: do: then table rows that lack a column reach it as NaN, as KServe hands
    #: them over; otherwise such a request is a 400 naming the column.
    missing_values: bool = False
    #: Which flavour of the v1 paths this runtime answers: ``kserve`` (KServe's
    #: v1 REST) or ``tfserving`` (TensorFlow Serving's REST API, whose paths v1
    #: was derived from, and its gRPC PredictionService and ModelService).
    dialect: ClassVar[str] = "kserve"
    #: Whether a model directory may hold TF Serving's versioned layout: numeric
    #: sub-folders (``<dir>/<version>/<model file>``), each served as a version,
    #: the highest by default.
    versioned: ClassVar[bool] = False

    def __init__(
        self,
        name: str,
        model_dir: str | Path | None = None,
        version: str = "1",
        settings: Settings | None = None,
    ) -> None:
        self.name = name
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.version = version
        self.settings = settings if settings is not None else self.settings_class()
        #: The outputs this model offers; ``load`` declares them.
        self.outputs = Outputs()
        #: Its per-feature contributions, when ``load`` declared them (``explains``).
        self.explainer: Explainer | None = None
        #: Why this model does not explain, when its runtime explains others (the
        #: 501 of ``:explain`` and its metadata say it).
        self.explain_unsupported = ""

    @abc.abstractmethod
    def load(self) -> None:
        """Find and load the model from ``model_dir``; raise to report failure."""

    @abc.abstractmethod
    def predict(self, inputs: ModelInput) -> Any:
        """Numpy (or pandas) in, numpy (or array-like, or a mapping of outputs) out."""

    def preprocess(self, request: InferRequest) -> ModelInput:
        """Per request, before batching: the request -> predict's input.

        The default gives one tensor as its array and several as a DataFrame
        of named columns (``modelserver.model.inputs``). ``input_errors``
        raised here are answered 400 and fail this request alone.
        """
        return default_inputs(request, self.missing_values)

    def postprocess(self, result: Any) -> Any:
        """Per predict call: predict's result -> the joint outputs (a mapping by name)."""
        return result

    def compute(self, inputs: ModelInput, names: list[str]) -> Mapping[str, Any]:
        """The outputs ``names`` for ``inputs``, in the thread predict runs in.

        Outputs with their own function are called one by one; the others
        come from one ``postprocess(predict(inputs))``. A runtime whose
        framework computes selected outputs in one call (a graph) overrides
        this.
        """
        if self.outputs.dynamic:
            return dict(self.postprocess(self.predict(inputs)))
        results: dict[str, Any] = {}
        joint: Any = None
        for name in names:
            output = self.outputs.get(name)
            if output is not None and output.compute is not None:
                results[name] = output.compute(inputs)
                continue
            if joint is None:
                joint = self.postprocess(self.predict(inputs))
            results[name] = _pick(joint, name, self.name)
        return results

    def for_request(self, request: InferRequest) -> Model:
        """The model that answers ``request``: itself, or one of the entry points it holds.

        A model with several signatures (a SavedModel's) returns the one the
        request selects; each has its own inputs and outputs and is batched
        on its own. ``input_errors`` raised here are answered 400.
        """
        return self

    def version_labels(self) -> Mapping[str, str]:
        """Names for versions (TF Serving's version labels, ``{"stable": "1"}``).

        Requests may name a version by its label instead of its number.
        """
        return {}

    def explains(
        self,
        contributions: Contributions,
        feature_names: Sequence[str],
        *,
        sums_to: str,
        method: str,
        classes: Sequence[Any] = (),
        datatype: str = "FP64",
    ) -> None:
        """Declare that the framework computes this model's per-feature contributions.

        ``contributions(inputs)`` gives ``[N, F + 1]`` (``[N, C, F + 1]`` with
        one block per class of ``classes``), the bias last, each block adding
        up to what ``sums_to`` names. The core serves it as the output
        ``contributions``, on ``:explain`` and in metadata
        (``modelserver.model.explanations``). A model whose own outputs
        already use that name keeps them and does not explain.
        """
        if CONTRIBUTIONS in self.outputs:
            self.explain_unsupported = f"its own output is named '{CONTRIBUTIONS}'"
            logger.warning("model %s does not explain: %s", self.name, self.explain_unsupported)
            return
        self.explainer = explainer(contributions, feature_names, sums_to, method, classes)
        self.outputs.add(
            CONTRIBUTIONS, datatype, self.explainer.shape(), contributions, default=False
        )

    def release(self) -> None:  # noqa: B027 (a hook: most models hold only Python objects)
        """Free what ``load`` took beyond Python objects (a JVM's, a GPU's), once unloaded."""

    def model_file(self) -> Path:
        """The one model file in ``model_dir``: this runtime's suffixes, discovery's rules."""
        from ..errors import ModelLoadError
        from .discovery import find_model_file

        if self.model_dir is None:
            raise ModelLoadError(f"Model '{self.name}' has no model directory")
        return find_model_file(self.model_dir, self.extensions, self.accepts)

    @classmethod
    def accepts(cls, path: Path) -> bool:
        """Whether ``path`` (with one of ``extensions``) is a model; discovery skips others."""
        return True

    def inputs_metadata(self) -> list[dict[str, Any]]:
        """Input tensors for model metadata (``tensor_spec`` entries)."""
        return []

    def metadata_parameters(self) -> dict[str, Any]:
        """Extra model-level facts (feature names, classes) for metadata's ``parameters``."""
        return {}


def _pick(joint: Any, name: str, model: str) -> Any:
    """One output of the joint pass: its entry when a mapping, else the value itself."""
    if not isinstance(joint, Mapping):
        return joint
    if name not in joint:
        raise InferenceError(
            f"Model '{model}' returned outputs {', '.join(map(str, joint))} but not '{name}'; "
            "declare what postprocess returns in self.outputs"
        )
    return joint[name]

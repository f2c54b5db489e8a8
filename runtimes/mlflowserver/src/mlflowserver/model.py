"""MLflow runtime: a model directory as MLflow saves it (``MLmodel``), served through pyfunc.

``mlflow.pyfunc.load_model`` from ``mlflow-skinny`` loads any flavor whose
package is installed (the image has scikit-learn with skops, XGBoost and
LightGBM; a ``PythonModel`` needs only MLflow). Nothing reaches the
network: the directory is local (discovery refuses ``models:/`` and
``runs:/``) and MLflow's telemetry is off before MLflow is imported.

At load the model's recorded environment is compared with this one
(``environment``): each difference is logged once and reported in metadata,
and ``--strict_requirements`` refuses to start on any. A flavor whose
package is missing is a startup error naming the module.

The signature drives the protocol (``signature``): metadata declares its
columns or tensors, requests become the DataFrame or arrays it describes,
and ``predict`` enforces its types exactly as MLflow does. Signature params
come from the request's ``parameters`` (v2, v1) or ``params``
(``/invocations``), each checked against its param spec. A result that is a
DataFrame answers its columns as outputs (``content_type: pd``); an array,
list or Series is the one output (``predict`` unless the signature names
it). MLflow's own scoring protocol (``POST /invocations``, ``GET /ping``)
is served beside v1 and v2 (``Model.protocols``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from modelserver import (
    InferenceError,
    InferRequest,
    InvalidInput,
    Model,
    ModelLoadError,
    Outputs,
    Settings,
    default_inputs,
    setting,
    tabular,
    tensor_spec,
)

from . import environment, signature

logger = logging.getLogger(__name__)

MLMODEL = "MLmodel"
#: Request parameters that belong to the protocols, never to the model's params.
PROTOCOL_PARAMETERS = frozenset(
    {"content_type", "headers", "binary_data_output", "outputs", "output"}
)
#: MLflow error codes that mean the request was wrong (answered 400).
INPUT_ERROR_CODES = frozenset({"INVALID_PARAMETER_VALUE", "BAD_REQUEST"})


def offline() -> None:
    """Before MLflow is imported: its usage telemetry off (it would post to MLflow's servers)."""
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"


@dataclass
class MLflowSettings(Settings):
    """mlflowserver's flags: the shared ones and how strictly to hold the recorded environment."""

    strict_requirements: bool = setting(
        False,
        "refuse to start when the installed packages or Python differ from the model's "
        "requirements.txt / python_env.yaml (otherwise each difference is logged)",
    )


class MLflowModel(Model):
    """Serves one MLflow model directory through ``mlflow.pyfunc``."""

    extensions = (MLMODEL,)
    platform = "mlflow"
    server_name = "mlflowserver"
    settings_class = MLflowSettings
    settings: MLflowSettings
    protocols = ("mlflow",)
    #: Params differ per request, and MLflow models take whole DataFrames.
    batchable = False

    def load(self) -> None:
        directory = self.model_file().parent
        offline()
        self.mismatches = environment.mismatches(directory)
        for mismatch in self.mismatches:
            logger.warning("model %s: environment differs: %s", self.name, mismatch)
        if self.mismatches and self.settings.strict_requirements:
            raise ModelLoadError(
                f"Model '{self.name}' recorded an environment this server does not have "
                f"(--strict_requirements): {'; '.join(map(str, self.mismatches))}"
            )
        self.pyfunc = self._read(directory)
        meta = self.pyfunc.metadata
        self.input_schema = meta.get_input_schema()
        self.output_schema = meta.get_output_schema()
        self.param_schema = meta.get_params_schema()
        self.param_specs = (
            {p.name: p for p in self.param_schema.params} if self.param_schema else {}
        )
        self.flavors = [name for name in meta.flavors if name != "python_function"]
        if self.output_schema is None:
            # No declared outputs: each result names its own (a DataFrame's columns).
            self.outputs = Outputs(dynamic=True)
        else:
            for name, datatype, shape in signature.declared(
                self.output_schema, "predict", "predict"
            ):
                self.outputs.add(name, datatype, shape)
        self.nthread = self._set_threads(self.settings.nthread)

    def _read(self, directory: Path) -> Any:
        import mlflow.pyfunc

        try:
            # MLflow's own requirement warnings are replaced by ours (one line each).
            return mlflow.pyfunc.load_model(str(directory), suppress_warnings=True)
        except ModuleNotFoundError as exc:
            missing = [m.recorded for m in self.mismatches if m.installed is None]
            recorded = f"; the model's requirements name {', '.join(missing)}" if missing else ""
            raise ModelLoadError(
                f"Model '{self.name}' needs the Python module '{exc.name}', which is not "
                f"installed{recorded}. Install the flavor's package in the server's environment "
                "(an image built FROM mlflowserver: README, 'Another flavor')"
            ) from exc
        except Exception as exc:
            raise ModelLoadError(
                f"Cannot load {directory / MLMODEL}: {type(exc).__name__}: {exc}"
            ) from exc

    def _set_threads(self, nthread: int) -> int:
        """``--nthread`` as the framework's own threads (XGBoost nthread, n_jobs); 0 leaves it."""
        if nthread <= 0:
            return 0
        try:
            raw = self.pyfunc.get_raw_model()
        except NotImplementedError:
            return 0
        if hasattr(raw, "set_param"):  # an XGBoost Booster
            raw.set_param({"nthread": nthread})
        elif hasattr(raw, "n_jobs"):  # scikit-learn estimators, LightGBM's and XGBoost's
            raw.n_jobs = nthread
        else:
            return 0
        return nthread

    # -- the request path ---------------------------------------------------

    def preprocess(self, request: InferRequest) -> tuple[Any, dict[str, Any]]:
        params = self._params(request.parameters)
        if self.input_schema is None:
            return default_inputs(request), params
        return signature.model_input(self.name, self.input_schema, request.inputs), params

    def _params(self, parameters: Mapping[str, Any]) -> dict[str, Any]:
        """The request's signature params, each checked by MLflow against its spec."""
        from mlflow.exceptions import MlflowException
        from mlflow.types.schema import ParamSpec

        given = {k: v for k, v in parameters.items() if k not in PROTOCOL_PARAMETERS}
        unknown = [k for k in given if k not in self.param_specs]
        if unknown:
            accepted = ", ".join(map(repr, self.param_specs.values())) or "none"
            raise InvalidInput(
                f"Model '{self.name}' has no param {', '.join(repr(k) for k in unknown)}; "
                f"its signature's params: {accepted}"
            )
        for key, value in given.items():
            try:
                given[key] = ParamSpec.validate_param_spec(value, self.param_specs[key])
            except MlflowException as exc:
                message = f"Model '{self.name}' rejected its params: {exc.message}"
                raise InvalidInput(message) from None
        return given

    def predict(self, inputs: tuple[Any, dict[str, Any]]) -> Any:
        """pyfunc's own predict, with MLflow's schema enforcement; bad input is a 400."""
        from mlflow.exceptions import MlflowException

        data, params = inputs
        try:
            return self.pyfunc.predict(data, params=params or None)
        except MlflowException as exc:
            if exc.error_code not in INPUT_ERROR_CODES:
                raise
            # Schema failures wrap the reason in a dump of the whole input: keep the reason.
            reason = exc.__context__ if "Failed to enforce schema" in exc.message else None
            text = str(reason) if reason is not None else exc.message
            raise InvalidInput(f"Model '{self.name}' rejected the input: {text}") from None

    def compute(self, inputs: tuple[Any, dict[str, Any]], names: list[str]) -> Any:
        return self._outputs_of(self.predict(inputs), names)

    def _outputs_of(self, result: Any, names: list[str]) -> Any:
        """pyfunc's result as outputs: a DataFrame's columns, a mapping's entries, or one array."""
        if hasattr(result, "to_frame") and not tabular.is_frame(result):  # a Series
            result = result.to_frame(name=str(result.name) if result.name is not None else "0")
        if tabular.is_frame(result):
            result = result.rename(columns=str)
            if self.outputs.dynamic:
                return result
            if all(name in result.columns for name in names):
                return result[names]
            if result.shape[1] == 1 and len(self.outputs) == 1:
                return {names[0]: result.iloc[:, 0].to_numpy()}
        elif isinstance(result, Mapping):
            found = {str(k): v for k, v in result.items()}
            if self.outputs.dynamic or all(name in found for name in names):
                return found if self.outputs.dynamic else {name: found[name] for name in names}
        elif self.outputs.dynamic or len(self.outputs) == 1:
            return {names[0] if names else "predict": np.asarray(result)}
        raise InferenceError(
            f"Model '{self.name}' returned {type(result).__name__}, not the outputs its "
            f"signature declares ({', '.join(self.outputs.names)})"
        )

    # -- metadata -------------------------------------------------------------

    def inputs_metadata(self) -> list[dict[str, Any]]:
        if self.input_schema is None:
            return []
        return [
            tensor_spec(*spec) for spec in signature.declared(self.input_schema, "input-0", "input")
        ]

    def metadata_parameters(self) -> dict[str, Any]:
        meta = self.pyfunc.metadata
        params: dict[str, Any] = {
            "flavors": self.flavors,
            "loader_module": self.pyfunc.loader_module,
            "mlflow_version": meta.mlflow_version,
            "model_uuid": meta.model_uuid,
            "signature": _signature(meta.signature),
            "requirement_mismatches": [m.as_dict() for m in self.mismatches],
            "nthread": self.nthread,
        }
        if meta.run_id:
            params["run_id"] = meta.run_id
        return params


def _signature(value: Any) -> dict[str, Any] | None:
    """The signature as MLflow writes it in MLmodel, its JSON strings parsed."""
    if value is None:
        return None
    return {k: json.loads(v) if isinstance(v, str) else v for k, v in value.to_dict().items()}

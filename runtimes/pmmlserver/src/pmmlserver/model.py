"""PMML runtime: a .pmml file scored by pmml4s in a JVM inside the server process.

pypmml 1.5.8 reaches pmml4s through py4j (a separate ``java`` process, a
socket round trip per call) or JPype (the JVM in this process, calls through
JNI). JPype is the faster by far (bench/pmml_gateways.py, one batch call:
0.02 ms against 0.07 ms for one row, 2.3 ms against 44 ms for 1,000 rows), so
the first model to load starts one JVM for the process through pypmml's JPype
gateway, and every model the process serves shares it until the process ends.

A request is scored in one Java call whatever its size: pmml4s's
``Model.predict(String)`` on its split JSON (``{"columns": [...], "data":
[[...], ...]}``), written and read with orjson. (pypmml's ndarray path makes
the same call through pandas, several times slower, and falls back to a call
per row on any error.)

Inputs are the active fields of the mining schema, in its order: rows of a
2-D array (v1 ``instances``, one v2 tensor [N, F]) or one named input per
field (a DataFrame). Outputs are named as KServe's pmmlserver names them (the
fields its JPMML evaluator gives): the target field (``Species``, its
predicted value) and the fields the file's ``<Output>`` declares, exactly;
when the file declares none, the target and what pmml4s derives for it
(``probability`` and, for a classifier, one per class). All of them by
default, each selectable by name; metadata lists the same.

pmml4s never raises on a value it cannot use: it gives the row no result
(``invalidValueTreatment="returnInvalid"``, or a missing value the model
cannot score) or reads a non-numeric string as missing. So text for a
numeric field is refused before scoring, and a row pmml4s leaves empty is a
400 that names the field and value pmml4s's own checks reject.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from modelserver import InferRequest, InvalidInput, Model, ModelLoadError, tabular, tensor_spec

EXTENSIONS = (".pmml",)

#: PMML dataType -> OIP datatype; other types (dates, times) travel as text.
DATATYPES = {
    "double": "FP64",
    "float": "FP64",  # pmml4s reads and writes every number as a JSON double
    "real": "FP64",
    "integer": "INT64",
    "boolean": "BOOL",
    "string": "BYTES",
}

#: JVM flags. -Xrs: the JVM installs no handlers for SIGTERM, SIGINT or SIGHUP,
#: which stay the server's (it drains in-flight requests, then exits).
#: pypmml adds the flags in the JAVA_OPTS environment variable to these.
JVM_OPTIONS = ["-Xrs"]

_NUMERIC = frozenset("biuf")
#: Compared element-wise with an object array: where pmml4s gave no value.
_NONE = np.array(None, dtype=object)


def start_jvm() -> None:
    """Start this process's JVM through pypmml's JPype gateway, once; later calls reuse it."""
    try:
        from pypmml import PMMLContext

        PMMLContext.getOrCreate(gateway="jpype", java_opts=list(JVM_OPTIONS))
    except Exception as exc:  # no Java, a bad JAVA_OPTS: the JVM's own words
        raise ModelLoadError(
            f"Cannot start the JVM for pmml4s: {type(exc).__name__}: {exc}"
        ) from exc
    if PMMLContext.gateway() != "JPype":
        raise ModelLoadError(
            f"pypmml already runs through the {PMMLContext.gateway()} gateway in this process"
        )


def _datatype(pmml_type: str) -> str:
    return DATATYPES.get(pmml_type, "BYTES")


def _option(value: Any) -> str:
    """A scala.Option's value as text, or 'default' for None."""
    return str(value.get()) if value.isDefined() else "default"


def _plain(value: Any) -> Any:
    """A Java value from pmml4s as a JSON-ready Python value."""
    return value if isinstance(value, str | int | float | bool) else str(value)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


@dataclasses.dataclass(frozen=True, slots=True)
class Field:
    """An active field of the mining schema, with pmml4s's own view of its values."""

    name: str
    pmml_type: str
    datatype: str
    #: org.pmml4s.metadata.Field, asked only to explain a rejected row.
    java: Any
    invalid_treatment: str
    missing_treatment: str

    @property
    def numeric(self) -> bool:
        return self.datatype in ("FP64", "INT64")

    def problem(self, value: Any) -> str | None:
        """Why pmml4s gives no result for ``value`` in this field, by its own checks."""
        val = None if _is_missing(value) else self.java.toVal(str(value))
        if val is None or self.java.isMissingValue(val):
            return f"'{self.name}' is missing (missingValueTreatment={self.missing_treatment})"
        if self.java.isValidValue(val):
            return None
        valid = str(self.java.valuesAsString())
        allowed = f" (valid: {valid.replace(',', ', ')})" if valid else ""
        return (
            f"{value!r} is not a valid value of '{self.name}'{allowed}; "
            f"invalidValueTreatment={self.invalid_treatment}"
        )


@dataclasses.dataclass(frozen=True, slots=True)
class OutputField:
    """An output of the model, the OIP datatype it is served as, and pmml4s's column for it."""

    name: str
    datatype: str
    #: The column of pmml4s's answer that holds it (a target's is its predicted value).
    source: str

    def column(self, values: np.ndarray) -> np.ndarray:
        """pmml4s's values (an object column) as the output's numpy array.

        A value pmml4s leaves empty is NaN in a number column (which then is
        FP64 even for integers) and "" in a text column.
        """
        if self.datatype == "BYTES":
            return np.array(
                [v if isinstance(v, str) else "" if v is None else str(v) for v in values.tolist()],
                dtype=object,
            )
        if self.datatype == "FP64" or np.equal(values, _NONE).any():
            return values.astype(np.float64)
        return values.astype(np.int64 if self.datatype == "INT64" else np.bool_)


def _fields(java: Any) -> list[Field]:
    """The active fields of pmml4s's model ``java``, in mining-schema order."""
    schema = java.miningSchema()
    fields = []
    for field in java.inputFields():
        mining = schema.apply(field.name())
        pmml_type = str(field.dataType())
        fields.append(
            Field(
                name=str(field.name()),
                pmml_type=pmml_type,
                datatype=_datatype(pmml_type),
                java=field,
                invalid_treatment=str(mining.invalidValueTreatment()),
                missing_treatment=_option(mining.missingValueTreatment()),
            )
        )
    return fields


def _read(path: Path) -> Any:
    from pypmml import Model as PMML

    try:
        pmml = PMML.fromFile(str(path))
    except Exception as exc:  # pmml4s's parse or semantic error, as a PMMLError or JException
        raise ModelLoadError(f"Cannot read {path}: {type(exc).__name__}: {exc}") from exc
    if not pmml._java_model.isScorable():
        raise ModelLoadError(f"{path} holds no model pmml4s can score (found {pmml.modelElement})")
    return pmml


def _outputs(pmml: Any) -> list[OutputField]:
    """The model's outputs: its targets, then the declared outputs (else pmml4s's extras).

    pmml4s answers only the declared output fields; asked to supplement them
    it adds the predicted value (which is what a target is answered with)
    and, when the file declares no outputs, the probabilities it derives.
    """
    java = pmml._java_model
    output = java.output()  # the file's <Output> element, a scala.Option
    declared = [str(f.name()) for f in output.get().outputFields()] if output.isDefined() else []
    pmml.setSupplementOutput(True)
    predicted: dict[str, str] = {}
    for field in java.outputFields():
        if str(field.feature()) != "predictedValue":
            continue
        target = field.targetField()
        key = str(target.get()) if target is not None and target.isDefined() else ""
        predicted.setdefault(key, str(field.name()))
    outputs = []
    for target in java.targetFields():
        name = str(target.name())
        source = predicted.get(name) or predicted.get("")
        if source is not None:
            outputs.append(OutputField(name, _datatype(str(target.dataType())), source))
    sources = {o.source for o in outputs}
    for field in java.outputFields():
        name = str(field.name())
        if (declared and name in declared) or (not declared and name not in sources):
            outputs.append(OutputField(name, _datatype(str(field.dataType())), name))
    return outputs


@dataclasses.dataclass(frozen=True, slots=True)
class Term:
    """One predictor of a regression table: a field's coefficient, power or category."""

    column: int
    coefficient: float
    exponent: int = 1
    #: A categorical predictor's category (the term is the coefficient when it matches).
    category: str | None = None

    def value(self, matrix: np.ndarray) -> np.ndarray:
        column = matrix[:, self.column]
        if self.category is not None:
            matches = [str(_plain(v)) == self.category for v in column.tolist()]
            return self.coefficient * np.asarray(matches, dtype=np.float64)
        return self.coefficient * np.power(column.astype(np.float64), self.exponent)


@dataclasses.dataclass(frozen=True, slots=True)
class RegressionTables:
    """The regression tables of a RegressionModel, as pmml4s parsed them: one per class."""

    width: int
    intercepts: tuple[float, ...]
    terms: tuple[tuple[Term, ...], ...]
    classes: tuple[str, ...]
    sums_to: str

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        """[N, F + 1], or [N, C, F + 1] for one table per class: the intercept last."""
        out = np.zeros((len(matrix), len(self.terms), self.width + 1))
        for k, (intercept, terms) in enumerate(zip(self.intercepts, self.terms, strict=True)):
            for term in terms:
                out[:, k, term.column] += term.value(matrix)
            out[:, k, -1] = intercept
        return out if self.classes else out[:, 0, :]


def regression_tables(java: Any, fields: list[str]) -> RegressionTables | str:
    """pmml4s's regression tables of ``java``, or why its contributions cannot be had.

    Only a RegressionModel is a sum of per-field terms; its table may use only
    the active fields themselves (a derived field, an interaction term or
    target rescaling would make the sum another quantity than the fields').
    """
    kind = str(java.getClass().getSimpleName())
    if kind != "RegressionModel":
        return (
            f"pmml4s exposes no per-field contributions of a {kind}; only a RegressionModel "
            "(a sum of one term per field) explains"
        )
    if java.targets().isDefined():
        return "its <Targets> rescale the regression value, so the terms do not add up to it"
    columns = {name: i for i, name in enumerate(fields)}
    intercepts: list[float] = []
    tables: list[tuple[Term, ...]] = []
    classes: list[str] = []
    for table in java.regressionTables():
        terms: list[Term] = []
        for predictor in table.predictors():
            kind = str(predictor.getClass().getSimpleName())
            if kind not in ("NumericPredictor", "CategoricalPredictor"):
                return f"its regression table has a {kind}, which belongs to several fields"
            name = str(predictor.field().name())
            if name not in columns:
                return f"its regression table uses '{name}', a field derived from the inputs"
            if kind == "NumericPredictor":
                terms.append(
                    Term(columns[name], float(predictor.coefficient()), int(predictor.exponent()))
                )
            else:
                category = str(_plain(predictor.value().toVal()))
                terms.append(Term(columns[name], float(predictor.coefficient()), 1, category))
        intercepts.append(float(table.intercept()))
        tables.append(tuple(terms))
        category = table.targetCategory()
        if category.isDefined():
            classes.append(str(category.get()))
    normalization = str(java.normalizationMethod())
    if normalization == "none" and len(tables) == 1:
        sums_to = "the predicted value"
    else:
        sums_to = f"each RegressionTable's value, before normalizationMethod={normalization}"
    return RegressionTables(
        len(fields),
        tuple(intercepts),
        tuple(tables),
        tuple(classes) if len(tables) > 1 else (),
        sums_to,
    )


def _pmml4s_input_errors() -> tuple[type[BaseException], ...]:
    """Java exceptions pmml4s raises on data it cannot use (JPype makes them Python types)."""
    import jpype

    return (
        jpype.JClass("org.pmml4s.PmmlException"),
        jpype.JClass("java.lang.IllegalArgumentException"),
    )


class PMMLModel(Model):
    """Serves one PMML model through pmml4s, in the process's shared JVM."""

    extensions = EXTENSIONS
    platform = "pmml"
    server_name = "pmmlserver"

    def load(self) -> None:
        path = self.model_file()
        self.path = path
        start_jvm()
        self.pmml = _read(path)
        # pmml4s's org.pmml4s.model.Model itself: predict(String) without pypmml's wrapping.
        self.scorer = self.pmml._java_model
        self.fields = _fields(self.scorer)
        self.input_names = [f.name for f in self.fields]
        self.output_fields = {field.name: field for field in _outputs(self.pmml)}
        # Every output field is selectable by name and returned by default, all
        # from one pmml4s call per predict (``compute``).
        for field in self.output_fields.values():
            self.outputs.add(field.name, field.datatype, [-1])
        self.input_errors = (*Model.input_errors, *_pmml4s_input_errors())
        self.parameters = self._describe()
        found = regression_tables(self.scorer, self.input_names)
        if isinstance(found, str):
            self.explain_unsupported = found
        else:
            self.tables = found
            self.explains(
                self._contributions,
                self.input_names,
                sums_to=found.sums_to,
                method="the RegressionTable pmml4s parsed: coefficient * value (value^exponent; "
                "1 for a matching category), bias the intercept",
                classes=found.classes,
            )

    def release(self) -> None:
        # The JVM stays: JPype cannot start a second one in this process.
        self.pmml = self.scorer = None

    # -- the request path --------------------------------------------------

    def preprocess(self, request: InferRequest) -> Any:
        tensors = request.inputs
        if len(tensors) == 1:
            tensor = tensors[0]
            if len(self.fields) == 1 and tensor.data.ndim == 1:
                # The one field's column, shaped [N] as the metadata gives it: N rows.
                column = tensor.data.reshape(-1, 1)
                tensor = dataclasses.replace(tensor, data=column, shape=column.shape)
                request = dataclasses.replace(request, inputs=[tensor])
            elif len(self.fields) > 1 and tensor.name in self.input_names:
                raise InvalidInput(
                    f"Model '{self.name}' needs the fields {', '.join(self.input_names)}; the "
                    f"request has only '{tensor.name}'. Send one input per field, or one "
                    f"[N, {len(self.fields)}] tensor of rows"
                )
        return super().preprocess(request)

    def predict(self, inputs: Any) -> Any:
        """Every output field for ``inputs``, as a mapping of output name -> array."""
        return self.compute(inputs, list(self.output_fields))

    def compute(self, inputs: Any, names: list[str]) -> dict[str, Any]:
        """The output fields from one pmml4s call; ``contributions`` by its own function."""
        fields = [name for name in names if name in self.output_fields]
        results = dict(zip(fields, self._score(inputs, fields), strict=True)) if fields else {}
        for name in names:
            if name not in results:
                results[name] = self._contributions(inputs)
        return {name: results[name] for name in names}

    def _score(self, inputs: Any, names: list[str]) -> list[np.ndarray]:
        """The outputs ``names`` for every row, in one pmml4s call."""
        matrix = self._matrix(inputs)
        if not len(matrix):
            return [self.output_fields[name].column(np.empty(0, dtype=object)) for name in names]
        data = matrix.tolist() if matrix.dtype == object else np.ascontiguousarray(matrix)
        body = orjson.dumps(
            {"columns": self.input_names, "data": data}, option=orjson.OPT_SERIALIZE_NUMPY
        )
        reply = orjson.loads(self.scorer.predict(body.decode()))
        table = np.array(reply["data"], dtype=object).reshape(len(matrix), -1)
        self._check_rejected(table, matrix)
        position = {name: i for i, name in enumerate(reply["columns"])}
        fields = [self.output_fields[name] for name in names]
        return [field.column(table[:, position[field.source]]) for field in fields]

    def _contributions(self, inputs: Any) -> np.ndarray:
        """Per field (per class for a classifier) and the intercept, from the regression table.

        The rows are scored first, so a row pmml4s would reject is the same 400 here.
        """
        self._score(inputs, list(self.output_fields)[:1])
        return self.tables.contributions(self._matrix(inputs))

    def _matrix(self, inputs: Any) -> np.ndarray:
        """The rows as one 2-D array whose columns are the active fields, in schema order."""
        width = len(self.fields)
        if tabular.is_frame(inputs):
            frame = tabular.align_columns(self.name, inputs, self.input_names)
            tabular.check_feature_count(self.name, frame, width)
            return self._stack([frame.iloc[:, i].to_numpy() for i in range(width)])
        array = tabular.check_feature_count(self.name, np.asarray(inputs), width)
        if array.dtype.kind in _NUMERIC:
            return array
        return self._stack(list(array.T))

    def _stack(self, columns: list[np.ndarray]) -> np.ndarray:
        columns = [self._typed(f, c) for f, c in zip(self.fields, columns, strict=True)]
        if all(c.dtype.kind in _NUMERIC for c in columns):
            return np.column_stack(columns)
        matrix = np.empty((len(columns[0]), len(columns)), dtype=object)
        for j, column in enumerate(columns):
            matrix[:, j] = column
        return matrix

    def _typed(self, field: Field, column: np.ndarray) -> np.ndarray:
        """A numeric field's column as numbers: pmml4s would read text as a missing value."""
        if column.dtype.kind in _NUMERIC or not field.numeric:
            return column
        try:
            return column.astype(np.float64)
        except (ValueError, TypeError) as exc:
            raise InvalidInput(
                f"Model '{self.name}': field '{field.name}' is {field.pmml_type}: {exc}"
            ) from None

    def _check_rejected(self, table: np.ndarray, matrix: np.ndarray) -> None:
        """400 when pmml4s gave a row no result at all, naming what it rejected."""
        if not table.shape[1]:
            return
        empty = np.flatnonzero(np.equal(table, _NONE).all(axis=1))
        if not len(empty):
            return
        row = int(empty[0])
        values = matrix[row].tolist()
        reasons = [
            reason
            for field, value in zip(self.fields, values, strict=True)
            if (reason := field.problem(value)) is not None
        ]
        if not reasons:
            reasons = [
                f"pmml4s returned no result for {dict(zip(self.input_names, values, strict=True))}"
            ]
        others = f" ({len(empty)} rows rejected)" if len(empty) > 1 else ""
        raise InvalidInput(f"Model '{self.name}' rejected row {row}{others}: {'; '.join(reasons)}")

    # -- metadata ------------------------------------------------------------

    def _describe(self) -> dict[str, Any]:
        pmml = self.pmml
        params: dict[str, Any] = {
            "model_element": str(pmml.modelElement),
            "function_name": str(pmml.functionName),
            "input_fields": self.input_names,
            "targets": [str(t) for t in pmml.targetNames],
            "gateway": "jpype",
        }
        if pmml.algorithmName:
            params["algorithm"] = str(pmml.algorithmName)
        if params["function_name"] == "classification":
            params["classes"] = [_plain(c) for c in pmml.classes]
        return params

    def inputs_metadata(self) -> list[dict[str, Any]]:
        return [tensor_spec(f.name, f.datatype, [-1]) for f in self.fields]

    def metadata_parameters(self) -> dict[str, Any]:
        return self.parameters

"""What the shared conformance suite needs to know about one runtime.

Each runtime's file in ``tests/runtimes/cases/`` defines ``CASE``; the suite in
``test_conformance.py`` runs the same protocol, error and startup checks on
every one of them, so no runtime's test file repeats them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: The numpy dtype each case datatype's rows are made of.
NUMPY = {
    "FP32": np.float32,
    "FP64": np.float64,
    "INT64": np.int64,
    "INT32": np.int32,
    "BYTES": np.object_,
}


@dataclass(frozen=True)
class RuntimeCase:
    #: ``python -m <module>``
    module: str
    #: framework key of examples/sample_models.py (``write(framework, out)``)
    framework: str
    #: sample name (a key of what that framework's ``write`` returns)
    sample: str
    #: suffix of the model file, for the corrupt-file and two-candidates checks
    suffix: str
    #: the single input's name as the model declares it
    input_name: str
    #: its OIP datatype (BYTES: a text model, whose rows are lists of one text)
    datatype: str
    #: two good rows
    rows: list[list[float]] | list[list[str]]
    #: a row with the wrong number of features (of a text model: of texts)
    bad_row: list[float] | list[str]
    #: every input the metadata declares, when several (default: [input_name])
    input_names: tuple[str, ...] = ()
    #: extra flags the runtime needs
    flags: list[str] = field(default_factory=list)
    #: extra environment for the server process (e.g. PYTHONPATH for a custom model)
    env: dict[str, str] = field(default_factory=dict)
    #: the reason fragment (lower case) expected in the bad-width error
    width_error: str = "feature"
    #: the model file has one fixed name (MLflow's ``MLmodel``), so no directory
    #: can hold two candidates (``suffix`` is then that name)
    fixed_name: bool = False
    #: which of a runtime's cases this is, when it has several (one per task)
    variant: str = ""

    def array(self) -> np.ndarray:
        """The good rows as the array a client sends (texts as an object array)."""
        return np.asarray(self.rows, dtype=NUMPY[self.datatype])

    def raw(self) -> bytes:
        """The good rows as raw tensor bytes (gRPC's raw contents, REST's binary
        extension): BYTES elements each after its 4-byte little-endian length."""
        rows = self.array()
        if self.datatype != "BYTES":
            return rows.tobytes()
        items = [str(v).encode() for v in rows.reshape(-1)]
        return b"".join(len(item).to_bytes(4, "little") + item for item in items)

    @property
    def id(self) -> str:
        if self.module == "modelserver":
            return f"{self.module}-{self.framework}"
        return f"{self.module}-{self.variant}" if self.variant else self.module


def huggingface(
    sample: str, variant: str, rows: list[list[str]], bad_row: list[str]
) -> RuntimeCase:
    """A huggingfaceserver case: one text per row, ``config.json`` its model file."""
    return RuntimeCase(
        module="huggingfaceserver",
        framework="huggingface",
        sample=sample,
        suffix="config.json",
        input_name="text",
        datatype="BYTES",
        rows=rows,
        bad_row=bad_row,
        flags=["--device=cpu", "--nthread=1"],
        width_error="one text per row",
        fixed_name=True,
        variant=variant,
    )


CASES_DIR = Path(__file__).resolve().parent / "cases"


def one_per_runtime(cases: list[RuntimeCase]) -> list[RuntimeCase]:
    """The first case of each runtime: suites that test the server, not the task."""
    return list({case.module + case.framework: case for case in reversed(cases)}.values())[::-1]


def all_cases() -> list[RuntimeCase]:
    """Every runtime's ``CASE`` in ``cases/``: a runtime that adds its file is in every suite."""
    return [
        importlib.import_module(f"cases.{path.stem}").CASE
        for path in sorted(CASES_DIR.glob("*.py"))
        if path.stem != "__init__"
    ]

"""What the shared conformance suite needs to know about one runtime.

Each runtime's file in ``tests/runtimes/cases/`` defines ``CASE``; the suite in
``test_conformance.py`` runs the same protocol, error and startup checks on
every one of them, so no runtime's test file repeats them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path


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
    #: its OIP datatype
    datatype: str
    #: two good rows
    rows: list[list[float]]
    #: a row with the wrong number of features
    bad_row: list[float]
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

    @property
    def id(self) -> str:
        return f"{self.module}-{self.framework}" if self.module == "modelserver" else self.module


CASES_DIR = Path(__file__).resolve().parent / "cases"


def all_cases() -> list[RuntimeCase]:
    """Every runtime's ``CASE`` in ``cases/``: a runtime that adds its file is in every suite."""
    return [
        importlib.import_module(f"cases.{path.stem}").CASE
        for path in sorted(CASES_DIR.glob("*.py"))
        if path.stem != "__init__"
    ]

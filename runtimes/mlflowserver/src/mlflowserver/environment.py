"""The environment a model recorded against the one serving it.

MLflow writes the packages a model was saved with to ``requirements.txt``
and its Python to ``python_env.yaml``. A model served with other versions
usually works and sometimes silently predicts differently (a scikit-learn
minor release changing a default), so each difference is said once, plainly:
which package, what the model recorded, what is installed. A package the
model needs and this server lacks is the same finding with nothing
installed. Each requirement is judged by MLflow's own check (the one behind
its load-time warning), so ``mlflow==3.18.0`` is satisfied by
``mlflow-skinny`` 3.18.0 and ``xgboost`` by ``xgboost-cpu``.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PYTHON_ENV = "python_env.yaml"


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One difference between the model's recorded environment and this one."""

    package: str
    #: The requirement as the model recorded it (``scikit-learn==1.5.2``).
    recorded: str
    #: The installed version; None when the package is not installed.
    installed: str | None

    def __str__(self) -> str:
        installed = self.installed or "not installed"
        return f"{self.package}: the model recorded {self.recorded}, installed {installed}"

    def as_dict(self) -> dict[str, Any]:
        return {"package": self.package, "recorded": self.recorded, "installed": self.installed}


def mismatches(model_dir: Path) -> list[Mismatch]:
    """Every recorded requirement this environment does not satisfy, Python first."""
    from mlflow.pyfunc import _get_pip_requirements_from_model_path
    from mlflow.utils.requirements_utils import _check_requirement_satisfied

    found = [m for m in [_python(model_dir)] if m is not None]
    for requirement in _get_pip_requirements_from_model_path(str(model_dir)):
        info = _check_requirement_satisfied(requirement)
        if info is not None:
            found.append(Mismatch(info.package_name, requirement, info.installed_version))
    return found


def _python(model_dir: Path) -> Mismatch | None:
    """Python itself, when the recorded minor version differs (patch releases are compatible)."""
    from mlflow.utils.environment import _PythonEnv

    path = model_dir / PYTHON_ENV
    if not path.is_file():
        return None
    recorded = str(_PythonEnv.from_yaml(str(path)).python or "")
    installed = platform.python_version()
    if not recorded or recorded.split(".")[:2] == installed.split(".")[:2]:
        return None
    return Mismatch("python", recorded, installed)

"""Where everything lives, relative to the repository root.

Generated state (virtual environments, the model file, request bodies, run
directories) stays under bench/.envs/ (gitignored) so a clean checkout plus
``make bench`` rebuilds it; results go to bench/results/ (gitignored too).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    repo: Path

    @property
    def bench(self) -> Path:
        return self.repo / "bench"

    @property
    def envs(self) -> Path:
        return self.bench / ".envs"

    @property
    def data(self) -> Path:
        return self.envs / "data"

    @property
    def model_dir(self) -> Path:
        return self.data / "model"

    @property
    def mlflow_model_dir(self) -> Path:
        """The same iris model as MLflow saves it (the MLflow comparison)."""
        return self.data / "mlflow-model"

    @property
    def payloads(self) -> Path:
        return self.data / "payloads"

    @property
    def runs(self) -> Path:
        """Scratch space for server configuration files (MLServer's settings)."""
        return self.envs / "run"

    @property
    def results(self) -> Path:
        return self.bench / "results"

    @property
    def requirements(self) -> Path:
        return self.bench / "requirements"

    @property
    def servers(self) -> Path:
        return self.bench / "servers"

    @property
    def tools(self) -> Path:
        return self.bench / "tools"

    @property
    def wrk_script(self) -> Path:
        return self.bench / "wrk" / "post.lua"

    @property
    def ours_python(self) -> Path:
        return self.repo / ".venv" / "bin" / "python"

    def venv(self, name: str) -> Path:
        return self.envs / name

    def venv_bin(self, name: str, program: str = "python") -> Path:
        return self.venv(name) / "bin" / program

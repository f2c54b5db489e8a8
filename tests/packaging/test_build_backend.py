"""The runtimes' build backend (shared/build-backend): the core named by where it is.

A real ``pip install ./runtimes/<runtime>`` in a fresh venv takes a minute
and the network's index, so pip itself is not run here; what pip reads is:
the prepared metadata, the wheel's METADATA and RECORD, and each runtime's
pyproject pointing at this backend.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import tomllib
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
BACKEND_DIR = ROOT / "shared" / "build-backend"
RUNTIMES = sorted(p for p in (ROOT / "runtimes").iterdir() if (p / "pyproject.toml").is_file())
METADATA = b"""Metadata-Version: 2.4
Name: sklearnserver
Version: 0.1.0
Requires-Dist: modelserver
Requires-Dist: scikit-learn==1.9.1

Requires-Dist: modelserver (in the description: left alone)
"""


@pytest.fixture(scope="module")
def backend() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "runtime_backend", BACKEND_DIR / "runtime_backend.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("runtime", RUNTIMES, ids=lambda p: p.name)
def test_every_runtime_builds_with_the_backend(runtime: Path) -> None:
    config = tomllib.loads((runtime / "pyproject.toml").read_text())
    assert config["build-system"]["build-backend"] == "runtime_backend"
    assert config["build-system"]["backend-path"] == ["build-backend"]
    link = runtime / "build-backend"
    assert link.is_symlink() and link.resolve() == BACKEND_DIR
    assert "graft build-backend" in (runtime / "MANIFEST.in").read_text()
    assert "modelserver" in config["project"]["dependencies"]


def test_core_requirement_in_a_checkout(backend: ModuleType) -> None:
    core = (ROOT / "shared" / "core").resolve()
    assert backend.core_requirement(ROOT / "runtimes" / "sklearnserver") == (
        f"modelserver @ {core.as_uri()}"
    )


def test_core_requirement_elsewhere(backend: ModuleType, tmp_path: Path) -> None:
    runtime = tmp_path / "a" / "sklearnserver"
    runtime.mkdir(parents=True)
    assert backend.core_requirement(runtime) is None


def test_patch_metadata_names_the_core_in_the_headers_only(backend: ModuleType) -> None:
    patched = backend.patch_metadata(METADATA, "modelserver @ file:///x/shared/core")
    headers, _, body = patched.partition(b"\n\n")
    assert b"Requires-Dist: modelserver @ file:///x/shared/core\n" in headers
    assert b"Requires-Dist: modelserver\n" not in headers
    assert b"Requires-Dist: scikit-learn==1.9.1" in headers
    assert body == METADATA.partition(b"\n\n")[2]


def test_patch_wheel_keeps_the_record_true(backend: ModuleType, tmp_path: Path) -> None:
    wheel = tmp_path / "sklearnserver-0.1.0-py3-none-any.whl"
    info = "sklearnserver-0.1.0.dist-info"
    files = {"sklearnserver/__init__.py": b"", f"{info}/METADATA": METADATA}
    record = "".join(f"{name},{_hash(data)}\n" for name, data in files.items())
    with zipfile.ZipFile(wheel, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr(f"{info}/RECORD", record + f"{info}/RECORD,,\n")
    backend.patch_wheel(wheel, "modelserver @ file:///x/shared/core")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        assert names == [*files, f"{info}/RECORD"]
        metadata = z.read(f"{info}/METADATA")
        assert b"Requires-Dist: modelserver @ file:///x/shared/core" in metadata
        for line in z.read(f"{info}/RECORD").decode().splitlines():
            name, digest, size = line.split(",")
            if digest:
                assert f"{digest},{size}" == _hash(z.read(name)), name


def _hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest},{len(data)}"

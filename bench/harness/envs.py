"""Idempotent setup: system tools, one virtual environment per server, the model and the bodies.

Each competitor gets its own venv under bench/.envs/ because their pins
conflict (MLServer 1.7.1 wants FastAPI < 0.116, KServe 0.21 pandas < 3, ours
pandas 3). Each venv is installed from a complete lock file in
bench/requirements/ with ``--no-deps``: every package is pinned, nothing can
be resolved at install time, so nothing unexpected (such as torch from a
machine's extra wheel directory) can be pulled in; ``pip check`` then proves
the set is consistent. A stamp holding the lock's hash makes reruns free.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from .paths import Paths

#: venv name -> lock file in bench/requirements/.
VENVS = {
    "kserve": "kserve.txt",
    "mlserver": "mlserver.txt",
    "mlserver-mlflow": "mlserver-mlflow.txt",
    "tools": "tools.txt",
}
#: program -> Debian package that provides it.
APT_TOOLS = {"wrk": "wrk", "h2load": "nghttp2-client", "taskset": "util-linux"}
STAMP = ".bench-lock"


class SetupError(RuntimeError):
    """A competitor's environment could not be built."""


def log(message: str) -> None:
    print(f"[setup] {message}", flush=True)


def _run(argv: list[str], **kwargs: Any) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
        raise SetupError(f"{' '.join(argv)} failed ({done.returncode}):\n{tail}")


def ensure_system_tools() -> None:
    """Install wrk and h2load with apt-get when missing (as root, or with password-less sudo)."""
    missing = sorted({pkg for prog, pkg in APT_TOOLS.items() if shutil.which(prog) is None})
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise SetupError(f"missing {', '.join(missing)} and no apt-get: install them yourself")
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    log(f"apt-get install {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run([*sudo, "apt-get", "update", "-qq"], env=env)
    _run([*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env)


def _lock_hash(lock: Path) -> str:
    digest = hashlib.sha256(lock.read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()


def ensure_venv(paths: Paths, name: str) -> Path:
    """The venv ``name`` built from its lock file; rebuilt only when the lock changes."""
    lock = paths.requirements / VENVS[name]
    venv = paths.venv(name)
    stamp = venv / STAMP
    wanted = _lock_hash(lock)
    if stamp.exists() and stamp.read_text() == wanted and paths.venv_bin(name).exists():
        return venv
    if name.startswith("mlserver") and sys.version_info >= (3, 13):
        raise SetupError("MLServer 1.7.1 needs Python 3.9-3.12; run the harness with one of those")
    log(f"creating {venv.relative_to(paths.repo)} from {lock.relative_to(paths.repo)}")
    _run([sys.executable, "-m", "venv", "--clear", str(venv)])
    python = str(paths.venv_bin(name))
    pip = [python, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    _run([*pip, "install", "--quiet", "--no-deps", "--require-virtualenv", "-r", str(lock)])
    _run([*pip, "check"])
    stamp.write_text(wanted)
    return venv


def ensure_ours(paths: Paths) -> None:
    """Our server's venv is the repository's own (.venv); ``make install`` creates it."""
    if paths.ours_python.exists():
        return
    log("no .venv: running make install")
    _run(["make", "install", f"PYTHON={sys.executable}"], cwd=paths.repo)


def ensure_data(paths: Paths, frameworks: list[str] | None = None) -> dict[str, Any]:
    """Train the model files once and (re)write the request bodies and expected answers."""
    extra = [arg for fw in frameworks or [] for arg in ("--framework", fw)]
    _run(
        [str(paths.ours_python), str(paths.tools / "payloads.py"), str(paths.data), *extra],
        cwd=paths.repo,
    )
    return json.loads((paths.payloads / "expected.json").read_text())


def setup(paths: Paths, venvs: list[str], frameworks: list[str] | None = None) -> dict[str, Any]:
    ensure_system_tools()
    ensure_ours(paths)
    for name in venvs:
        ensure_venv(paths, name)
    return ensure_data(paths, frameworks)

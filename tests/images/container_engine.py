"""The container engine the image tests use, set up the way CI needs it.

A running Docker daemon is used as it is. Otherwise podman: installed with
apt-get when it is missing and this is root (CI: a fresh Debian machine), with
settings that work without a Docker engine or registry and inside a VM:
a storage of its own under build/image-tests/ with the vfs driver (no overlay
mounts needed; removed at the end, vfs copies every layer), chroot isolation
for builds, runc with explicit ulimits for runs. Images are built on a local
Debian base made with debootstrap (scripts/build_images.py --local-base).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "build" / "image-tests"
#: What the podman path needs; apt-get installs them on a Debian machine.
PACKAGES = ["podman", "runc", "debootstrap"]
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
#: CI sets this to 1: a missing dependency then fails the tests instead of skipping them.
REQUIRE_VAR = "MODELSERVER_REQUIRE_IMAGE_TESTS"

STORAGE_CONF = """\
[storage]
driver = "vfs"
graphroot = "{root}/storage"
runroot = "{root}/run"
"""
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=1024:1024"]
[engine]
runtime = "runc"
"""


@dataclass
class Engine:
    """A container engine CLI and the arguments the build script and runs need with it."""

    name: str
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    #: extra arguments for scripts/build_images.py
    build_args: list[str] = field(default_factory=list)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``<engine> args...``; with ``check``, a failure is an assertion naming its stderr."""
        done = subprocess.run([self.name, *args], env=self.env, capture_output=True, text=True)
        if check and done.returncode != 0:
            raise AssertionError(f"{self.name} {args[0]} exited {done.returncode}:\n{done.stderr}")
        return done


def docker_daemon() -> bool:
    """Whether ``docker`` is here and its daemon answers."""
    docker = shutil.which("docker")
    return bool(docker) and subprocess.run([docker, "info"], capture_output=True).returncode == 0


def unavailable(reason: str) -> None:
    """Skip for a missing dependency; fail instead where CI sets REQUIRE_VAR=1."""
    message = f"missing dependency: {reason}"
    if os.environ.get(REQUIRE_VAR) == "1":
        pytest.fail(f"{message} ({REQUIRE_VAR}=1)")
    pytest.skip(message)


def install_packages() -> None:
    """apt-get podman, runc and debootstrap when missing; root is needed either way."""
    if os.geteuid() != 0:
        unavailable("root (no Docker daemon; podman builds on a debootstrapped base)")
    WORK.mkdir(parents=True, exist_ok=True)
    with (WORK / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one apt-get at a time across test workers
        missing = [p for p in PACKAGES if shutil.which(p) is None]
        if not missing:
            return
        if shutil.which("apt-get") is None:
            unavailable(f"{', '.join(missing)} (no Docker daemon, no apt-get to install them)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
            check=True,
            env=env,
            capture_output=True,
        )


def podman(work: Path) -> Engine:
    """podman with its storage and settings under ``work``."""
    (work / "storage.conf").write_text(STORAGE_CONF.format(root=work))
    (work / "containers.conf").write_text(CONTAINERS_CONF)
    env = {
        **os.environ,
        "CONTAINERS_STORAGE_CONF": str(work / "storage.conf"),
        "CONTAINERS_CONF": str(work / "containers.conf"),
        "BUILDAH_ISOLATION": "chroot",
    }
    build_args = ["--engine=podman", "--local-base", "--engine-arg=--network=host"]
    if CA_BUNDLE.is_file():  # an intercepting proxy's CA is in the host's bundle
        build_args.append(f"--ca-bundle={CA_BUNDLE}")
    return Engine("podman", env, build_args)

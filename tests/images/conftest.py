"""The ``engine`` fixture: a container engine for this test worker (container_engine.py)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from container_engine import WORK, Engine, docker_daemon, install_packages, podman


@pytest.fixture(scope="session")
def engine(worker_id: str) -> Iterator[Engine]:
    """The engine for this test worker; its podman storage is removed afterwards."""
    if docker_daemon():
        yield Engine("docker", build_args=["--engine=docker"])
        return
    install_packages()
    work = WORK / worker_id
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    ours = podman(work)
    try:
        yield ours
    finally:
        ours.run("rm", "--all", "--force", check=False)
        ours.run("rmi", "--all", "--force", check=False)
        shutil.rmtree(work, ignore_errors=True)

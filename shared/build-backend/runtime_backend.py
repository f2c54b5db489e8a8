"""The runtimes' PEP 517 build backend: setuptools, with the core taken from this checkout.

Every runtime depends on ``modelserver``, the core in ``shared/core``, which
no package index holds: declared by its bare name, ``pip install
./runtimes/sklearnserver`` stops at "No matching distribution found for
modelserver". So a runtime built from a checkout of this repository (its
``../../shared/core`` is the ``modelserver`` project) names the core by
where it is, ``modelserver @ file:///<checkout>/shared/core``, in the
metadata pip resolves and in the wheel: pip then builds and installs the core
from the checkout with the runtime, and a core already installed from there
is simply installed again. Everything else is setuptools' own
``setuptools.build_meta``.

Two cases keep the bare name, which an installed ``modelserver`` satisfies:

* editable builds (``pip install -e``): pip refuses a project asked for both
  as an editable (``-e shared/core``) and as a direct reference, so an
  editable runtime goes with an editable core in one command,
  ``pip install -e shared/core -e runtimes/<runtime>``, as the Makefile does;
* a runtime built away from a checkout (an sdist unpacked elsewhere).

A wheel built here names this checkout's path: install it on this machine,
or install the core first and the runtime with ``--no-deps`` elsewhere.

Each runtime reaches this file through its ``build-backend`` link to
``shared/build-backend`` (``backend-path`` must lie inside the project).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

from setuptools import build_meta as _setuptools

CORE = "modelserver"
#: The bare requirement as setuptools writes it into METADATA.
_BARE = re.compile(rb"^Requires-Dist: " + CORE.encode() + rb"[ \t]*\r?$", re.MULTILINE)

get_requires_for_build_wheel = _setuptools.get_requires_for_build_wheel
get_requires_for_build_sdist = _setuptools.get_requires_for_build_sdist
get_requires_for_build_editable = _setuptools.get_requires_for_build_editable
prepare_metadata_for_build_editable = _setuptools.prepare_metadata_for_build_editable
build_editable = _setuptools.build_editable
build_sdist = _setuptools.build_sdist


def core_requirement(project: Path | None = None) -> str | None:
    """``modelserver @ file:///.../shared/core`` for a runtime in a checkout, else None."""
    project = Path(os.getcwd() if project is None else project).resolve()
    core = project.parent.parent / "shared" / "core"
    try:
        name = tomllib.loads((core / "pyproject.toml").read_text("utf-8"))["project"]["name"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        name = None
    if name != CORE:
        print(
            f"runtime_backend: no {CORE} project at {core}: the runtime depends on {CORE} "
            "by name; install it first (pip install <checkout>/shared/core)",
            file=sys.stderr,
        )
        return None
    return f"{CORE} @ {core.as_uri()}"


def patch_metadata(metadata: bytes, requirement: str) -> bytes:
    """METADATA with its bare ``Requires-Dist: modelserver`` header naming ``requirement``."""
    headers, sep, body = metadata.partition(b"\n\n")
    line = b"Requires-Dist: " + requirement.encode()
    return _BARE.sub(lambda _: line, headers, count=1) + sep + body


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"sha256={digest.decode('ascii')},{len(data)}"


def patch_wheel(wheel: Path, requirement: str) -> None:
    """Rewrite the wheel's METADATA (and its line in RECORD) in place."""
    with zipfile.ZipFile(wheel) as old:
        infos = old.infolist()
        files = {info.filename: old.read(info) for info in infos}
    metadata = next(n for n in files if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
    record = metadata.rsplit("/", 1)[0] + "/RECORD"
    files[metadata] = patch_metadata(files[metadata], requirement)
    lines = files[record].decode("utf-8").splitlines()
    entry = f"{metadata},{_record_hash(files[metadata])}"
    lines = [entry if line.split(",", 1)[0] == metadata else line for line in lines]
    files[record] = ("\n".join(lines) + "\n").encode("utf-8")
    fd, tmp = tempfile.mkstemp(dir=wheel.parent, suffix=".whl")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as new:
            for info in infos:
                new.writestr(info, files[info.filename])
        os.replace(tmp, wheel)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def prepare_metadata_for_build_wheel(
    metadata_directory: str, config_settings: dict[str, object] | None = None
) -> str:
    name: str = _setuptools.prepare_metadata_for_build_wheel(metadata_directory, config_settings)
    requirement = core_requirement()
    if requirement is not None:
        path = Path(metadata_directory, name, "METADATA")
        path.write_bytes(patch_metadata(path.read_bytes(), requirement))
    return name


def build_wheel(
    wheel_directory: str,
    config_settings: dict[str, object] | None = None,
    metadata_directory: str | None = None,
) -> str:
    name: str = _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)
    requirement = core_requirement()
    if requirement is not None:
        patch_wheel(Path(wheel_directory, name), requirement)
    return name

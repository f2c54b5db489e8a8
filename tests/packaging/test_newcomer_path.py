"""What a fresh clone's first commands rely on: `make`, `make serve`'s extras, the samples.

`make serve` installs the core, one runtime and the workspace extra its
sample's generator needs (``samples-<framework>``), then builds that one
sample. These checks keep the README's examples, the Makefile, the extras
and the generators in step without installing anything.
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import sample_models

ROOT = Path(__file__).resolve().parents[2]
EXTRAS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
SERVE_EXAMPLES = sorted(
    set(re.findall(r"make serve RUNTIME=(\w+) SAMPLE=([\w./-]+)", (ROOT / "README.md").read_text()))
)


def _names(framework: str) -> tuple[str, ...]:
    if framework == "sklearn":
        return sample_models.SKLEARN_NAMES
    return tuple(importlib.import_module(sample_models.FRAMEWORKS[framework]).NAMES)


@pytest.mark.parametrize("framework", ["sklearn", *sample_models.FRAMEWORKS])
def test_every_framework_has_its_samples_extra(framework: str) -> None:
    assert f"samples-{framework}" in EXTRAS
    everything = " ".join(EXTRAS["samples"])
    assert f"samples-{framework}" in everything
    assert any("[samples]" in requirement for requirement in EXTRAS["dev"])


def test_the_readme_has_serve_examples() -> None:
    assert len(SERVE_EXAMPLES) >= 6


@pytest.mark.parametrize("runtime,sample", SERVE_EXAMPLES, ids=lambda v: str(v))
def test_readme_serve_examples_name_real_runtimes_and_samples(runtime: str, sample: str) -> None:
    assert (ROOT / "runtimes" / runtime / "pyproject.toml").is_file()
    framework, _, name = sample.partition("/")
    assert f"samples-{framework}" in EXTRAS
    assert name in _names(framework)


def test_sample_builds_that_sample_only(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "examples/sample_models.py", str(tmp_path), "--sample", "sklearn/iris"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == f"sklearn/iris: {tmp_path / 'sklearn' / 'iris'}"
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["model.joblib"]


def test_an_unknown_sample_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "examples/sample_models.py", str(tmp_path), "--sample", "sklearn/nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "no sample nope; there are iris, iris-pipeline" in done.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_plain_make_lists_the_targets_and_installs_nothing() -> None:
    done = subprocess.run(["make", "-n"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "pip" not in done.stdout
    listed = subprocess.run(["make", "-s"], cwd=ROOT, capture_output=True, text=True, check=True)
    targets = re.findall(r"^## ([a-z-]+):", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert {"serve", "test", "test-fast", "install"} <= set(targets)
    for target in targets:
        assert re.search(rf"^  {target} +\S", listed.stdout, re.MULTILINE), target

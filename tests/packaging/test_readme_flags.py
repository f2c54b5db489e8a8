"""Every flag a runtime takes is in the README, and every flag the README names exists.

Flags are declared once, as typed fields of each runtime's ``Settings``; this
keeps the README's flag table from drifting away from those declarations.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
from modelserver import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
RUNTIMES = sorted(
    p.parent.name
    for p in (Path(__file__).resolve().parents[2] / "runtimes").glob("*/src/*/__main__.py")
)


def _settings_classes() -> dict[str, type[Settings]]:
    classes: dict[str, type[Settings]] = {"modelserver": Settings}
    for runtime in RUNTIMES:
        for value in vars(importlib.import_module(f"{runtime}.model")).values():
            if isinstance(value, type) and getattr(value, "server_name", "") == runtime:
                classes[runtime] = value.settings_class
    return classes


@pytest.mark.parametrize("runtime", ["modelserver", *RUNTIMES])
def test_every_flag_is_documented(runtime: str) -> None:
    settings = _settings_classes().get(runtime)
    assert settings is not None, f"no Model subclass with server_name {runtime!r}"
    missing = [
        field.name
        for field, flag, _ in settings.fields()
        if not flag.hidden and f"`--{field.name}`" not in README
    ]
    assert not missing, f"{runtime}: flags missing from README.md: {missing}"


def test_the_flag_table_names_no_flag_that_does_not_exist() -> None:
    known = {field.name for cls in _settings_classes().values() for field, _, _ in cls.fields()}
    section = README.split("## Flags", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"^\| `--([a-z_]+)`", section, re.MULTILINE))
    assert named <= known, f"README names flags no runtime declares: {sorted(named - known)}"

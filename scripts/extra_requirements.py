"""Print the requirements of extras of the workspace's pyproject.toml, one per line.

    python3 scripts/extra_requirements.py samples-onnx,samples-torch

``make serve`` installs what its sample's generator needs this way (``pip
install -r``) rather than as ``-e '.[samples-onnx]'``: the same pinned
requirements without building and installing the workspace project itself.
An extra naming the workspace's own extras (``samples``) is expanded. An
unknown extra is an error that lists the known ones. Standard library only.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def requirements(names: list[str], project: dict) -> list[str]:
    """The requirements of the extras ``names``, own extras expanded, each once, in order."""
    extras: dict[str, list[str]] = project.get("optional-dependencies", {})
    self_reference = re.compile(rf"^{re.escape(project['name'])}\[([^\]]*)\]$")
    found: list[str] = []
    for name in names:
        if name not in extras:
            raise SystemExit(f"no extra {name!r} in {PYPROJECT.name}; known: {', '.join(extras)}")
        for requirement in extras[name]:
            own = self_reference.match(requirement.replace(" ", ""))
            inner = requirements(own.group(1).split(","), project) if own else [requirement]
            found.extend(r for r in inner if r not in found)
    return found


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    names = [n.strip() for n in sys.argv[1].split(",") if n.strip()]
    print("\n".join(requirements(names, project)))


if __name__ == "__main__":
    main()

"""The entry points: ``run`` for a runtime's ``__main__``, ``main`` for custom models.

``python -m <runtime> --model_name NAME --model_dir DIR --http_port 8080
--grpc_port 8081`` as KServe's ServingRuntimes pass it; the flags are the
runtime's ``settings_class`` (``modelserver.settings``).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from ..model.base import Model
from ..settings import Settings, setting


def run(
    model_class: type[Model], prog: str | None = None, argv: Sequence[str] | None = None
) -> int:
    """Parse the runtime's flags, load, serve. Returns the exit code."""
    settings = model_class.settings_class.parse(argv, prog or model_class.server_name)
    if settings.workers > 1:
        from .supervisor import supervise

        return supervise(model_class, settings)
    from .process import serve_process

    return serve_process(model_class, settings)


@dataclass
class CustomSettings(Settings):
    """The custom-model entry point's flags: the shared ones and the class to serve."""

    model_class: str | None = setting(
        None, "the Model subclass to serve, as package.module:ClassName"
    )


USAGE = "usage: modelserver --model_class package.module:ClassName [flags] (-h for the flags)"


def main(argv: Sequence[str] | None = None) -> None:
    """``modelserver --model_class module:Class``: serve a user's Model subclass."""
    args = list(sys.argv[1:] if argv is None else argv)
    spec = _model_class_argument(args)
    if spec is None:
        if "-h" in args or "--help" in args:
            CustomSettings.parser("modelserver").print_help()
            sys.exit(0)
        print(USAGE, file=sys.stderr)
        sys.exit(2)
    module_name, _, class_name = spec.partition(":")
    try:
        model_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        print(f"modelserver: cannot import --model_class {spec}: {exc}", file=sys.stderr)
        sys.exit(2)
    if not (isinstance(model_class, type) and issubclass(model_class, Model)):
        print(f"modelserver: --model_class {spec} is not a modelserver.Model", file=sys.stderr)
        sys.exit(2)
    sys.exit(run(model_class, prog="modelserver", argv=args))


def _model_class_argument(args: list[str]) -> str | None:
    """``--model_class`` (the last one wins) or MODEL_CLASS, taken out of ``args``."""
    spec = os.environ.get("MODEL_CLASS")
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--model_class="):
            spec = arg.partition("=")[2]
        elif arg == "--model_class" and i + 1 < len(args):
            spec = args[i + 1]
            i += 1
        else:
            rest.append(arg)
        i += 1
    args[:] = rest
    return spec if spec and ":" in spec else None

"""Finding model files in a model directory, as KServe's storage lays them out.

A directory holding model files is one model; a directory holding only
sub-folders with model files is one model per sub-folder (multi-model).
Nothing found, or several candidates that could each be the model, is a
startup error that lists what was there.

A runtime names its model files by suffix (``.onnx``, matched in any case)
or, for formats whose file has a fixed name and no suffix, by that whole
name (MLflow's ``MLmodel``, matched exactly); ``warmup.json`` never is a
model file. A ``--model_dir`` that is a
URI (``s3://...``, MLflow's ``models:/...``) is refused with what to do
instead: the server reads local files and never downloads. A runtime
that serves versions (``Model.versioned``) also takes TF Serving's layout: a
directory whose numeric sub-folders each hold the model files is one model,
each sub-folder a version.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import ModelLoadError

#: Warm-up requests beside a model (``dataplane.warmup``): never the model file itself,
#: whatever a runtime's suffixes (an XGBoost model may be ``.json`` too).
WARMUP_FILE = "warmup.json"

#: Model names usable in URLs and as directory names; no path can escape.
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def validate_model_name(name: str) -> str:
    """Reject names that could not be a URL segment or that would leave the model dir."""
    if not MODEL_NAME.fullmatch(name) or name in (".", ".."):
        raise ModelLoadError(
            f"Invalid model name {name!r}: use letters, digits, '_', '.', '-' (max 128)"
        )
    return name


def _listing(directory: Path) -> str:
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in directory.iterdir())
    except OSError as exc:
        return f"<unreadable: {exc}>"
    return ", ".join(names[:20]) + (" ..." if len(names) > 20 else "") if names else "nothing"


#: Tells a model file from another file with the same suffix (a README.txt beside model.txt).
Accept = Callable[[Path], bool]


def _candidates(
    directory: Path, extensions: Iterable[str], accept: Accept | None = None
) -> list[Path]:
    """Files named by ``extensions``: a suffix (".onnx", any case) or a whole name ("MLmodel")."""
    suffixes = tuple(e.lower() for e in extensions if e.startswith("."))
    names = {e for e in extensions if not e.startswith(".")}
    return sorted(
        p
        for p in directory.iterdir()
        if p.is_file()
        and p.name != WARMUP_FILE
        and (p.name in names or p.name.lower().endswith(suffixes))
        and (accept is None or accept(p))
    )


#: A URI scheme of two or more letters (one letter is a Windows drive) and ``:/``.
URI = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]+):/")


def refuse_uri(model_dir: str | Path) -> None:
    """ModelLoadError saying what to do when ``--model_dir`` is a URI, not a directory."""
    text = str(model_dir)
    found = URI.match(text)
    if found is None or Path(text).exists():
        return
    hint = "KServe's storage initializer does this for an InferenceService's storageUri"
    if found.group("scheme").lower() in ("models", "runs", "mlflow-artifacts"):
        hint = (
            "for an MLflow URI: mlflow artifacts download --artifact-uri "
            f"'{text}' --dst-path DIR, where the tracking server is reachable"
        )
    raise ModelLoadError(
        f"--model_dir {text!r} is a URI, not a directory: this server reads models from local "
        "files and never downloads them (nor contacts a tracking server or model registry). "
        f"Download the model first ({hint}) and pass that directory."
    )


def find_model_file(
    directory: str | Path, extensions: Iterable[str], accept: Accept | None = None
) -> Path:
    """The single model file in ``directory`` with one of ``extensions`` that ``accept`` takes."""
    directory = Path(directory)
    extensions = tuple(extensions)
    if not directory.is_dir():
        raise ModelLoadError(f"Model directory {directory} does not exist or is not a directory")
    found = _candidates(directory, extensions, accept)
    if not found:
        raise ModelLoadError(
            f"No model file ({', '.join(extensions)}) in {directory}; found: {_listing(directory)}"
        )
    if len(found) > 1:
        raise ModelLoadError(
            f"Several model files in {directory}: {', '.join(p.name for p in found)}; "
            "keep exactly one, or put each model in its own sub-folder"
        )
    return found[0]


def find_versions(
    directory: str | Path, extensions: Iterable[str], accept: Accept | None = None
) -> dict[str, Path]:
    """TF Serving's versioned layout: each numeric sub-folder with a model file, by version.

    Versions are in ascending numeric order (``"2"`` before ``"10"``); other
    sub-folders are ignored, as TF Serving ignores them. Empty when there are none.
    """
    directory = Path(directory)
    extensions = tuple(extensions)
    found = [
        p
        for p in directory.iterdir()
        if p.is_dir()
        and p.name.isascii()
        and p.name.isdigit()
        and _candidates(p, extensions, accept)
    ]
    return {str(int(p.name)): p for p in sorted(found, key=lambda p: int(p.name))}


def discover_models(
    model_dir: str | Path,
    model_name: str,
    extensions: Iterable[str],
    accept: Accept | None = None,
    versioned: bool = False,
) -> dict[str, Path]:
    """Map each model name to its directory: one model, or one per sub-folder.

    With ``versioned``, a directory of numeric version sub-folders is one model.
    """
    refuse_uri(model_dir)
    root = Path(model_dir)
    extensions = tuple(extensions)
    if not root.is_dir():
        raise ModelLoadError(f"Model directory {root} does not exist or is not a directory")

    def is_model(path: Path) -> bool:
        found = _candidates(path, extensions, accept)
        return bool(found) or (versioned and bool(find_versions(path, extensions, accept)))

    if not extensions or is_model(root):
        return {validate_model_name(model_name): root}
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    models = {p.name: p for p in subdirs if is_model(p)}
    if not models:
        raise ModelLoadError(
            f"No model file ({', '.join(extensions)}) in {root} or its sub-folders; "
            f"found: {_listing(root)}"
        )
    for name in models:
        validate_model_name(name)
    return models

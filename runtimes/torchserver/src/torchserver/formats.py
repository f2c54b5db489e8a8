"""What a model file is, told from its content: a suffix says little about a PyTorch file.

A ``.pt`` may be a TorchScript archive, a state_dict or a whole pickled
module, and a ``.pt2`` an exported program or a compiled AOTInductor
package. All but safetensors are zip archives whose entries sit under one
folder (named after the file when it was written); the entries below it
tell the writers apart:

- TorchScript (``torch.jit.save``): ``code/`` (the serialized TorchScript)
  and ``constants.pkl``; a traced module also keeps ``traced_inputs.pkl``;
- torch.export (``torch.export.save``): ``archive_format`` and
  ``models/<name>.json`` (the graph), weights under ``data/weights/``;
- AOTInductor (``aoti_compile_and_package``): ``data/aotinductor/<name>/``
  (the compiled shared library); a package may also hold the exported
  program it was compiled from (``models/``);
- ``torch.save``: ``data.pkl`` without the marks above; before PyTorch 1.6 it
  wrote a bare pickle that starts with a magic number instead.

safetensors files start with the 8-byte length of a JSON header and the
header's ``{``. Anything else, or an archive with the marks of two formats,
is a startup error that says what was found.
"""

from __future__ import annotations

import enum
import io
import json
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

from modelserver import ModelLoadError

#: Suffixes model discovery looks at; the content then decides the format.
EXTENSIONS = (".pt", ".pth", ".pt2", ".torchscript", ".safetensors")

ZIP_MAGIC = b"PK\x03\x04"
#: ``torch.save`` before the zip format: pickle protocol 2 of torch's magic number.
LEGACY_MAGIC = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19"


class Format(enum.Enum):
    TORCHSCRIPT = "a TorchScript archive (torch.jit.save)"
    EXPORT = "a torch.export program (torch.export.save)"
    AOTI = "an AOTInductor package (aoti_compile_and_package)"
    CHECKPOINT = "a torch.save checkpoint (state_dict or pickled module)"
    SAFETENSORS = "a safetensors state_dict"


KNOWN = "; ".join(f.value for f in Format)


@dataclass(frozen=True)
class Found:
    """A model file's format and, for an archive, its entries (without the top folder)."""

    path: Path
    format: Format
    members: frozenset[str] = frozenset()

    @property
    def traced(self) -> bool:
        """A TorchScript module written by ``torch.jit.trace``, which keeps its example inputs."""
        return "traced_inputs.pkl" in self.members

    @property
    def has_program(self) -> bool:
        """The archive holds an exported program (an export, or an AOTI package with one)."""
        return any(m.startswith("models/") and m.endswith(".json") for m in self.members)


def detect(path: Path) -> Found:
    """The format of ``path`` from its first bytes and, for a zip archive, its entries."""
    try:
        with path.open("rb") as f:
            head = f.read(16)
        size = path.stat().st_size
    except OSError as exc:
        raise ModelLoadError(f"Cannot read {path}: {exc}") from None
    if head.startswith(ZIP_MAGIC):
        return _archive(path)
    if head.startswith(LEGACY_MAGIC):
        return Found(path, Format.CHECKPOINT)
    header = int.from_bytes(head[:8], "little") if len(head) >= 9 else 0
    if 2 <= header <= size - 8 and head[8:9] == b"{":
        return Found(path, Format.SAFETENSORS)
    raise ModelLoadError(
        f"{path.name} is not a PyTorch model file: none of {KNOWN} "
        f"(it starts with bytes {head[:8].hex(' ') or 'nothing: it is empty'})"
    )


def _archive(path: Path) -> Found:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ModelLoadError(
            f"{path.name} starts like a zip archive but cannot be read as one: {exc}"
        ) from None
    members = frozenset(name.partition("/")[2] for name in names if "/" in name)
    found = Found(path, Format.CHECKPOINT, members)
    kinds = []
    if any(m.startswith("data/aotinductor/") for m in members):
        kinds.append(Format.AOTI)
    elif "archive_format" in members and found.has_program:
        kinds.append(Format.EXPORT)
    if "constants.pkl" in members and any(m.startswith("code/") for m in members):
        kinds.append(Format.TORCHSCRIPT)
    if not kinds and "data.pkl" in members:
        kinds.append(Format.CHECKPOINT)
    if len(kinds) > 1:
        raise ModelLoadError(
            f"{path.name} is ambiguous: it has the entries of "
            f"{' and of '.join(k.value for k in kinds)}; write the model with one of them"
        )
    if not kinds:
        shown = ", ".join(sorted(names)[:8]) + (" ..." if len(names) > 8 else "")
        raise ModelLoadError(
            f"{path.name} is a zip archive but none of {KNOWN}; it holds: {shown or 'nothing'}"
        )
    return Found(path, kinds[0], members)


def pickled_entries(found: Found) -> list[str]:
    """Entries of an exported program that ``torch.export.load`` would fully unpickle.

    It unpickles, with no restriction on what runs, weights and constants
    its configs mark ``use_pickle`` (tensor subclasses), opaque objects, and
    any sample-input or legacy weights file that the safe ``weights_only``
    loader refuses (it retries those without it). An archive that holds
    none of these loads without running code from the file.
    """
    entries: list[str] = []
    with zipfile.ZipFile(found.path) as archive:
        root = {n.partition("/")[0] + "/" for n in archive.namelist() if "/" in n}.pop()
        for member in sorted(found.members):
            if member.endswith(("_weights_config.json", "_constants_config.json")):
                config = json.loads(archive.read(root + member)).get("config", {})
                entries += [
                    f"{member}: {fqn}"
                    for fqn, meta in config.items()
                    if meta.get("use_pickle")
                    or str(meta.get("path_name", "")).startswith("opaque_obj_")
                ]
            elif member.startswith(("data/sample_inputs/", "data/weights/", "data/constants/")):
                data = archive.read(root + member) if member.endswith(".pt") else b""
                if data and not _weights_only(data):
                    entries.append(member)
    return entries


def _weights_only(data: bytes) -> bool:
    """Whether ``torch.load(weights_only=True)`` reads these bytes (nothing else runs)."""
    import torch

    try:
        torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError):
        return False
    return True

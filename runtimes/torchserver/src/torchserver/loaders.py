"""One loader per format: the callable model on its device, and its signature.

Which device: ``--device`` by the core's rule (``choose_device``), except for
an AOTInductor package, which is compiled for one device and runs there
only, so a ``--device`` that contradicts it is a startup error.

What runs code from the file: a TorchScript archive holds TorchScript (run
by torch's interpreter, not Python); an exported program holds a graph of
torch operators, plus pickled parts in rare cases (tensor subclasses,
opaque objects) that torch.export.load unpickles without restriction, so
those need ``--allow_pickle``; an AOTInductor package is a compiled shared
library that the loader runs (serve only packages you built); a state_dict is
read by torch's ``weights_only`` unpickler or from safetensors, which run
nothing; a whole pickled module runs whatever the pickle names, so it loads
only with ``--allow_pickle``.
"""

from __future__ import annotations

import importlib
import json
import logging
import pickle
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from modelserver import ModelLoadError, choose_device

from . import signature
from .formats import Format, Found, pickled_entries
from .settings import TorchSettings
from .signature import Signature

logger = logging.getLogger(__name__)
CUDA_NEEDS = "needs a CUDA build of torch and an NVIDIA GPU"
PICKLE_FLAG = "--allow_pickle (env ALLOW_PICKLE=true)"


@dataclass
class Loaded:
    """A model ready to call: ``module(*args, **kwargs)`` on ``device``."""

    module: Callable[..., Any]
    signature: Signature
    #: What metadata and the log say the file was.
    kind: str
    device: str


def cuda_problem() -> str | None:
    """None when torch can run on CUDA here, else why not."""
    if torch.version.cuda is None:
        return f"this torch {torch.__version__} is a CPU build; it {CUDA_NEEDS}"
    if not torch.cuda.is_available():
        return (
            f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU; it {CUDA_NEEDS} "
            "visible to the process (driver, CUDA_VISIBLE_DEVICES, the pod's nvidia.com/gpu)"
        )
    return None


def load(found: Found, settings: TorchSettings) -> Loaded:
    """Load ``found`` as ``settings`` say; a ModelLoadError says what went wrong."""
    name = found.path.name
    allow_pickle = settings.allow_pickle
    if found.format is Format.AOTI:
        return _aoti(found, settings)
    where = choose_device(settings.device, cuda_problem(), name)
    try:
        if found.format is Format.TORCHSCRIPT:
            return _torchscript(found, where)
        if found.format is Format.EXPORT:
            _refuse_pickled(found, allow_pickle)
            program = torch.export.load(str(found.path))
            if where == "cuda":
                from torch.export.passes import move_to_device_pass

                program = move_to_device_pass(program, where)
            return Loaded(program.module(), signature.exported(program), "torch.export", where)
        module, kind = _eager(found, settings.model_class, allow_pickle)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(
            f"Cannot load {name} ({found.format.value}): {type(exc).__name__}: {exc}"
        ) from None
    module = module.to(where).eval()
    return Loaded(module, signature.eager(module), kind, where)


def _torchscript(found: Found, device: str) -> Loaded:
    # A traced module's example shapes become its graph's input types.
    module = torch.jit.load(str(found.path), map_location=device, _restore_shapes=found.traced)
    module.eval()
    traced = signature.traced(module) if found.traced else None
    kind = "TorchScript (traced)" if traced else "TorchScript (scripted)"
    return Loaded(module, traced or signature.scripted(module), kind, device)


def _refuse_pickled(found: Found, allow_pickle: bool) -> None:
    entries = pickled_entries(found)
    if entries and not allow_pickle:
        raise ModelLoadError(
            f"{found.path.name} is {found.format.value} with pickled parts "
            f"({', '.join(entries[:5])}); torch.export.load unpickles them without limits, "
            f"which runs code the file names, so they load only with {PICKLE_FLAG} for files "
            "you trust"
        )


def _aoti_device(found: Found) -> str:
    """The device the package was compiled for (its wrapper's metadata)."""
    with zipfile.ZipFile(found.path) as archive:
        for name in archive.namelist():
            if "/data/aotinductor/" in name and name.endswith("_metadata.json"):
                return str(json.loads(archive.read(name)).get("AOTI_DEVICE_KEY", "cpu"))
    return "cpu"


def _aoti(found: Found, settings: TorchSettings) -> Loaded:
    name, device = found.path.name, settings.device
    compiled_for = _aoti_device(found)
    if compiled_for not in ("cpu", "cuda"):
        raise ModelLoadError(f"{name} is compiled for {compiled_for}; torchserver runs cpu, cuda")
    if device not in ("auto", compiled_for):
        raise ModelLoadError(
            f"Cannot serve {name} with --device {device}: it is an AOTInductor package compiled "
            f"for {compiled_for}, and runs only there; compile it for {device} (the exported "
            f"program and its example inputs on {device}), or use --device {compiled_for} or auto"
        )
    problem = cuda_problem() if compiled_for == "cuda" else None
    if problem:
        raise ModelLoadError(
            f"Cannot serve {name}, an AOTInductor package compiled for cuda: {problem}"
        )
    if found.has_program:
        _refuse_pickled(found, settings.allow_pickle)
    elif not settings.allow_unchecked_aoti:
        raise ModelLoadError(
            f"{name} is a bare AOTInductor package: it records no input dtypes or shapes, and "
            "its compiled code reads a request's tensors without checking them (a wrong shape "
            "reads past the input: a wrong answer, or a crash). Package the exported program "
            "with it (torchserver's README), serve the program itself (torch.export.save), or "
            "accept the risk with --allow_unchecked_aoti (env ALLOW_UNCHECKED_AOTI=true)"
        )
    try:
        package = _package(found)
        if found.has_program:
            program_signature = signature.exported(_program(found))
        else:
            program_signature = signature.compiled(package.loader.get_call_spec())
            logger.warning("%s is a bare AOTInductor package: requests reach it unchecked", name)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"Cannot load {name} ({found.format.value}): {exc}") from None
    return Loaded(package, program_signature, "AOTInductor", compiled_for)


# torch 2.13's public loaders for a package, aoti_load_package and torch.export.load,
# both go through load_pt2, which loads every compiled model in the archive and
# first asks which vector instructions the CPU has by compiling test programs:
# without a C++ compiler (the image has none) that fails, aoti_load_package logs
# "Loading outdated pt2 file" and retries with the package loader below, and
# torch.export.load fails. So the compiled model is opened with that loader and
# the program read alone, with the helpers load_pt2 itself uses (torch is pinned).


def _package(found: Found) -> Any:
    """The compiled model "model" of an AOTInductor package, on the device it was built for."""
    from torch._C._aoti import AOTIModelPackageLoader
    from torch.export.pt2_archive._package import AOTICompiledModel

    return AOTICompiledModel(AOTIModelPackageLoader(str(found.path), "model", False, 1, -1))


def _program(found: Found) -> Any:
    """The exported program packaged with the compiled model, without loading the latter."""
    from torch.export.pt2_archive import PT2ArchiveReader
    from torch.export.pt2_archive._package import _load_exported_programs

    with PT2ArchiveReader(str(found.path)) as reader:
        return _load_exported_programs(reader, reader.get_file_names(), None)["model"]


def _eager(found: Found, model_class: str | None, allow_pickle: bool) -> tuple[Any, str]:
    """The ``nn.Module`` of a state_dict (into ``--model_class``) or of a pickled module."""
    path = found.path
    if found.format is Format.SAFETENSORS:
        from safetensors.torch import load_file

        return _build(model_class, load_file(str(path), device="cpu"), found), "state_dict"
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not allow_pickle:
            raise ModelLoadError(_pickled_message(found)) from None
        obj = torch.load(str(path), map_location="cpu", weights_only=False)
    if isinstance(obj, torch.nn.Module):
        return obj, "pickled module"
    return _build(model_class, obj, found), "state_dict"


def _pickled_message(found: Found) -> str:
    from torch.serialization import get_unsafe_globals_in_checkpoint

    names = get_unsafe_globals_in_checkpoint(str(found.path)) if found.members else []
    what = f" naming {', '.join(names[:5])}" if names else ""
    return (
        f"{found.path.name} is a pickled Python object{what}, not a state_dict of tensors: "
        f"unpickling it runs code the file names, so it loads only with {PICKLE_FLAG} for "
        "files you trust. Safer: save model.state_dict() and name its class with "
        "--model_class, or write the model with torch.export or TorchScript"
    )


def _build(spec: str | None, state: Any, found: Found) -> torch.nn.Module:
    """``--model_class`` instantiated with no arguments, with ``state`` loaded (strictly)."""
    name = found.path.name
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        keys = (
            f" (keys: {', '.join(map(str, list(state)[:8]))})" if isinstance(state, Mapping) else ""
        )
        raise ModelLoadError(
            f"{name} holds a {type(state).__name__}{keys}, neither a module nor a state_dict of "
            "tensors; save model.state_dict() alone"
        )
    if not spec:
        shown = ", ".join(list(state)[:5]) + (" ..." if len(state) > 5 else "")
        raise ModelLoadError(
            f"{name} is a state_dict ({len(state)} tensors: {shown}): weights without the network; "
            "name the nn.Module class (or a function returning one) to load them into with "
            "--model_class package.module:Class (env MODEL_CLASS), importable from PYTHONPATH"
        )
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ModelLoadError(f"--model_class {spec!r}: expected package.module:Class")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ModelLoadError(f"Cannot import --model_class {spec}: {exc}") from None
    try:
        module = factory()
    except Exception as exc:
        raise ModelLoadError(
            f"--model_class {spec}() failed: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(module, torch.nn.Module):
        raise ModelLoadError(
            f"--model_class {spec}() gave a {type(module).__name__}, not an nn.Module"
        )
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelLoadError(f"{name} does not fit {spec}: {exc}") from None
    return module

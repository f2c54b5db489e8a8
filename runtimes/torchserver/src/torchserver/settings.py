"""torchserver's flags: the shared ones, ``--device``, and what a model file may make it run."""

from __future__ import annotations

from dataclasses import dataclass

from modelserver import DeviceSettings, setting


@dataclass
class TorchSettings(DeviceSettings):
    """The eager class a state_dict needs, and the opt-ins for files that run unchecked."""

    model_class: str | None = setting(
        None,
        "the nn.Module class (or a function returning one) a state_dict is loaded into, as "
        "package.module:Name importable from PYTHONPATH, called with no arguments",
    )
    allow_pickle: bool = setting(
        False,
        "load a whole module pickled with torch.save(model), or an exported program with "
        "pickled parts: unpickling runs code the file names, so only for files you trust",
    )
    allow_unchecked_aoti: bool = setting(
        False,
        "serve an AOTInductor package that records no input dtypes or shapes: its compiled "
        "code reads a request's tensors unchecked (package the exported program with it instead)",
    )
